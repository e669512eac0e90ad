package rollup

import (
	"bytes"
	"cmp"
	"maps"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/omnimemory/omnimemory-metrics/tsdb"
)

// cacheGrace is how long after its end an hour becomes cacheable.
const cacheGrace = time.Minute

// fillChunkHours bounds the hours one fill query reads, so that a cold
// 30-day read is a few queries of bounded cost, each stored as it completes
// (a later chunk timing out keeps the earlier ones).
const fillChunkHours = 24

// hourEntry is a cached hour (hours are keyed by the unix microseconds of
// their start): its rows, one per key with points.
type hourEntry[R any] struct {
	rows    []R
	fetched time.Time // when the read that produced it started
	used    uint64    // LRU tick of the last lookup
	reused  bool      // looked up since fetched: worth refreshing
}

// fill is a read of hours [lo, hi) in flight; deliveries that drop one of
// its hours meanwhile mark it dirty, and the fill does not store it.
type fill struct {
	lo, hi int64
	dirty  map[int64]bool
}

type hourCache[R Row[R, K], K comparable] struct {
	ttl     time.Duration // <= 0: never expires
	maxRows int

	mu    sync.Mutex
	hours map[int64]*hourEntry[R]
	rows  int // rows held, an empty hour counting one
	tick  uint64
	fills map[*fill]struct{}
	keys  map[K]*K // interned keys
	// days holds, per UTC day (unix microseconds of its start) whose 24
	// hours are cached, the sums of their rows per key: answers that need
	// no hour (breakdowns, daily trends) add those instead of 24 times as
	// many rows. A change to one of its hours drops it (dropDay).
	days    map[int64][]R
	flights map[[2]int64]chan struct{}

	// The first point's time per tool id ("" all), with the same freshness
	// rules, and its reads in flight.
	first        map[string]firstEntry
	firstFlights map[*firstFlight]struct{}
}

// firstFlight is a read of a first point's time in flight: deliveries
// meanwhile note their earliest point time in it.
type firstFlight struct{ delivered time.Time }

type firstEntry struct {
	t       time.Time
	ok      bool
	fetched time.Time
}

func newHourCache[R Row[R, K], K comparable](ttl time.Duration, maxRows int) *hourCache[R, K] {
	return &hourCache[R, K]{
		ttl: ttl, maxRows: maxRows,
		hours:   map[int64]*hourEntry[R]{},
		fills:   map[*fill]struct{}{},
		keys:    map[K]*K{},
		days:    map[int64][]R{},
		flights: map[[2]int64]chan struct{}{},
		first:   map[string]firstEntry{},

		firstFlights: map[*firstFlight]struct{}{},
	}
}

func (c *hourCache[R, K]) fresh(fetched, now time.Time) bool {
	return c.ttl <= 0 || now.Sub(fetched) < c.ttl
}

// held answers the entry of hour h when it is cached and fresh at now, nil
// otherwise. Called with mu held.
func (c *hourCache[R, K]) held(h int64, now time.Time) *hourEntry[R] {
	if e := c.hours[h]; e != nil && c.fresh(e.fetched, now) {
		return e
	}
	return nil
}

// dropDay forgets the sums of the day of hour h. Called with mu held.
func (c *hourCache[R, K]) dropDay(h int64) { delete(c.days, tsdb.FloorTo(h, tsdb.MicrosPerDay)) }

// wholeDay answers the sums per key of the day starting at d when its 24
// hours are cached and fresh (computing and keeping them if need be), and
// marks those hours used. Called with mu held.
func (c *hourCache[R, K]) wholeDay(d int64, now time.Time) ([]R, bool) {
	for h := d; h < d+tsdb.MicrosPerDay; h += tsdb.MicrosPerHour {
		if c.held(h, now) == nil {
			return nil, false
		}
	}
	for h := d; h < d+tsdb.MicrosPerDay; h += tsdb.MicrosPerHour {
		e := c.hours[h]
		e.used, e.reused = c.tick, true
	}
	if rows, ok := c.days[d]; ok {
		return rows, true
	}
	var day sums[R, K]
	for h := d; h < d+tsdb.MicrosPerDay; h += tsdb.MicrosPerHour {
		for _, r := range c.hours[h].rows {
			day.add(r)
		}
	}
	c.days[d] = day.rows
	return day.rows, true
}

// lookup appends the cached rows of every fresh hour in [lo, hi) to out and
// answers the hours missing (or expired), ascending. With days, a whole
// UTC day whose hours are all fresh comes as one row per key (of an hour
// of that day) holding the day's sums.
func (c *hourCache[R, K]) lookup(lo, hi int64, now time.Time, out []R, days bool) ([]R, []int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.tick++
	var missing []int64
	for h := lo; h < hi; h += tsdb.MicrosPerHour {
		if days && h%tsdb.MicrosPerDay == 0 && h+tsdb.MicrosPerDay <= hi {
			if rows, ok := c.wholeDay(h, now); ok {
				out = append(out, rows...)
				h += tsdb.MicrosPerDay - tsdb.MicrosPerHour
				continue
			}
		}
		e := c.held(h, now)
		if e == nil {
			missing = append(missing, h)
			continue
		}
		e.used, e.reused = c.tick, true
		out = append(out, e.rows...)
	}
	return out, missing
}

// missing answers the hours of [lo, hi) the cache lacks (or holds
// expired), ascending, as lookup does without their rows.
func (c *hourCache[R, K]) missing(lo, hi int64, now time.Time) []int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	var missing []int64
	for h := lo; h < hi; h += tsdb.MicrosPerHour {
		if c.held(h, now) == nil {
			missing = append(missing, h)
		}
	}
	return missing
}

func (c *hourCache[R, K]) beginFill(lo, hi int64) *fill {
	f := &fill{lo: lo, hi: hi}
	c.mu.Lock()
	c.fills[f] = struct{}{}
	c.mu.Unlock()
	return f
}

// endFill stores the rows read for f's hours (an hour without rows is stored
// empty), except the hours dropped while it ran, and forgets f.
func (c *hourCache[R, K]) endFill(f *fill, rows []R, fetched time.Time, ok bool) {
	c.endFillIn(f, [][2]int64{{f.lo, f.hi}}, rows, fetched, ok)
}

// endFillIn is endFill of the hours of f within spans alone ([lo, hi)
// pairs, unix microseconds): a read that learnt those of f's hours only.
func (c *hourCache[R, K]) endFillIn(f *fill, spans [][2]int64, rows []R, fetched time.Time, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.fills, f)
	if !ok {
		return
	}
	byHour := map[int64][]R{}
	for _, r := range rows {
		byHour[r.HourStart()] = append(byHour[r.HourStart()], r.WithKey(c.intern(r.KeyValue())))
	}
	c.tick++
	for _, sp := range spans {
		for h := max(sp[0], f.lo); h < min(sp[1], f.hi); h += tsdb.MicrosPerHour {
			if f.dirty[h] {
				continue
			}
			if old := c.hours[h]; old != nil {
				c.rows -= max(1, len(old.rows))
			}
			c.dropDay(h)
			rs := byHour[h]
			c.hours[h] = &hourEntry[R]{rows: rs, fetched: fetched, used: c.tick}
			c.rows += max(1, len(rs))
		}
	}
	c.evict()
}

// intern answers the shared copy of k: rows of every hour point at one key.
func (c *hourCache[R, K]) intern(k K) *K {
	if p := c.keys[k]; p != nil {
		return p
	}
	p := &k
	c.keys[k] = p
	return p
}

// lruOrder answers the keys of entries, the least recently used (by used)
// first, the older key first among equals: the order in which the caches
// evict.
func lruOrder[E any](entries map[int64]E, used func(E) uint64) []int64 {
	keys := slices.Collect(maps.Keys(entries))
	slices.SortFunc(keys, func(a, b int64) int {
		if c := cmp.Compare(used(entries[a]), used(entries[b])); c != 0 {
			return c
		}
		return cmp.Compare(a, b)
	})
	return keys
}

// evict drops least recently used hours until the rows fit in 90% of
// maxRows. Called with mu held.
func (c *hourCache[R, K]) evict() {
	if c.rows <= c.maxRows {
		return
	}
	for _, h := range lruOrder(c.hours, func(e *hourEntry[R]) uint64 { return e.used }) {
		if c.rows <= c.maxRows*9/10 {
			break
		}
		c.rows -= max(1, len(c.hours[h].rows))
		delete(c.hours, h)
		c.dropDay(h)
	}
	if len(c.hours) == 0 || len(c.keys) > c.maxRows {
		c.keys = map[K]*K{}
		clear(c.days)
		for _, e := range c.hours {
			for i, r := range e.rows {
				e.rows[i] = r.WithKey(c.intern(r.KeyValue()))
			}
		}
	}
}

// invalidate drops the given hours (unix microseconds of their starts) and marks
// them dirty in every fill in flight; minTime is the earliest point time
// delivered, which drops first-point times it would precede.
func (c *hourCache[R, K]) invalidate(hours []int64, minTime time.Time) {
	if len(hours) == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, h := range hours {
		if e := c.hours[h]; e != nil {
			c.rows -= max(1, len(e.rows))
			delete(c.hours, h)
		}
		c.dropDay(h)
		for f := range c.fills {
			if h >= f.lo && h < f.hi {
				if f.dirty == nil {
					f.dirty = map[int64]bool{}
				}
				f.dirty[h] = true
			}
		}
	}
	for id, e := range c.first {
		if !e.ok || !minTime.After(e.t) {
			delete(c.first, id)
		}
	}
	for fl := range c.firstFlights {
		if fl.delivered.IsZero() || minTime.Before(fl.delivered) {
			fl.delivered = minTime
		}
	}
}

// flight makes concurrent fills of the same span wait for one another:
// leader is true for the caller that reads; the others wait on ch and look
// the span up again.
func (c *hourCache[R, K]) flight(lo, hi int64) (ch chan struct{}, leader bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	k := [2]int64{lo, hi}
	if ch := c.flights[k]; ch != nil {
		return ch, false
	}
	ch = make(chan struct{})
	c.flights[k] = ch
	return ch, true
}

func (c *hourCache[R, K]) land(lo, hi int64, ch chan struct{}) {
	c.mu.Lock()
	delete(c.flights, [2]int64{lo, hi})
	c.mu.Unlock()
	close(ch)
}

// peekFirst answers a fresh cached first point's time.
func (c *hourCache[R, K]) peekFirst(toolID string, now time.Time) (firstEntry, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, hit := c.first[toolID]
	return e, hit && c.fresh(e.fetched, now)
}

// beginFirst registers a read of a first point's time, to be passed to
// putFirst.
func (c *hourCache[R, K]) beginFirst() *firstFlight {
	c.mu.Lock()
	defer c.mu.Unlock()
	fl := &firstFlight{}
	c.firstFlights[fl] = struct{}{}
	return fl
}

// putFirst stores what the read fl found, unless a delivery meanwhile
// brought a point at or before it (then the answer may be stale).
func (c *hourCache[R, K]) putFirst(toolID string, e firstEntry, fl *firstFlight, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.firstFlights, fl)
	if !ok || !fl.delivered.IsZero() && (!e.ok || !fl.delivered.After(e.t)) {
		return
	}
	if len(c.first) >= 1024 { // tool ids are few; never unbounded
		clear(c.first)
	}
	c.first[toolID] = e
}

// stale answers spans of hours that were looked up since they were fetched
// and are older than half the TTL, oldest first, for the refresher.
func (c *hourCache[R, K]) stale(now time.Time, limit int) []int64 {
	if c.ttl <= 0 {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var hs []int64
	for h, e := range c.hours {
		if e.reused && now.Sub(e.fetched) >= c.ttl/2 {
			hs = append(hs, h)
		}
	}
	slices.Sort(hs)
	if len(hs) > limit {
		hs = hs[:limit]
	}
	return hs
}

// split answers the hours of hours (ascending) that hold an entry,
// fresh or not, and those that hold none, each ascending.
func (c *hourCache[R, K]) split(hours []int64) (held, absent []int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, h := range hours {
		if c.hours[h] != nil {
			held = append(held, h)
		} else {
			absent = append(absent, h)
		}
	}
	return held, absent
}

// entries answers the entries of the hours of [lo, hi) that hold one.
func (c *hourCache[R, K]) entries(lo, hi int64) map[int64]*hourEntry[R] {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[int64]*hourEntry[R]{}
	for h := lo; h < hi; h += tsdb.MicrosPerHour {
		if e := c.hours[h]; e != nil {
			out[h] = e
		}
	}
	return out
}

// renewCounted renews, as if read at fetched, the entries of the hours of
// [lo, hi) when every one of them is still in entries (none dropped or
// replaced since) and their rows add up to n points, and answers their
// rows; else it renews none and answers false.
func (c *hourCache[R, K]) renewCounted(entries map[int64]*hourEntry[R], n int64, fetched time.Time, lo, hi int64) ([]R, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var held int64
	for h := lo; h < hi; h += tsdb.MicrosPerHour {
		e := entries[h]
		if e == nil || c.hours[h] != e {
			return nil, false
		}
		for _, r := range e.rows {
			held += r.PointCount()
		}
	}
	if held != n {
		return nil, false
	}
	var rows []R
	for h := lo; h < hi; h += tsdb.MicrosPerHour {
		e := entries[h]
		e.fetched, e.reused = fetched, false
		rows = append(rows, e.rows...)
	}
	return rows, true
}

// staleFirst answers the tool ids whose cached first point's time is older
// than half the TTL.
func (c *hourCache[R, K]) staleFirst(now time.Time) []string {
	if c.ttl <= 0 {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var ids []string
	for id, e := range c.first {
		if now.Sub(e.fetched) >= c.ttl/2 {
			ids = append(ids, id)
		}
	}
	return ids
}

// Stats of the cache, for tests and diagnostics.
func (c *hourCache[R, K]) stats() (hours, rows int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.hours), c.rows
}

// deliveredHours adds to into the UTC hours (unix microseconds of their
// starts) of the points of measurement meas in line protocol lp, and keeps
// the earliest point time in minTime. Every point the store writes ends
// with its timestamp in nanoseconds.
func deliveredHours(lp []byte, meas string, into map[int64]struct{}, minTime *time.Time) {
	deliveredSpans(lp, meas, int64(time.Hour), into, minTime)
}

// deliveredSpans is deliveredHours for spans of width nanoseconds.
func deliveredSpans(lp []byte, meas string, width int64, into map[int64]struct{}, minTime *time.Time) {
	prefix := []byte(meas)
	for len(lp) > 0 {
		line := lp
		if i := bytes.IndexByte(lp, '\n'); i >= 0 {
			line, lp = lp[:i], lp[i+1:]
		} else {
			lp = nil
		}
		if !bytes.HasPrefix(line, prefix) || len(line) <= len(prefix) || (line[len(prefix)] != ',' && line[len(prefix)] != ' ') {
			continue
		}
		sp := bytes.LastIndexByte(line, ' ')
		if sp < 0 {
			continue
		}
		ns, err := strconv.ParseInt(string(line[sp+1:]), 10, 64)
		if err != nil {
			continue
		}
		t := time.Unix(0, ns).UTC()
		into[tsdb.FloorTo(ns, width)/int64(time.Microsecond)] = struct{}{}
		if minTime.IsZero() || t.Before(*minTime) {
			*minTime = t
		}
	}
}
