package rollup

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/omnimemory/omnimemory-metrics/tsdb"
	"github.com/omnimemory/omnimemory-metrics/tsdb/influx/internal/query"
	"github.com/omnimemory/omnimemory-metrics/tsdb/influx/schema"
)

// KeyDays caches, per closed UTC day, and per closed UTC hour and minute
// at the edges of the windows asked for, the totals of each value of one
// dimension of the operations (a file path, or a session), so that an
// aggregate by it (and day; by session, by project too) filtered by dates
// only (Serves) reads each whole closed day, hour and minute of its window
// once, and only its partial minutes from InfluxDB (the trailing edge
// right after a burst of writes included). InfluxDB cannot group by a
// field, so every read of totals per file walks the points of its span
// (Sum): a Grafana board that asks for the top files of 30 days on every
// refresh would read 30 days of points each time. Sessions are a tag,
// which InfluxDB sums itself, still about a second for 30 days.
//
// Freshness, as for the hourly caches: Delivered drops the days, hours and
// minutes that this store's delivered operations fall in (a read of such a span in
// flight does not store it); writes of other writers count once an entry
// is TTL old: a refresher checks the entries answers used once they are
// half the TTL old, and an answer those TTL old, against InfluxDB's count
// of their span's operations (count), and reads a span again only when
// that changed, so that answers stay warm; a day or an hour
// is closed cacheGrace after its end, a minute minuteGrace after. Reads of one
// missing span are shared. Memory: at most 2 × Options.MaxRows (span,
// key) rows (a span without operations counts as one), 80 bytes each and
// one copy of each key's text (524,288 rows, 30 days of 8,000 files read a
// day with the hours at the edges twice over, about 42 MB), the least
// recently used spans evicted past it.
type KeyDays struct {
	dim      tsdb.Dimension // tsdb.DimFilePath or tsdb.DimSessionID
	sum      Sum
	span     func(ctx context.Context, lo, hi time.Time) (first, last time.Time, ok bool, err error)
	projects func(ctx context.Context) (map[uuid.UUID]*string, error) // of the sessions, for DimSessionID
	// minutes, when not nil, adds up a run of minutes per minute and key
	// with one read (sessions: query.Reader.SumSessionMinutes); its
	// query.ErrNoPoints (no InfluxQL) sets noMinutes, and minutes are then
	// read a sum each.
	minutes   MinuteSum
	noMinutes atomic.Bool
	// count, when not nil, answers how many operations have point times
	// in [lo, hi) (query.Reader.CountOperations): a renewal checks an
	// entry against it, and reads its span again only when they differ.
	count func(ctx context.Context, lo, hi time.Time) (int64, error)
	ttl   time.Duration
	max   int
	now   func() time.Time
	log   *slog.Logger

	refresh *refresher // renews entries in use (renew)

	mu      sync.Mutex
	spans   map[keySpan]*keyEntry
	rows    int
	paths   map[string]string // one copy of each key's text
	tick    uint64
	reading map[keySpan]*keyRead // reads in flight

	// Where operations are (see bounds): the last read of the first and
	// the last operation of all time, when it started, a read in flight,
	// and the earliest and latest operation this store delivered.
	known      opBounds
	knownAt    time.Time
	knownUsed  bool          // answered from since it was read
	boundsRead chan struct{} // closed when it ends
	delivered  opBounds
}

// opBounds is the first and the last operation (unix microseconds) of
// some operations, ok false when there is none.
type opBounds struct {
	first, last int64
	ok          bool
}

// opWhere is where operations may be: in [first, last], none in [gapLo,
// gapHi) (unix microseconds).
type opWhere struct{ first, last, gapLo, gapHi int64 }

// widen answers the bounds of the operations of b and of o.
func (b opBounds) widen(o opBounds) opBounds {
	switch {
	case !o.ok:
		return b
	case !b.ok:
		return o
	}
	return opBounds{first: min(b.first, o.first), last: max(b.last, o.last), ok: true}
}

// keyRead is a read of a span in flight.
type keyRead struct {
	done    chan struct{} // closed when it ends
	dropped bool          // a delivery fell in the span meanwhile: not to be stored
}

// Sum adds the operations of q's window that match its filter to sums,
// grouped by q's dimensions (query.Reader.SumOperations).
type Sum func(ctx context.Context, q tsdb.AggregateQuery, sums *tsdb.GroupSums) error

// MinuteSum calls add with the totals of each UTC minute (its start, unix
// microseconds) and key of the operations in [lo, hi)
// (query.Reader.SumSessionMinutes).
type MinuteSum func(ctx context.Context, lo, hi time.Time, add func(minute int64, key string, t tsdb.Totals, c tsdb.CacheCounts)) error

// keySpan is a UTC day, hour or minute: its start and width, unix
// microseconds.
type keySpan struct{ start, width int64 }

type keyEntry struct {
	rows    []keyRow
	fetched time.Time // when the read that produced it started
	used    uint64
	reused  bool // answered from since it was read
}

// keyRow is the totals of the operations of one file path (null: none),
// or one session (its text), in one span: 80 bytes, its text shared by
// every span's row of it.
type keyRow struct {
	file string
	null bool
	tsdb.Totals
	cache tsdb.CacheCounts
}

// spanWidths are the widths of the cached spans, widest first: whole days,
// then whole hours and minutes at a window's edges.
var spanWidths = []int64{tsdb.MicrosPerDay, tsdb.MicrosPerHour, minuteMicros}

// minuteMicros is a minute in microseconds.
const minuteMicros = int64(time.Minute / time.Microsecond)

// NewFileDays answers the cache of files per day of the operations r
// reads, expiring as o says, bounded by twice o.MaxRows (its rows are
// smaller than an hourly cache's, and a day holds a row per file read).
// With a TTL it starts a refresher, which Close stops.
func NewFileDays(r *query.Reader, o Options) *KeyDays {
	c := newKeyDays(tsdb.DimFilePath, r.SumOperations, r.OperationSpan, o)
	c.count = r.CountOperations
	return c
}

// NewSessionDays answers the same cache of sessions per day, which also
// answers groupings by project (a session's project read per answer).
func NewSessionDays(r *query.Reader, o Options) *KeyDays {
	c := newKeyDays(tsdb.DimSessionID, r.SumOperations, r.OperationSpan, o)
	c.projects = r.Projects
	c.minutes = r.SumSessionMinutes
	c.count = r.CountOperations
	return c
}

// newKeyDays is a KeyDays of dim over any sum and span.
func newKeyDays(dim tsdb.Dimension, sum Sum, span func(ctx context.Context, lo, hi time.Time) (time.Time, time.Time, bool, error), o Options) *KeyDays {
	logger := o.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	c := &KeyDays{
		dim: dim, sum: sum, span: span, ttl: o.TTL, max: max(1, 2*o.MaxRows), now: time.Now, log: logger,
		spans: map[keySpan]*keyEntry{}, paths: map[string]string{}, reading: map[keySpan]*keyRead{},
	}
	c.refresh = startRefresher(o.TTL, func(ctx context.Context) {
		if err := c.renew(ctx); err != nil {
			c.log.Debug("day cache refresh failed", "dimension", c.dim, "err", err)
		}
	})
	return c
}

// Close stops the refresher and waits for it.
func (c *KeyDays) Close() { c.refresh.Close() }

// renew reads again, in the background (the refresher), the spans and the
// bounds answers used since they were read and that are half the TTL old
// or more, oldest span first: a board that asks for the top of files (or
// sessions) keeps being answered from the cache, not from 30 days of
// points once every TTL, while the TTL still bounds how stale an entry may
// be. A span is first checked against InfluxDB's count of its operations
// (count), and read again only when it differs from its entry's: another
// writer's operation in it changes the count, and InfluxDB counts a day
// of operations in a fraction of the time a read of its files takes (see
// query.Reader.CountOperations).
func (c *KeyDays) renew(ctx context.Context) error {
	now := c.now()
	c.mu.Lock()
	var stale []keySpan
	for sp, e := range c.spans {
		if e.reused && now.Sub(e.fetched) >= c.ttl/2 {
			stale = append(stale, sp)
		}
	}
	if c.knownUsed && now.Sub(c.knownAt) >= c.ttl/2 && c.boundsRead == nil {
		if _, err := c.readBounds(ctx); err != nil {
			return err
		}
	} else {
		c.mu.Unlock()
	}
	slices.SortFunc(stale, func(a, b keySpan) int { return cmp.Compare(a.start, b.start) })
	for _, sp := range stale {
		c.mu.Lock()
		e := c.spans[sp]
		if c.reading[sp] != nil || e == nil {
			c.mu.Unlock()
			continue
		}
		if c.count != nil {
			c.mu.Unlock()
			same, err := c.unchanged(ctx, sp, e)
			if err != nil {
				return err
			}
			if same {
				continue
			}
			c.mu.Lock()
			if c.reading[sp] != nil {
				c.mu.Unlock()
				continue
			}
		}
		if _, err := c.read(ctx, sp); err != nil {
			return err
		}
	}
	return nil
}

// unchanged answers whether InfluxDB counts as many operations in span sp
// as its entry e holds, and then renews e as if read when the check
// started: unless a delivery dropped it or a read replaced it meanwhile.
func (c *KeyDays) unchanged(ctx context.Context, sp keySpan, e *keyEntry) (bool, error) {
	started := c.now()
	n, err := c.count(ctx, time.UnixMicro(sp.start), time.UnixMicro(sp.start+sp.width))
	if err != nil {
		return false, err
	}
	var held int64
	for i := range e.rows {
		held += e.rows[i].Count
	}
	if held != n {
		return false, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.spans[sp] == e && c.reading[sp] == nil {
		e.fetched, e.reused = started, false
	}
	return true, nil
}

// Serves answers whether q is one c answers: filtered by dates only,
// grouped by c's dimension (by a session's: or by project), and by day
// or not.
func (c *KeyDays) Serves(q tsdb.AggregateQuery) bool {
	f := q.Filter
	if f.SessionID != nil || f.ToolName != "" || f.OperationMode != "" || f.ToolID != "" {
		return false
	}
	key := false
	for _, d := range q.GroupBy {
		switch {
		case d == c.dim || d == tsdb.DimProjectID && c.dim == tsdb.DimSessionID:
			key = true
		case d == tsdb.DimDay:
		default:
			return false
		}
	}
	return key
}

// Aggregate answers q (Serves): the whole closed UTC days of its
// window, then the whole closed hours and minutes of what is left, from the
// cache (read first where missing), the rest from the points.
func (c *KeyDays) Aggregate(ctx context.Context, q tsdb.AggregateQuery) (tsdb.AggregateResult, error) {
	var sums tsdb.GroupSums
	lo, hi, ok := query.TimeRange(q.Filter.Start, q.Filter.End)
	if !ok {
		return sums.Rank(q), nil
	}
	w := window{first: lo.UnixMicro(), last: hi.UnixMicro() - 1, now: c.now().UnixMicro(), sums: map[groupKey]*keyRow{}}
	if q.Filter.Start == nil || q.Filter.End == nil {
		// Only where operations are: a window without a start begins in
		// 1678, one without an end ends in 2262.
		b, err := c.bounds(ctx)
		if err != nil {
			return sums.Rank(q), err
		}
		// Up to the end of the current minute at least: another writer's
		// live operations land there.
		w.first, w.last = max(w.first, b.first), min(w.last, max(b.last, tsdb.FloorTo(w.now, minuteMicros)+minuteMicros-1))
		w.gapLo, w.gapHi = b.gapLo, b.gapHi
	}
	if err := c.sumSpans(ctx, q, w, lo.UnixMicro(), hi.UnixMicro(), spanWidths, &sums); err != nil {
		return tsdb.AggregateResult{}, err
	}
	// The cached spans' sums, added up per key in w.sums (a map lookup a
	// row, where GroupSums builds each row's key).
	var projects map[uuid.UUID]*string
	if slices.Contains(q.GroupBy, tsdb.DimProjectID) {
		var err error
		if projects, err = c.projects(ctx); err != nil {
			return tsdb.AggregateResult{}, err
		}
	}
	for k, a := range w.sums {
		key := make([]tsdb.KeyValue, len(q.GroupBy))
		for i, d := range q.GroupBy {
			switch d {
			case tsdb.DimDay:
				key[i] = tsdb.KeyValue{Start: time.UnixMicro(k.day).UTC()}
			case tsdb.DimProjectID:
				id, err := uuid.Parse(a.file)
				if err != nil {
					return tsdb.AggregateResult{}, fmt.Errorf("influx: session id %q: %w", a.file, err)
				}
				key[i] = d.Of(&tsdb.Operation{}, projects[id])
			default:
				key[i] = tsdb.KeyValue{Text: a.file, Null: a.null}
			}
		}
		sums.Add(key, a.Totals, a.cache)
	}
	return sums.Rank(q), nil
}

// window is what Aggregate sums: operations in [first, last], none in
// [gapLo, gapHi), at now (unix microseconds), and the sums of the cached
// spans per key.
type window struct {
	first, last, now int64
	gapLo, gapHi     int64
	sums             map[groupKey]*keyRow
}

// groupKey is a key of the cached spans' sums: a file path or a session,
// and its day (0 unless grouped by day).
type groupKey struct {
	file string
	null bool
	day  int64
}

// minuteGrace is how long after its end a minute counts as closed: a
// burst of writes just before an answer is then read once, not on every
// answer until cacheGrace has passed. A write of another writer still in
// flight at the turn of the minute counts once the entry is TTL old, as
// for the edge minutes of the hourly caches.
const minuteGrace = 2 * time.Second

// sumSpans adds the operations of q in [lo, hi) to sums: the whole closed
// spans of widths[0] from the cache, the rest with the next widths, and
// with none left from the points.
func (c *KeyDays) sumSpans(ctx context.Context, q tsdb.AggregateQuery, w window, lo, hi int64, widths []int64, sums *tsdb.GroupSums) error {
	if hi <= w.first || lo > w.last || (lo >= w.gapLo && hi <= w.gapHi) {
		return nil // no operation there
	}
	if len(widths) == 0 {
		from, to := time.UnixMicro(max(lo, w.first)).UTC(), time.UnixMicro(min(hi, w.last+1)-1).UTC() // End is inclusive
		q.Filter.Start, q.Filter.End = &from, &to
		return c.sum(ctx, q, sums)
	}
	width, grace := widths[0], cacheGrace
	if width < tsdb.MicrosPerHour {
		grace = minuteGrace
	}
	from, to := tsdb.CeilTo(lo, width), min(tsdb.FloorTo(hi, width), tsdb.FloorTo(w.now-grace.Microseconds(), width))
	if from >= to {
		return c.sumSpans(ctx, q, w, lo, hi, widths[1:], sums)
	}
	if lo < from {
		if err := c.sumSpans(ctx, q, w, lo, from, widths[1:], sums); err != nil {
			return err
		}
	}
	if to < hi {
		if err := c.sumSpans(ctx, q, w, to, hi, widths[1:], sums); err != nil {
			return err
		}
	}
	from, to = max(from, tsdb.FloorTo(w.first, width)), min(to, tsdb.FloorTo(w.last, width)+width)
	read, err := c.prefetch(ctx, w, from, to, width)
	if err != nil {
		return err
	}
	byDay := slices.Contains(q.GroupBy, tsdb.DimDay)
	for start := from; start < to; start += width {
		if start >= w.gapLo && start+width <= w.gapHi {
			continue
		}
		rows, ok := read[start]
		if !ok {
			if rows, err = c.rowsOf(ctx, keySpan{start, width}); err != nil {
				return err
			}
		}
		k := groupKey{}
		if byDay {
			k.day = tsdb.FloorTo(start, tsdb.MicrosPerDay)
		}
		for i := range rows {
			r := &rows[i]
			k.file, k.null = r.file, r.null
			a := w.sums[k]
			if a == nil {
				a = &keyRow{file: r.file, null: r.null}
				w.sums[k] = a
			}
			a.Totals.Add(r.Totals)
			a.cache.Add(r.cache)
		}
	}
	return nil
}

// bounds answers where operations may be, as far as c knows: between the
// first and the last of all time as last read (read again once TTL old,
// one read shared by the calls that need it), widened by those this store
// delivered, and from a minute before that read on (where other writers'
// live operations land). A window without an end or a start is cut to
// that, so that an answer asks InfluxDB nothing of the days, hours and
// minutes without operations, and nothing at all of where they are when
// it is cached: on 1.8, first() and last() over 30 days of 2,000,000
// operations take some 60 ms, most of a warm answer otherwise. Another
// writer's operations before the first, ahead of the clock or between
// the last and the read count once the read is TTL old, as in the cached
// spans.
func (c *KeyDays) bounds(ctx context.Context) (opWhere, error) {
	c.mu.Lock()
	for {
		if !c.knownAt.IsZero() && (c.ttl <= 0 || c.now().Sub(c.knownAt) < c.ttl) {
			defer c.mu.Unlock()
			c.knownUsed = true
			return c.knownBounds(), nil
		}
		other := c.boundsRead
		if other == nil {
			break
		}
		c.mu.Unlock()
		select {
		case <-other:
		case <-ctx.Done():
			return opWhere{}, ctx.Err()
		}
		c.mu.Lock()
	}
	return c.readBounds(ctx)
}

// readBounds reads where operations are (see bounds). The caller holds
// mu, with no read of them in flight; readBounds releases it.
func (c *KeyDays) readBounds(ctx context.Context) (opWhere, error) {
	read := make(chan struct{})
	c.boundsRead = read
	started := c.now()
	c.mu.Unlock()

	lo, hi, _ := query.TimeRange(nil, nil)
	first, last, ok, err := c.span(ctx, lo, hi)

	c.mu.Lock()
	defer c.mu.Unlock()
	c.boundsRead = nil
	close(read)
	if err != nil {
		return opWhere{}, err
	}
	c.known, c.knownAt, c.knownUsed = opBounds{first: first.UnixMicro(), last: last.UnixMicro(), ok: ok}, started, false
	return c.knownBounds(), nil
}

// knownBounds is what bounds answers from the last read. The caller holds
// mu.
func (c *KeyDays) knownBounds() opWhere {
	since := tsdb.FloorTo(c.knownAt.UnixMicro(), minuteMicros) - minuteMicros
	k := c.known.widen(c.delivered)
	if !k.ok {
		return opWhere{first: since, last: since, gapLo: since, gapHi: since}
	}
	return opWhere{first: min(k.first, since), last: k.last, gapLo: k.last + 1, gapHi: since}
}

// spanReads bounds the reads of spans one answer runs at once (prefetch).
const spanReads = 4

// perSum answers how many consecutive spans of width prefetch reads with
// one sum, grouped by the time dimension by (1: a span per sum; "" for
// several: minutes, read by c.minutes): the hours at a window's edges a
// day per sum, the days by session a week per sum (the query of
// query.Reader.SumOperations), and its minutes an hour per read where the
// server sums them; days of files stay a sum each, read spanReads at a
// time (their points are read a day per query anyway).
func (c *KeyDays) perSum(width int64) (n int, by tsdb.Dimension) {
	switch {
	case width == tsdb.MicrosPerHour:
		return 24, tsdb.DimHour
	case width == tsdb.MicrosPerDay && c.dim == tsdb.DimSessionID:
		return 7, tsdb.DimDay
	case width == minuteMicros && c.minutes != nil && !c.noMinutes.Load():
		return 60, ""
	}
	return 1, ""
}

// prefetch reads, spanReads at a time, the spans of width in [from, to)
// that are neither cached nor known empty nor being read, and answers
// their rows by start: the days of a cold window, or the minutes that
// closed since the last answer (a minute's read costs InfluxDB about a
// query's fixed cost, 10-30 ms on 1.8, so eighteen of them read one by one
// are half a second). Hours, and days by session, are read a run of
// consecutive ones per sum (perSum), where a query per span pays
// InfluxDB's fixed cost of a query each: sessions are a tag, which
// InfluxDB 1.x sums per day or hour itself, and the points of a run of
// hours of files are one query.
func (c *KeyDays) prefetch(ctx context.Context, w window, from, to, width int64) (map[int64][]keyRow, error) {
	perSum, _ := c.perSum(width)
	c.checkStale(ctx, w, from, to, width)
	now := c.now()
	c.mu.Lock()
	var runs [][]keySpan
	missing := 0
	for start := from; start < to; start += width {
		sp := keySpan{start, width}
		if e := c.spans[sp]; (e != nil && c.fresh(e, now)) || c.reading[sp] != nil || start >= w.gapLo && start+width <= w.gapHi {
			continue
		}
		missing++
		if n := len(runs); n > 0 && len(runs[n-1]) < perSum && runs[n-1][len(runs[n-1])-1].start+width == start {
			runs[n-1] = append(runs[n-1], sp)
		} else {
			runs = append(runs, []keySpan{sp})
		}
	}
	if missing < 2 {
		c.mu.Unlock()
		return nil, nil // the caller reads it
	}
	reads := make([][]*keyRead, len(runs))
	for i, run := range runs {
		reads[i] = c.beginRead(run)
	}
	started := c.now()
	c.mu.Unlock()
	rows := make([]map[int64][]keyRow, len(runs))
	errs := make([]error, len(runs))
	atMost(spanReads, len(runs), func(i int) {
		rows[i], errs[i] = c.readSpans(ctx, runs[i], reads[i], started)
	})
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	read := make(map[int64][]keyRow, missing)
	for _, r := range rows {
		maps.Copy(read, r)
	}
	return read, nil
}

// checkStale checks the entries of the spans of width in [from, to) that
// are cached but no longer fresh against InfluxDB's count (unchanged),
// spanReads at a time, and so renews those whose count is their entry's:
// a window whose entries ran out, which a TTL shorter than a cold read of
// it leaves every time, is then counted rather than read again. A check
// that fails leaves its span to the read.
func (c *KeyDays) checkStale(ctx context.Context, w window, from, to, width int64) {
	if c.count == nil {
		return
	}
	now := c.now()
	c.mu.Lock()
	var sps []keySpan
	var es []*keyEntry
	for start := from; start < to; start += width {
		sp := keySpan{start, width}
		if e := c.spans[sp]; e != nil && !c.fresh(e, now) && c.reading[sp] == nil && (start < w.gapLo || start+width > w.gapHi) {
			sps, es = append(sps, sp), append(es, e)
		}
	}
	c.mu.Unlock()
	atMost(spanReads, len(sps), func(i int) {
		if _, err := c.unchanged(ctx, sps[i], es[i]); err != nil {
			c.log.Debug("day cache check failed", "dimension", c.dim, "err", err)
		}
	})
}

// atMost calls f(i) for every i in [0, n), each in a goroutine of its
// own, at most limit at a time, and returns once they have all returned.
func atMost(limit, n int, f func(i int)) {
	sem := make(chan struct{}, limit)
	var wg sync.WaitGroup
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			f(i)
		})
	}
	wg.Wait()
}

// fresh answers whether e may answer at now. The caller holds mu.
func (c *KeyDays) fresh(e *keyEntry, now time.Time) bool {
	return c.ttl <= 0 || now.Sub(e.fetched) < c.ttl
}

// rowsOf answers the totals of each key of span sp: cached, or read
// and cached (an expired entry was checked by prefetch's checkStale
// before).
func (c *KeyDays) rowsOf(ctx context.Context, sp keySpan) ([]keyRow, error) {
	c.mu.Lock()
	for {
		if e := c.spans[sp]; e != nil && c.fresh(e, c.now()) {
			c.tick++
			e.used, e.reused = c.tick, true
			c.mu.Unlock()
			return e.rows, nil
		}
		other := c.reading[sp]
		if other == nil {
			break
		}
		c.mu.Unlock()
		select {
		case <-other.done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		c.mu.Lock()
	}
	return c.read(ctx, sp)
}

// read reads the totals of each key of span sp, and caches them
// unless a delivery fell in sp meanwhile. The caller holds mu, which read
// releases.
func (c *KeyDays) read(ctx context.Context, sp keySpan) ([]keyRow, error) {
	sps := []keySpan{sp}
	reads := c.beginRead(sps)
	started := c.now()
	c.mu.Unlock()
	rows, err := c.readSpans(ctx, sps, reads, started)
	return rows[sp.start], err
}

// beginRead registers the reads of spans sps. The caller holds mu.
func (c *KeyDays) beginRead(sps []keySpan) []*keyRead {
	reads := make([]*keyRead, len(sps))
	for i, sp := range sps {
		reads[i] = &keyRead{done: make(chan struct{})}
		c.reading[sp] = reads[i]
	}
	return reads
}

// readSpans reads the totals of each key of spans sps (one span, or
// consecutive ones: perSum), by start, with one sum (by day or hour too
// when several), and caches each span unless a delivery fell in it
// meanwhile; it ends their reads (beginRead, started then).
func (c *KeyDays) readSpans(ctx context.Context, sps []keySpan, reads []*keyRead, started time.Time) (map[int64][]keyRow, error) {
	sums, err := c.sumRun(ctx, sps)

	c.mu.Lock()
	defer c.mu.Unlock()
	for i, sp := range sps {
		delete(c.reading, sp)
		close(reads[i].done)
	}
	if err != nil {
		return nil, err
	}
	if len(c.paths) > c.max {
		clear(c.paths) // the rows kept keep their paths
	}
	rows := make(map[int64][]keyRow, len(sps))
	for _, r := range sums {
		p, ok := c.paths[r.file]
		if !ok {
			p = r.file
			c.paths[p] = p
		}
		r.file = p
		rows[r.start] = append(rows[r.start], r.keyRow)
	}
	for i, sp := range sps {
		if rows[sp.start] == nil {
			rows[sp.start] = []keyRow{} // no operation in sp
		}
		if !reads[i].dropped {
			c.store(sp, &keyEntry{rows: rows[sp.start], fetched: started})
		}
	}
	return rows, nil
}

// spanRow is the row of a key in the span that starts at start.
type spanRow struct {
	start int64
	keyRow
}

// sumRun reads the totals of each key of spans sps (one span, or
// consecutive ones: perSum), with one sum or read.
func (c *KeyDays) sumRun(ctx context.Context, sps []keySpan) ([]spanRow, error) {
	var out []spanRow
	// sum adds up sps with one sum, grouped by by too unless "".
	sum := func(sps []keySpan, by tsdb.Dimension) error {
		var sums tsdb.GroupSums
		end := sps[len(sps)-1]
		lo, hi := time.UnixMicro(sps[0].start).UTC(), time.UnixMicro(end.start+end.width-1).UTC() // End is inclusive
		q := tsdb.AggregateQuery{GroupBy: []tsdb.Dimension{c.dim}, Filter: tsdb.OperationFilter{Start: &lo, End: &hi}}
		if by != "" {
			q.GroupBy = append(q.GroupBy, by)
		}
		if err := c.sum(ctx, q, &sums); err != nil {
			return err
		}
		for _, g := range sums.Rank(tsdb.AggregateQuery{Limit: math.MaxInt}).Groups {
			r := spanRow{start: sps[0].start, keyRow: keyRow{file: g.Key[0].Text, null: g.Key[0].Null, Totals: g.Totals, cache: g.Cache}}
			if by != "" {
				r.start = g.Key[1].Start.UnixMicro()
			}
			out = append(out, r)
		}
		return nil
	}
	_, by := c.perSum(sps[0].width)
	switch {
	case len(sps) == 1 || by != "":
		return out, sum(sps, by)
	case c.minutes != nil:
		end := sps[len(sps)-1]
		err := c.minutes(ctx, time.UnixMicro(sps[0].start), time.UnixMicro(end.start+end.width), func(m int64, key string, t tsdb.Totals, cc tsdb.CacheCounts) {
			out = append(out, spanRow{start: m, keyRow: keyRow{file: key, Totals: t, cache: cc}})
		})
		if !errors.Is(err, query.ErrNoPoints) {
			return out, err
		}
		c.noMinutes.Store(true)
		out = nil
	}
	for i := range sps { // minutes the server cannot sum per minute
		if err := sum(sps[i:i+1], ""); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// store keeps e as the entry of sp, evicting the least recently used
// spans past the bound. The caller holds mu.
func (c *KeyDays) store(sp keySpan, e *keyEntry) {
	size := max(1, len(e.rows))
	if size > c.max {
		return
	}
	c.remove(sp)
	for c.rows+size > c.max {
		var lru keySpan
		oldest := uint64(math.MaxUint64)
		for s, o := range c.spans {
			if o.used < oldest {
				lru, oldest = s, o.used
			}
		}
		c.remove(lru)
	}
	c.tick++
	e.used = c.tick
	c.spans[sp] = e
	c.rows += size
}

// remove drops the entry of sp, if any. The caller holds mu.
func (c *KeyDays) remove(sp keySpan) {
	if e := c.spans[sp]; e != nil {
		c.rows -= max(1, len(e.rows))
		delete(c.spans, sp)
	}
}

// Delivered drops the days, hours and minutes that the operations of lps
// (line protocol InfluxDB took) fall in.
func (c *KeyDays) Delivered(lps [][]byte) {
	minutes := map[int64]struct{}{}
	var earliest time.Time
	for _, lp := range lps {
		deliveredSpans(lp, schema.Operation, int64(time.Minute), minutes, &earliest)
	}
	if len(minutes) == 0 {
		return
	}
	latest := int64(math.MinInt64)
	for m := range minutes {
		latest = max(latest, m)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.delivered = c.delivered.widen(opBounds{first: earliest.UnixMicro(), last: latest + minuteMicros - 1, ok: true})
	for m := range minutes {
		for _, width := range spanWidths {
			sp := keySpan{tsdb.FloorTo(m, width), width}
			if read := c.reading[sp]; read != nil {
				read.dropped = true
			}
			c.remove(sp)
		}
	}
}

// Rows answers how many rows the cache holds.
func (c *KeyDays) Rows() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.rows
}
