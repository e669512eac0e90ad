// Package rollup is the InfluxDB store's cache of the totals of closed UTC
// hours, and of the points of the minutes at windows' edges, so that
// aggregates cost O(hours), not O(points), also on InfluxDB 1.8, where Flux
// cannot push an aggregate down, and a warm answer queries nothing; and its
// caches of the totals per file and per session of closed spans (KeyDays),
// for the top of files, which InfluxDB cannot group, and the groupings by
// session or project.
//
// Flux on InfluxDB 1.8 cannot push an aggregate down to storage: every
// Breakdown or Trend read from the points reads every point of its window,
// so a 30-day answer costs O(points). A Cache therefore keeps, per CLOSED
// UTC hour, the totals of each key of one measurement, read once per
// missing span of hours (Source.ReadHours), and answers aggregates from
// them: whole closed hours from the cache, the open hour and the partial
// hours at a window's edges from points (tsdb.PlanWindow with RollupEnd at
// the last closed hour and RawEdges). The cache is generic in its rows
// (Row); the store keeps two: Operations, the totals of each (tool_id,
// tool_name, operation_mode) of the operations (query.HourRow), for
// Breakdown, Trend and the totals of operation lists (Counter), and Spend,
// the totals of each (tool_id, model) of the spend points
// (query.SpendHourRow), for SpendBreakdown and SpendTrend. Answer turns a
// window's rows into an answer; AnswerDays does for answers that need no
// hour (breakdowns, daily trends), which take each whole UTC day whose 24
// hours are cached as one row per key, its sums, kept until one of its
// hours changes: a warm 30-day answer adds up 30 days' rows, not 720
// hours'.
//
// Edges: on InfluxDB 1.8 any raw query walks every series of its shard
// and costs 25-50 ms, even over one empty minute, so the edges are cached
// too, as points. Per UTC minute the cache keeps the points of the edge
// minutes it was asked for (Source.ReadPoints: time, series and values),
// read once per span of missing minutes, and adds up those inside the
// window: exact to the nanosecond whatever the window. A read that reaches
// the current minute reads two minutes ahead, so that the trailing edge of
// the next answers is cached before it starts. A minute of more than
// bigMinute points keeps its totals per key instead, and the times of its
// first and last points, which answer it when a window holds all its
// points; an edge among them is read as hourly totals (Source.ReadHours). Points are bounded by a quarter of Options.MaxRows,
// least recently used minutes evicted past it. Where the server cannot
// read points with InfluxQL (2.x, Cloud: query.ErrNoPoints), whose Flux
// pushes the aggregate down, edges are read as hourly totals every time.
//
// Freshness:
//   - Writes of this store: when the drainer delivers a record to InfluxDB it
//     hands it to Delivered, before the writer's caller is told, so a write
//     is in the next answer; deliveries delayed in the outbox count when
//     they land. Delivered drops the cached hours that its points of the
//     cache's measurement (Source.Measurement) fall in; a fill that was
//     reading an hour while a delivery dropped it does not store that hour.
//     It adds its points to the cached edge minutes they fall in, and to
//     the reads of minutes in flight (Source.ParsePoint): InfluxDB keys a
//     point by series and time and a point written again replaces the
//     first, and so does the cache, so a point the read saw too counts
//     once. A big minute keeps a hash of each point's key: a new point
//     delivered into it is added to its totals; one written again loses
//     them: while it is the current minute, what a window holds of it is
//     read as hourly totals, never as points again (a busy current minute
//     would be read whole on every answer); once closed, it is read again,
//     as its totals. A read of points too large for one answer
//     (query.ErrTooLarge) is read again in halves, down to single minutes,
//     and cached as any other; a single minute still too large reads the
//     edge as hourly totals too.
//   - Writes of other replicas sharing the database, or any other writer:
//     an entry (a closed hour, an edge minute, the current one and those
//     read ahead included) is trusted for Options.TTL after its read
//     started, then read again. A background refresher renews entries that
//     are in use before they expire, so answers stay fast. Closed hours
//     that are due (in use and half the TTL old, or expired) are first
//     checked against the count of their points, a day's run at a time
//     (Source.Count), and read again only when that changed.
//   - An hour counts as closed cacheGrace after its end, so that writes in
//     flight at the turn of the hour (other replicas' group commits, clock
//     skew) land before it is first cached.
//
// Memory is bounded by Options.MaxRows rows per cache (an hour without
// points counts as one row) and a quarter of that in edge points; the sums
// of whole days are not counted (at most as many rows again, typically a
// 24th of them, as keys recur through a day). Keys are interned
// (Row.WithKey): the rows of every hour share one copy of each key. An operations row is about 72 bytes plus map overhead, so 262,144
// rows, a year of hours at 30 keys each, is about 25 MB; a spend row,
// whose key's two strings it carries, about 90 bytes. An edge point is
// 150-200 bytes with its series and map entry: 65,536 of them, 10-13 MB.
// Past the bounds the least recently used hours (minutes) are evicted. A
// query whose closed hours could not fit reads hourly totals instead.
package rollup

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/omnimemory/omnimemory-metrics/tsdb"
	"github.com/omnimemory/omnimemory-metrics/tsdb/influx/internal/query"
	"github.com/omnimemory/omnimemory-metrics/tsdb/influx/schema"
)

// Row is a row of a cache, R itself: the totals of one key (K) of the
// points of one UTC hour.
type Row[R any, K comparable] interface {
	// HourStart answers the unix microseconds of the hour's start.
	HourStart() int64
	// ToolTag answers the row's tool id as stored in its tag
	// (schema.TagValue).
	ToolTag() string
	// KeyValue answers the row's key.
	KeyValue() K
	// WithKey answers the row with key k, equal to its own: the cache's
	// one copy of it.
	WithKey(k *K) R
	// Plus answers the row with the totals of o (of the same hour and
	// key) added.
	Plus(o R) R
	// PointCount answers how many points the row adds up.
	PointCount() int64
}

// Source reads what a cache holds, from the points of one measurement.
type Source[R any] struct {
	// Measurement is the measurement of the points: deliveries of its
	// points drop cached hours.
	Measurement string
	// ReadHours answers the totals per UTC hour and key of the points of
	// tool id toolID (all when empty) with point times in [lo, hi), one row
	// per (hour, key) with points; name names the read in logs.
	ReadHours func(ctx context.Context, name string, lo, hi time.Time, toolID string) ([]R, error)
	// FirstTime answers the oldest point time (of toolID when given), and
	// false when there is no point.
	FirstTime func(ctx context.Context, toolID string) (time.Time, bool, error)
	// ReadPoints answers the points with times in [lo, hi), each as the
	// row of its hour (query.ErrNoPoints where the server cannot; nil:
	// edges are read as hourly totals, never cached).
	ReadPoints func(ctx context.Context, name string, lo, hi time.Time) ([]query.Point[R], error)
	// ParsePoint answers the point of a line of line protocol of the
	// measurement, as ReadPoints reads it back.
	ParsePoint func(line []byte) (query.Point[R], bool)
	// Span answers the times of the first and the last point in [lo, hi),
	// and false when there is none, at a cost that does not grow with
	// the points between them (nil: every missing hour is read).
	Span func(ctx context.Context, lo, hi time.Time) (first, last time.Time, ok bool, err error)
	// Count answers how many points have times in [lo, hi), at a fraction
	// of the cost of ReadHours: cached hours that are due are checked
	// against it, a day's run at a time, and read again only when their
	// count changed (nil: read again).
	Count func(ctx context.Context, lo, hi time.Time) (int64, error)
}

// Options configure New.
type Options struct {
	// TTL is how long a closed hour read, and the first point's time, are
	// trusted; <= 0: until Delivered drops them.
	TTL time.Duration
	// MaxRows bounds the rows held (> 0), and a quarter of it the points
	// of edge minutes held.
	MaxRows int
	Logger  *slog.Logger
}

// Cache answers aggregates from cached hourly totals of rows R keyed by K.
// It is safe for concurrent use.
type Cache[R Row[R, K], K comparable] struct {
	src Source[R]
	log *slog.Logger
	hc  *hourCache[R, K]
	mc  *minuteCache[R, K]

	// edges are the raw reads of window edges in flight (see readEdge).
	edgeMu sync.Mutex
	edges  map[edgeKey]*edgeFlight[R]

	refresh *refresher // renews entries in use (renew)
}

// Operations caches the hourly totals of operations.
type Operations = Cache[query.HourRow, query.HourKey]

// Spend caches the hourly totals of spend points.
type Spend = Cache[query.SpendHourRow, query.SpendKey]

// NewOperations answers the cache of operations read through r.
func NewOperations(r *query.Reader, o Options) *Operations {
	return New[query.HourRow, query.HourKey](Source[query.HourRow]{
		Measurement: schema.Operation, ReadHours: r.ReadHours, FirstTime: r.FirstOperationTime,
		ReadPoints: r.ReadPoints, ParsePoint: query.ParsePoint, Span: r.OperationSpan, Count: r.CountOperations,
	}, o)
}

// NewSpend answers the cache of spend points read through r.
func NewSpend(r *query.Reader, o Options) *Spend {
	return New[query.SpendHourRow, query.SpendKey](Source[query.SpendHourRow]{
		Measurement: schema.Spend, ReadHours: r.ReadSpendHours, FirstTime: r.FirstSpendTime,
		ReadPoints: r.ReadSpendPoints, ParsePoint: query.ParseSpendPoint, Span: r.SpendSpan, Count: r.CountSpend,
	}, o)
}

// New answers a cache over src, and starts its refresher when o.TTL > 0.
func New[R Row[R, K], K comparable](src Source[R], o Options) *Cache[R, K] {
	logger := o.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	c := &Cache[R, K]{
		src: src,
		log: logger,
		hc:  newHourCache[R, K](o.TTL, o.MaxRows),
		mc:  newMinuteCache[R, K](o.TTL, max(1, o.MaxRows/4)),
	}
	c.refresh = startRefresher(o.TTL, c.renew)
	return c
}

// Close stops the refresher and waits for it.
func (c *Cache[R, K]) Close() { c.refresh.Close() }

// Stats answers the closed hours held and their rows.
func (c *Cache[R, K]) Stats() (hours, rows int) { return c.hc.stats() }

// EdgeStats answers the edge minutes held and their points (or rows).
func (c *Cache[R, K]) EdgeStats() (minutes, points int) { return c.mc.stats() }

// Delivered drops the cached hours that the points of the cache's
// measurement in the line protocol lps (delivered to InfluxDB) fall in, and
// the first-point times they precede, and adds the points to the edge
// minutes cached or being read that they fall in.
func (c *Cache[R, K]) Delivered(lps [][]byte) {
	hours := map[int64]struct{}{}
	var minTime time.Time
	for _, lp := range lps {
		deliveredHours(lp, c.src.Measurement, hours, &minTime)
	}
	if len(hours) > 0 {
		c.hc.invalidate(slices.Collect(maps.Keys(hours)), minTime)
	}
	if c.src.ParsePoint == nil {
		return
	}
	// Only the lines of minutes held or being read are parsed. A read that
	// starts after this look reads these points itself: they are in
	// InfluxDB already.
	first, last, ok := c.mc.bounds()
	if !ok {
		return
	}
	lines := map[int64][][]byte{}
	for _, lp := range lps {
		deliveredLines(lp, c.src.Measurement, first, last, lines)
	}
	if len(lines) == 0 {
		return
	}
	var pts []query.Point[R]
	for m := range c.mc.wanted(lines) {
		for _, line := range lines[m] {
			if p, ok := c.src.ParsePoint(line); ok {
				pts = append(pts, p)
			} else {
				c.log.Warn("delivered point not understood; edge minute dropped", "measurement", c.src.Measurement)
				c.mc.drop(m)
			}
		}
	}
	if len(pts) > 0 {
		c.mc.delivered(pts)
	}
}

// Answer answers f of the hourly rows of window w (see HourRows): f of no
// rows when w holds no whole microsecond.
func Answer[R Row[R, K], K comparable, A any](ctx context.Context, c *Cache[R, K], w tsdb.Window, f func([]R) A) (A, error) {
	return answer(ctx, c, w, false, f)
}

// AnswerDays answers as Answer for an f that needs no row's hour but its
// UTC day (a breakdown, a daily trend): the rows of a whole cached day
// may come as one row per key holding the day's sums, 24 times fewer rows
// to add up.
func AnswerDays[R Row[R, K], K comparable, A any](ctx context.Context, c *Cache[R, K], w tsdb.Window, f func([]R) A) (A, error) {
	return answer(ctx, c, w, true, f)
}

func answer[R Row[R, K], K comparable, A any](ctx context.Context, c *Cache[R, K], w tsdb.Window, days bool, f func([]R) A) (A, error) {
	var rows []R
	if lo, hi, ok := query.TimeRange(w.Start, &w.End); ok {
		var err error
		if rows, err = c.hourRows(ctx, lo, hi, w.ToolID, days); err != nil {
			var none A
			return none, err
		}
	}
	return f(rows), nil
}

// coldHours is how many of a list's closed hours the cache may lack for
// Counter to count from it. Reading more would keep the list waiting on
// them (a first list of all time after a start: 23 s for 6 million
// operations on InfluxDB 1.8), where InfluxDB counts the matches in under
// a second.
const coldHours = 48

// Counter answers a query.Counter over c: the count of the matching
// operations from the hourly counts (query.CountOf). When c lacks more
// than coldHours of the window's closed hours, it answers query.ErrCold
// and reads them in the background (one such fill at a time), so that
// the next lists count from c; when the window has more closed hours than
// c would keep (half its rows), it answers query.ErrCold alone.
func Counter(c *Operations) query.Counter {
	return func(ctx context.Context, lo, hi time.Time, f tsdb.OperationFilter, need int) (int64, time.Time, error) {
		hours, missing, err := c.closedHours(ctx, lo, hi)
		switch {
		case err != nil:
			return 0, lo, err
		case hours > c.hc.maxRows/2:
			return 0, lo, query.ErrCold
		case len(missing) > coldHours:
			c.refresh.background(func(ctx context.Context) {
				if _, err := c.fillHours(ctx, missing); err != nil && ctx.Err() == nil {
					c.log.Warn("closed hours of a list not read in the background; a later list asks again", "measurement", c.src.Measurement, "hours", len(missing), "err", err)
				}
			})
			return 0, lo, query.ErrCold
		}
		rows, err := c.HourRows(ctx, lo, hi, f.ToolID)
		if err != nil {
			return 0, lo, err
		}
		total, from := query.CountOf(rows, lo, f, need)
		return total, from, nil
	}
}

// closedHours answers how many whole closed hours [lo, hi) holds from the
// first point's hour on, and those of them the cache lacks (ascending).
func (c *Cache[R, K]) closedHours(ctx context.Context, lo, hi time.Time) (int, []int64, error) {
	first, ok, err := c.FirstTime(ctx, "")
	if err != nil || !ok {
		return 0, nil, err
	}
	now := time.Now()
	// As hourRows: no point lies before the first's hour.
	from := tsdb.CeilTo(max(lo.UnixMicro(), tsdb.FloorTo(first.UnixMicro(), tsdb.MicrosPerHour)), tsdb.MicrosPerHour)
	to := min(tsdb.FloorTo(hi.UnixMicro(), tsdb.MicrosPerHour), tsdb.FloorTo(now.Add(-cacheGrace).UnixMicro(), tsdb.MicrosPerHour))
	if from >= to {
		return 0, nil, nil
	}
	return int((to - from) / tsdb.MicrosPerHour), c.hc.missing(from, to, now), nil
}

// FirstTime answers the oldest point time (of toolID when given), from the
// cache when it holds a fresh answer.
func (c *Cache[R, K]) FirstTime(ctx context.Context, toolID string) (time.Time, bool, error) {
	if e, hit := c.hc.peekFirst(toolID, time.Now()); hit {
		return e.t, e.ok, nil
	}
	return c.readFirst(ctx, toolID)
}

// readFirst reads the first point's time and caches it.
func (c *Cache[R, K]) readFirst(ctx context.Context, toolID string) (time.Time, bool, error) {
	fl := c.hc.beginFirst()
	started := time.Now()
	t, ok, err := c.src.FirstTime(ctx, toolID)
	c.hc.putFirst(toolID, firstEntry{t: t, ok: ok, fetched: started}, fl, err == nil)
	return t, ok, err
}

// HourRows answers the totals per hour and key of the points of tool id
// toolID (all when empty) with point times in [lo, hi) (whole
// microseconds): whole closed hours from the cache (reading the missing
// ones), the rest from raw points, as tsdb.PlanWindow plans it. Hours
// before the first point hold nothing and are never read.
func (c *Cache[R, K]) HourRows(ctx context.Context, lo, hi time.Time, toolID string) ([]R, error) {
	return c.hourRows(ctx, lo, hi, toolID, false)
}

// DayRows answers as HourRows for a caller that needs no row's hour but
// its UTC day (a grouping by tool, mode or day): a whole cached UTC day may
// come as one row per key holding the day's sums, 24 times fewer rows.
func (c *Cache[R, K]) DayRows(ctx context.Context, lo, hi time.Time, toolID string) ([]R, error) {
	return c.hourRows(ctx, lo, hi, toolID, true)
}

// hourRows answers as HourRows; with days, whole cached UTC days may come
// as one row per key (see hourCache.lookup).
func (c *Cache[R, K]) hourRows(ctx context.Context, lo, hi time.Time, toolID string, days bool) ([]R, error) {
	first, ok, err := c.FirstTime(ctx, "")
	if err != nil || !ok {
		return nil, err
	}
	// No point lies before the hour of the first: start there (a whole
	// hour, so that the cache can hold it).
	if h := first.Truncate(time.Hour); h.After(lo) {
		lo = h
	}
	if !lo.Before(hi) {
		return nil, nil
	}
	now := time.Now()
	closed := tsdb.FloorTo(now.Add(-cacheGrace).UnixMicro(), tsdb.MicrosPerHour)
	plan := tsdb.PlanWindow(tsdb.Window{Start: &lo, End: hi.Add(-time.Microsecond)},
		tsdb.PlanOptions{RollupEnd: closed, RawEdges: true})
	var raw, hourly []tsdb.Part
	hours := int64(0)
	for _, p := range plan {
		switch {
		case p.Subtract || p.NoLower || p.Source == tsdb.FromDaily:
			// Not planned with these options; read the window raw.
			return c.readEdge(ctx, lo, hi, toolID)
		case p.Source == tsdb.FromHourly:
			hourly = append(hourly, p)
			hours += (p.Hi - p.Lo) / tsdb.MicrosPerHour
		case len(raw) > 0 && raw[len(raw)-1].Hi == p.Lo: // adjacent raw parts: one read
			raw[len(raw)-1].Hi = p.Hi
		default:
			raw = append(raw, p)
		}
	}
	if hours == 0 {
		return c.edgeRows(ctx, lo, hi, toolID, true) // no whole closed hour inside
	}
	if hours > int64(c.hc.maxRows/2) {
		return c.readEdge(ctx, lo, hi, toolID) // too many to cache
	}

	var (
		mu   sync.Mutex
		out  []R
		errs []error
		wg   sync.WaitGroup
	)
	add := func(rows []R, err error) {
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			errs = append(errs, err)
			return
		}
		out = append(out, rows...)
	}
	for _, p := range raw {
		wg.Add(1)
		go func() {
			defer wg.Done()
			add(c.edgeRows(ctx, time.UnixMicro(p.Lo), time.UnixMicro(p.Hi), toolID, true))
		}()
	}

	var cached []R
	var missing []int64
	for _, p := range hourly {
		var m []int64
		cached, m = c.hc.lookup(p.Lo, p.Hi, now, cached, days)
		missing = append(missing, m...)
	}
	ofTool := ofTool[R, K](toolID)
	keep := func(rows []R) []R {
		if toolID == "" {
			return rows
		}
		kept := rows[:0:0]
		for _, r := range rows {
			if ofTool(r) {
				kept = append(kept, r)
			}
		}
		return kept
	}
	add(keep(cached), nil)
	if len(missing) > 0 {
		rows, err := c.fillHours(ctx, missing)
		add(keep(rows), err)
	}
	wg.Wait()
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}

// ofTool answers whether a row is of tool id toolID (any when empty).
func ofTool[R Row[R, K], K comparable](toolID string) func(R) bool {
	if toolID == "" {
		return func(R) bool { return true }
	}
	want := schema.TagValue(toolID)
	return func(r R) bool { return r.ToolTag() == want }
}

// edgeRows answers the rows of the points of tool id toolID (all when
// empty) with times in [lo, hi), a window edge: from the cached points of
// its minutes, reading the minutes missing (one read per span, shared with
// concurrent reads of the same span when share), and the parts of big
// minutes the edge does not cover whole as hourly totals (readEdge). Where
// the server cannot read points, the edge is read as hourly totals.
func (c *Cache[R, K]) edgeRows(ctx context.Context, lo, hi time.Time, toolID string, share bool) ([]R, error) {
	if c.src.ReadPoints == nil || hi.Sub(lo) > maxEdge {
		return c.readEdge(ctx, lo, hi, toolID)
	}
	keep := ofTool[R, K](toolID)
	now := time.Now()
	loNS, hiNS := lo.UnixNano(), hi.UnixNano()
	rows, missing, partial := c.mc.collect(loNS, hiNS, now, keep, nil)
	if len(missing) == 0 && len(partial) == 0 {
		return rows, nil
	}
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
	)
	add := func(more []R, err error) {
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			errs = append(errs, err)
			return
		}
		rows = append(rows, more...)
	}
	current := tsdb.FloorTo(now.UnixNano(), minuteNS)
	for _, sp := range missing {
		if sp.hi > current { // reaches the current minute: read ahead
			sp.hi = max(sp.hi, current+int64(readAhead)+minuteNS)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if share {
				ch, leader := c.mc.flight(sp)
				if !leader {
					select {
					case <-ch:
					case <-ctx.Done():
						add(nil, ctx.Err())
						return
					}
					// Look again: what that read stored is cached now.
					add(c.edgeRows(ctx, time.Unix(0, max(loNS, sp.lo)), time.Unix(0, min(hiNS, sp.hi)), toolID, false))
					return
				}
				defer c.mc.land(sp, ch)
			}
			// The points' sums per hour and key: a burst's edge holds
			// hundreds of thousands of points, and an answer adds them up
			// anyway.
			more := sums[R, K]{byHour: true}
			err := c.readMinutes(ctx, sp, func(p *query.Point[R]) {
				if p.NS >= loNS && p.NS < hiNS && keep(p.Row) {
					more.add(p.Row)
				}
			})
			add(more.rows, err)
		}()
	}
	for _, sp := range partial {
		wg.Add(1)
		go func() {
			defer wg.Done()
			add(c.readEdge(ctx, time.Unix(0, sp.lo), time.Unix(0, sp.hi), toolID))
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		// No points on this server, or too many to read (a burst): the
		// edge as hourly totals.
		if err := errors.Join(errs...); errors.Is(err, query.ErrNoPoints) || errors.Is(err, query.ErrTooLarge) {
			return c.readEdge(ctx, lo, hi, toolID)
		}
		return nil, errors.Join(errs...)
	}
	return rows, nil
}

// maxEdge bounds the span whose minutes edgeRows caches: edges are at most
// two hours (the window's partial hours, and the hour not yet closed), but
// a window ending far ahead of now has an edge up to its end, where no
// point is.
const maxEdge = 3 * time.Hour

// readMinutes reads the points of minutes sp as readPoints does, and when
// their answer is too large for one read (query.ErrTooLarge: a burst of
// writes), the two halves of sp, down to single minutes: the minutes are
// stored then (a big one as its totals), and answers after it find them
// cached instead of reading the whole edge again as hourly totals. Each
// point read goes to each (when not nil), one read's points at a time.
func (c *Cache[R, K]) readMinutes(ctx context.Context, sp nsSpan, each func(*query.Point[R])) error {
	err := c.readPoints(ctx, sp, each)
	n := (sp.hi - sp.lo) / minuteNS
	if !errors.Is(err, query.ErrTooLarge) || n < 2 {
		return err
	}
	mid := sp.lo + n/2*minuteNS
	if err := c.readMinutes(ctx, nsSpan{sp.lo, mid}, each); err != nil {
		return err
	}
	return c.readMinutes(ctx, nsSpan{mid, sp.hi}, each)
}

// readPoints reads the points of minutes sp and stores them, with those
// delivered meanwhile, and hands them all to each (when not nil).
func (c *Cache[R, K]) readPoints(ctx context.Context, sp nsSpan, each func(*query.Point[R])) error {
	f := c.mc.beginFill(sp.lo, sp.hi)
	started := time.Now()
	pts, err := c.src.ReadPoints(ctx, c.src.Measurement+" edge points", time.Unix(0, sp.lo), time.Unix(0, sp.hi))
	pts = c.mc.endFill(f, pts, started, err == nil)
	if each != nil {
		for i := range pts {
			each(&pts[i])
		}
	}
	return err
}

// spans groups ascending hours into runs of consecutive hours within one
// UTC day (at most fillChunkHours each).
func spans(hours []int64) [][2]int64 {
	var out [][2]int64
	for _, h := range hours {
		n := len(out)
		if n > 0 && out[n-1][1] == h && (h-out[n-1][0])/tsdb.MicrosPerHour < fillChunkHours &&
			tsdb.FloorTo(h, tsdb.MicrosPerDay) == tsdb.FloorTo(out[n-1][0], tsdb.MicrosPerDay) {
			out[n-1][1] = h + tsdb.MicrosPerHour
			continue
		}
		out = append(out, [2]int64{h, h + tsdb.MicrosPerHour})
	}
	return out
}

// fillConcurrency bounds the fill queries one call runs at once.
const fillConcurrency = 2

// spanMinHours is the shortest run of missing hours that fillHours first
// asks the first and last point of (Source.Span), and spanSplitHours the
// shortest whose hours between them it halves and asks again of: a long
// window over a sparse history (all time, from the first point of a year
// ago) would be read as one query per day, each costing as much empty as
// full on InfluxDB. A dense run of 30 days costs three questions more
// than its 30 reads.
const (
	spanMinHours   = 7 * 24
	spanSplitHours = 4 * spanMinHours
)

// trim takes from hours (ascending) those that it finds empty, with
// questions of the first and the last point (trimRun) of each run of at
// least spanMinHours consecutive hours, and answers the hours still to
// read.
func (c *Cache[R, K]) trim(ctx context.Context, hours []int64) ([]int64, error) {
	if c.src.Span == nil {
		return hours, nil
	}
	out := hours[:0:0]
	for len(hours) > 0 {
		n := 1
		for n < len(hours) && hours[n] == hours[n-1]+tsdb.MicrosPerHour {
			n++
		}
		run := hours[:n]
		hours = hours[n:]
		if n < spanMinHours {
			out = append(out, run...)
			continue
		}
		keep, err := c.trimRun(ctx, run[0], run[n-1]+tsdb.MicrosPerHour)
		if err != nil {
			return nil, err
		}
		for _, sp := range keep {
			for h := sp[0]; h < sp[1]; h += tsdb.MicrosPerHour {
				out = append(out, h)
			}
		}
	}
	return out, nil
}

// trimRun asks the first and the last point in the missing hours [lo, hi)
// (unix microseconds), stores those before the first's hour and after
// the last's as empty (as a read finding them empty would, but for those
// a delivery dropped meanwhile), halves the hours between them when
// there are spanSplitHours or more and trims each half, and answers the
// spans of hours still to read. When the question fails, they are all.
func (c *Cache[R, K]) trimRun(ctx context.Context, lo, hi int64) ([][2]int64, error) {
	f := c.hc.beginFill(lo, hi)
	started := time.Now()
	first, last, ok, err := c.src.Span(ctx, time.UnixMicro(lo), time.UnixMicro(hi))
	if err != nil {
		c.hc.endFill(f, nil, started, false)
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		c.log.Debug("first and last point not read: every hour is", "measurement", c.src.Measurement, "err", err)
		return [][2]int64{{lo, hi}}, nil
	}
	from, to := hi, hi // no point: every hour is empty
	if ok {
		from = tsdb.FloorTo(first.UnixMicro(), tsdb.MicrosPerHour)
		to = tsdb.FloorTo(last.UnixMicro(), tsdb.MicrosPerHour) + tsdb.MicrosPerHour
	}
	c.hc.endFillIn(f, [][2]int64{{lo, from}, {to, hi}}, nil, started, true)
	if (to-from)/tsdb.MicrosPerHour < spanSplitHours {
		return [][2]int64{{from, to}}, nil
	}
	mid := from + (to-from)/tsdb.MicrosPerHour/2*tsdb.MicrosPerHour
	a, err := c.trimRun(ctx, from, mid)
	if err != nil {
		return nil, err
	}
	b, err := c.trimRun(ctx, mid, to)
	return append(a, b...), err
}

// fillHours reads the given closed hours (ascending) into the cache, one
// read per span, and answers their rows (all tool ids). A span that
// another call is reading already is waited for and then looked up.
func (c *Cache[R, K]) fillHours(ctx context.Context, hours []int64) ([]R, error) {
	out, hours := c.checkExpired(ctx, hours)
	hours, err := c.trim(ctx, hours)
	if err != nil {
		return nil, err
	}
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
	)
	sem := make(chan struct{}, fillConcurrency)
	for _, sp := range spans(hours) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				mu.Lock()
				errs = append(errs, ctx.Err())
				mu.Unlock()
				return
			}
			defer func() { <-sem }()
			rows, err := c.fillSpan(ctx, sp[0], sp[1])
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			out = append(out, rows...)
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}

// checkExpired checks the hours of hours (ascending) whose entries have
// expired against Source.Count, a day's run per count, and renews the runs
// whose count of points is their entries': a window whose hours ran
// out, which a TTL shorter than a cold read of it leaves every time, is
// counted rather than read again. It answers the rows of the hours it
// renewed (all tool ids), and the hours still to read, ascending. A check
// that fails leaves its hours to the read.
func (c *Cache[R, K]) checkExpired(ctx context.Context, hours []int64) ([]R, []int64) {
	if c.src.Count == nil {
		return nil, hours
	}
	held, absent := c.hc.split(hours)
	var rows []R
	for _, sp := range spans(held) {
		r, renewed, err := c.checkHours(ctx, sp[0], sp[1])
		if err != nil {
			c.log.Debug("hourly cache check failed", "measurement", c.src.Measurement, "err", err)
		}
		if renewed {
			rows = append(rows, r...)
			continue
		}
		for h := sp[0]; h < sp[1]; h += tsdb.MicrosPerHour {
			absent = append(absent, h)
		}
	}
	slices.Sort(absent)
	return rows, absent
}

// checkHours counts the points of the hours [lo, hi) (unix microseconds,
// cached; Source.Count) and, when the count is their entries', renews
// them as if read when the count started, unless a delivery dropped one
// or a read replaced one meanwhile. It answers their rows and whether it
// renewed them; if not, they are all to read again.
func (c *Cache[R, K]) checkHours(ctx context.Context, lo, hi int64) ([]R, bool, error) {
	entries := c.hc.entries(lo, hi)
	started := time.Now()
	n, err := c.src.Count(ctx, time.UnixMicro(lo), time.UnixMicro(hi))
	if err != nil {
		return nil, false, err
	}
	rows, ok := c.hc.renewCounted(entries, n, started, lo, hi)
	return rows, ok, nil
}

// fillSpan reads hours [lo, hi) (unix microseconds) and stores them, or
// waits for a read of the same span in flight and looks it up.
func (c *Cache[R, K]) fillSpan(ctx context.Context, lo, hi int64) ([]R, error) {
	ch, leader := c.hc.flight(lo, hi)
	if !leader {
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		rows, missing := c.hc.lookup(lo, hi, time.Now(), nil, false)
		if len(missing) == 0 {
			return rows, nil
		}
		more, err := c.readSpan(ctx, missing[0], missing[len(missing)-1]+tsdb.MicrosPerHour)
		if err != nil {
			return nil, err
		}
		for _, r := range more { // hours found in the cache are in rows already
			if _, found := slices.BinarySearch(missing, r.HourStart()); found {
				rows = append(rows, r)
			}
		}
		return rows, nil
	}
	defer c.hc.land(lo, hi, ch)
	return c.readSpan(ctx, lo, hi)
}

// readSpan reads hours [lo, hi) from InfluxDB and stores them in the cache
// (but for those a delivery dropped meanwhile).
func (c *Cache[R, K]) readSpan(ctx context.Context, lo, hi int64) ([]R, error) {
	f := c.hc.beginFill(lo, hi)
	started := time.Now()
	rows, err := c.src.ReadHours(ctx, c.src.Measurement+" hours fill", time.UnixMicro(lo), time.UnixMicro(hi), "")
	c.hc.endFill(f, rows, started, err == nil)
	return rows, err
}

// renew reads again, in the background (the refresher), cached hours
// that are in use before their TTL runs out, so that answers keep coming
// from the cache while the TTL still bounds how stale an hour may be: those
// whose count of points changed (checkHours), all of them without
// Source.Count.
func (c *Cache[R, K]) renew(ctx context.Context) {
	for _, sp := range spans(c.hc.stale(time.Now(), 24*40)) {
		if c.src.Count != nil {
			_, renewed, err := c.checkHours(ctx, sp[0], sp[1])
			if err != nil {
				c.log.Debug("hourly cache check failed", "measurement", c.src.Measurement, "err", err)
				break
			}
			if renewed {
				continue
			}
		}
		if _, err := c.readSpan(ctx, sp[0], sp[1]); err != nil {
			c.log.Debug("hourly cache refresh failed", "measurement", c.src.Measurement, "err", err)
			break
		}
	}
	for _, sp := range c.mc.stale(time.Now(), 24*60) {
		if err := c.readMinutes(ctx, sp, nil); err != nil {
			c.log.Debug("edge minutes refresh failed", "measurement", c.src.Measurement, "err", err)
			break
		}
	}
	for _, id := range c.hc.staleFirst(time.Now()) {
		if _, _, err := c.readFirst(ctx, id); err != nil {
			c.log.Debug("first point time refresh failed", "measurement", c.src.Measurement, "err", err)
			break
		}
	}
}

// edgeKey names a raw read of a window edge.
type edgeKey struct {
	lo, hi int64 // unix nanoseconds
	toolID string
}

type edgeFlight[R any] struct {
	done chan struct{}
	rows []R
	err  error
}

// readEdge reads the raw hourly totals of [lo, hi), sharing a read of the
// same edge already in flight: the breakdown and the trend of one answer
// ask for the same edges at the same time. Edges end at a request's now, to
// the microsecond, so reads of different requests are not shared.
func (c *Cache[R, K]) readEdge(ctx context.Context, lo, hi time.Time, toolID string) ([]R, error) {
	k := edgeKey{lo.UnixNano(), hi.UnixNano(), toolID}
	c.edgeMu.Lock()
	if f := c.edges[k]; f != nil {
		c.edgeMu.Unlock()
		select {
		case <-f.done:
			return slices.Clone(f.rows), f.err
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if c.edges == nil {
		c.edges = map[edgeKey]*edgeFlight[R]{}
	}
	f := &edgeFlight[R]{done: make(chan struct{})}
	c.edges[k] = f
	c.edgeMu.Unlock()

	f.rows, f.err = c.src.ReadHours(ctx, c.src.Measurement+" hours raw edge", lo, hi, toolID)
	c.edgeMu.Lock()
	delete(c.edges, k)
	c.edgeMu.Unlock()
	close(f.done)
	return slices.Clone(f.rows), f.err
}
