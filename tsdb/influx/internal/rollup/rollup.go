// Package rollup is the InfluxDB store's cache of the totals of closed UTC
// hours, so that aggregates cost O(hours), not O(operations), also on
// InfluxDB 1.8, where Flux cannot push an aggregate down.
//
// Flux on InfluxDB 1.8 cannot push an aggregate down to storage: every
// Breakdown or Trend reads every point of its window, so a 30-day answer
// costs O(operations). The cache therefore keeps, per CLOSED UTC hour, the
// totals of each (tool_id, tool_name, operation_mode) key, read once per
// missing span of hours (Source.ReadHours), and answers aggregates from it:
// whole closed hours from the cache, the open hour and the partial hours at
// a window's edges from raw points, always (tsdb.PlanWindow with RollupEnd
// at the last closed hour and RawEdges).
//
// Freshness:
//   - Writes of this store: when the drainer delivers a record to InfluxDB it
//     hands it to Delivered, which drops the cached hours its operations fall
//     in, before the writer's caller is told, so a write is in the next
//     answer; deliveries delayed in the outbox drop them when they land. A
//     fill that was reading an hour while a delivery dropped it does not
//     store that hour.
//   - Writes of other replicas sharing the database, or any other writer:
//     an entry is trusted for Options.TTL after its read started, then read
//     again. A background refresher renews entries that are in use before
//     they expire, so answers stay fast.
//   - An hour counts as closed cacheGrace after its end, so that writes in
//     flight at the turn of the hour (other replicas' group commits, clock
//     skew) land before it is first cached.
//
// Memory is bounded by Options.MaxRows rows (an hour with no operation
// counts as one row; a row is about 70 bytes plus map overhead, so 262,144
// rows, a year of hours at 30 keys each, is about 25 MB); past it the least
// recently used hours are evicted. A query whose closed hours could not fit
// reads raw points instead.
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

// Source reads what the cache holds: the hourly totals of a span of time,
// and the first operation's time.
type Source interface {
	ReadHours(ctx context.Context, name string, lo, hi time.Time, toolID string) ([]query.HourRow, error)
	FirstOperationTime(ctx context.Context, toolID string) (time.Time, bool, error)
}

// Options configure New.
type Options struct {
	// TTL is how long a closed hour read, and the first operation's time,
	// are trusted; <= 0: until Delivered drops them.
	TTL time.Duration
	// MaxRows bounds the rows held (> 0).
	MaxRows int
	Logger  *slog.Logger
}

// Cache answers aggregates from cached hourly totals. It is safe for
// concurrent use.
type Cache struct {
	src Source
	log *slog.Logger
	hc  *hourCache

	// edges are the raw reads of window edges in flight (see readEdge).
	edgeMu sync.Mutex
	edges  map[edgeKey]*edgeFlight

	ctx         context.Context // cancelled by Close: stops refreshes in flight
	cancel      context.CancelFunc
	stop        chan struct{}
	refreshDone chan struct{}
	closeOnce   sync.Once
}

// New answers a cache over src, and starts its refresher when o.TTL > 0.
func New(src Source, o Options) *Cache {
	logger := o.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &Cache{
		src:         src,
		log:         logger,
		hc:          newHourCache(o.TTL, o.MaxRows),
		ctx:         ctx,
		cancel:      cancel,
		stop:        make(chan struct{}),
		refreshDone: make(chan struct{}),
	}
	if o.TTL > 0 {
		go c.refreshLoop()
	} else {
		close(c.refreshDone)
	}
	return c
}

// Close stops the refresher and waits for it.
func (c *Cache) Close() {
	c.closeOnce.Do(func() {
		close(c.stop)
		c.cancel()
		<-c.refreshDone
	})
}

// Stats answers the closed hours held and their rows.
func (c *Cache) Stats() (hours, rows int) { return c.hc.stats() }

// Delivered drops the cached hours that the operations of the line
// protocol lps (delivered to InfluxDB) fall in, and the first-operation
// times they precede.
func (c *Cache) Delivered(lps [][]byte) {
	hours := map[int64]struct{}{}
	var minTime time.Time
	for _, lp := range lps {
		deliveredHours(lp, hours, &minTime)
	}
	if len(hours) > 0 {
		c.hc.invalidate(slices.Collect(maps.Keys(hours)), minTime)
	}
}

// Breakdown answers the totals per (tool name, mode) in w.
func (c *Cache) Breakdown(ctx context.Context, w tsdb.Window) ([]tsdb.ModeTotals, error) {
	lo, hi, ok := query.TimeRange(w.Start, &w.End)
	if !ok {
		return []tsdb.ModeTotals{}, nil
	}
	rows, err := c.HourRows(ctx, lo, hi, w.ToolID)
	if err != nil {
		return nil, err
	}
	return query.BreakdownOf(rows), nil
}

// Trend answers the totals per UTC hour or day bucket of w.
func (c *Cache) Trend(ctx context.Context, w tsdb.Window, step tsdb.Step) ([]tsdb.Bucket, error) {
	lo, hi, ok := query.TimeRange(w.Start, &w.End)
	if !ok {
		return []tsdb.Bucket{}, nil
	}
	rows, err := c.HourRows(ctx, lo, hi, w.ToolID)
	if err != nil {
		return nil, err
	}
	return query.TrendOf(rows, step), nil
}

// CountFrom is a query.Counter: it answers how many operations match f (but
// its session filter) in [lo, hi), from the hourly counts, and the start of
// the newest span of hours that holds at least need of them (lo when there
// are fewer).
func (c *Cache) CountFrom(ctx context.Context, lo, hi time.Time, f tsdb.OperationFilter, need int) (int64, time.Time, error) {
	rows, err := c.HourRows(ctx, lo, hi, f.ToolID)
	if err != nil {
		return 0, lo, err
	}
	perHour := map[int64]int64{}
	var total int64
	for _, r := range rows {
		if f.ToolName != "" && r.Key.ToolName != f.ToolName || f.OperationMode != "" && r.Key.Mode != f.OperationMode {
			continue
		}
		perHour[r.Hour] += r.Count
		total += r.Count
	}
	hours := slices.Collect(maps.Keys(perHour))
	slices.Sort(hours)
	var acc int64
	for i := len(hours) - 1; i >= 0; i-- {
		if acc += perHour[hours[i]]; acc >= int64(need) {
			if t := time.UnixMicro(hours[i]); t.After(lo) {
				return total, t, nil
			}
			break
		}
	}
	return total, lo, nil
}

// FirstOperationTime answers the oldest created_at (of toolID when given),
// from the cache when it holds a fresh answer.
func (c *Cache) FirstOperationTime(ctx context.Context, toolID string) (time.Time, bool, error) {
	if e, hit := c.hc.peekFirst(toolID, time.Now()); hit {
		return e.t, e.ok, nil
	}
	return c.readFirst(ctx, toolID)
}

// readFirst reads the first operation time and caches it.
func (c *Cache) readFirst(ctx context.Context, toolID string) (time.Time, bool, error) {
	fl := c.hc.beginFirst()
	started := time.Now()
	t, ok, err := c.src.FirstOperationTime(ctx, toolID)
	c.hc.putFirst(toolID, firstEntry{t: t, ok: ok, fetched: started}, fl, err == nil)
	return t, ok, err
}

// HourRows answers the totals per hour and key of the operations of tool id
// toolID (all when empty) with point times in [lo, hi) (whole
// microseconds): whole closed hours from the cache (reading the missing
// ones), the rest from raw points, as tsdb.PlanWindow plans it. Hours
// before the first operation hold nothing and are never read.
func (c *Cache) HourRows(ctx context.Context, lo, hi time.Time, toolID string) ([]hourRow, error) {
	first, ok, err := c.FirstOperationTime(ctx, "")
	if err != nil || !ok {
		return nil, err
	}
	// No operation lies before the hour of the first: start there (a whole
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
	if hours == 0 || hours > int64(c.hc.maxRows/2) {
		return c.readEdge(ctx, lo, hi, toolID) // no whole closed hour inside, or too many
	}

	var (
		mu   sync.Mutex
		out  []hourRow
		errs []error
		wg   sync.WaitGroup
	)
	add := func(rows []hourRow, err error) {
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
			add(c.readEdge(ctx, time.UnixMicro(p.Lo), time.UnixMicro(p.Hi), toolID))
		}()
	}

	var cached []hourRow
	var missing []int64
	for _, p := range hourly {
		var m []int64
		cached, m = c.hc.lookup(p.Lo, p.Hi, now, cached)
		missing = append(missing, m...)
	}
	want := schema.TagValue(toolID)
	keep := func(rows []hourRow) []hourRow {
		if toolID == "" {
			return rows
		}
		kept := rows[:0:0]
		for _, r := range rows {
			if r.Key.ToolID == want {
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

// fillHours reads the given closed hours (ascending) into the cache, one
// read per span, and answers their rows (all tool ids). A span that
// another call is reading already is waited for and then looked up.
func (c *Cache) fillHours(ctx context.Context, hours []int64) ([]hourRow, error) {
	var (
		mu   sync.Mutex
		out  []hourRow
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

// fillSpan reads hours [lo, hi) (unix microseconds) and stores them, or
// waits for a read of the same span in flight and looks it up.
func (c *Cache) fillSpan(ctx context.Context, lo, hi int64) ([]hourRow, error) {
	ch, leader := c.hc.flight(lo, hi)
	if !leader {
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		rows, missing := c.hc.lookup(lo, hi, time.Now(), nil)
		if len(missing) == 0 {
			return rows, nil
		}
		more, err := c.readSpan(ctx, missing[0], missing[len(missing)-1]+tsdb.MicrosPerHour)
		if err != nil {
			return nil, err
		}
		for _, r := range more { // hours found in the cache are in rows already
			if _, found := slices.BinarySearch(missing, r.Hour); found {
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
func (c *Cache) readSpan(ctx context.Context, lo, hi int64) ([]hourRow, error) {
	f := c.hc.beginFill(lo, hi)
	started := time.Now()
	rows, err := c.src.ReadHours(ctx, "hours fill", time.UnixMicro(lo), time.UnixMicro(hi), "")
	c.hc.endFill(f, rows, started, err == nil)
	return rows, err
}

// refreshLoop renews, in the background, cached hours that are in use
// before their TTL runs out, so that answers keep coming from the cache
// while the TTL still bounds how stale an hour may be.
func (c *Cache) refreshLoop() {
	defer close(c.refreshDone)
	every := min(max(c.hc.ttl/4, 100*time.Millisecond), 30*time.Second)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
		}
		for _, sp := range spans(c.hc.stale(time.Now(), 24*40)) {
			if _, err := c.readSpan(c.ctx, sp[0], sp[1]); err != nil {
				c.log.Debug("hourly cache refresh failed", "err", err)
				break
			}
		}
		for _, id := range c.hc.staleFirst(time.Now()) {
			if _, _, err := c.readFirst(c.ctx, id); err != nil {
				c.log.Debug("first operation time refresh failed", "err", err)
				break
			}
		}
	}
}

// edgeKey names a raw read of a window edge.
type edgeKey struct {
	lo, hi int64 // unix nanoseconds
	toolID string
}

type edgeFlight struct {
	done chan struct{}
	rows []hourRow
	err  error
}

// readEdge reads the raw hourly totals of [lo, hi), sharing a read of the
// same edge already in flight: the breakdown and the trend of one answer
// ask for the same edges at the same time. Edges end at a request's now, to
// the microsecond, so reads of different requests are not shared.
func (c *Cache) readEdge(ctx context.Context, lo, hi time.Time, toolID string) ([]hourRow, error) {
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
		c.edges = map[edgeKey]*edgeFlight{}
	}
	f := &edgeFlight{done: make(chan struct{})}
	c.edges[k] = f
	c.edgeMu.Unlock()

	f.rows, f.err = c.src.ReadHours(ctx, "hours raw edge", lo, hi, toolID)
	c.edgeMu.Lock()
	delete(c.edges, k)
	c.edgeMu.Unlock()
	close(f.done)
	return slices.Clone(f.rows), f.err
}
