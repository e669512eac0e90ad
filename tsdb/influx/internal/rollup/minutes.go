package rollup

import (
	"bytes"
	"hash/maphash"
	"math"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/omnimemory/omnimemory-metrics/tsdb"
	"github.com/omnimemory/omnimemory-metrics/tsdb/influx/internal/query"
)

// minuteNS is a minute in nanoseconds: minutes are keyed by the unix
// nanoseconds of their starts.
const minuteNS = int64(time.Minute)

// bigMinute is the most points a cached minute keeps as points; a minute
// with more keeps its totals per key instead, and the times of its first
// and last points: they answer a window that holds all its points (an
// edge among them is read raw), and a delivery into it drops them.
const bigMinute = 5000

// readAhead is how far past the current minute a read of edge minutes that
// reaches it reads, so that the next minutes of the trailing edge are
// cached before they start (and kept current by Delivered).
const readAhead = 2 * time.Minute

// pointKey is a point's key in InfluxDB: its series and time. A point
// written again with the same key replaces the first.
type pointKey struct {
	ns     int64
	series string
}

// minuteEntry is a cached minute: its points, or (big) its totals per key.
type minuteEntry[R Row[R, K], K comparable] struct {
	points map[pointKey]R // nil when big
	totals sums[R, K]     // big: the minute's totals, one row per key
	first  int64          // big: the time of its first point
	last   int64          // big: the time of its last point
	// keys: big: a hash of the key of each point its totals count, so
	// that a delivered point is added to them only when it is new.
	keys map[uint64]struct{}
	// marker: a big minute a point was written again in (see delivered),
	// its totals dropped: while it is the current minute (and until the
	// entry expires), what a window holds of it is read as hourly totals,
	// never as points again (a busy current minute would be read whole on
	// every answer); once it has closed, the next answer reads it again,
	// as its totals.
	marker  bool
	fetched time.Time // when the read that produced it started
	used    uint64    // LRU tick of the last lookup
	reused  bool      // looked up since fetched: worth refreshing
}

// size is what the entry counts against the bound: its points, or its
// rows and a tenth of its keys' hashes (a hash takes about a tenth of a
// cached point's memory), at least one.
func (e *minuteEntry[R, K]) size() int {
	if e.points != nil {
		return max(1, len(e.points))
	}
	return max(1, len(e.totals.rows)+len(e.keys)/10)
}

// minuteFill is a read of minutes [lo, hi) (unix nanoseconds) in flight:
// the points delivered into them meanwhile, which it may or may not have
// read, are added to what it stores (a point's key makes that exact).
type minuteFill[R any] struct {
	lo, hi  int64
	pending []query.Point[R]
	dropped map[int64]bool // minutes not to store (see drop)
}

// minuteCache holds the points of the minutes at window edges.
type minuteCache[R Row[R, K], K comparable] struct {
	ttl       time.Duration // <= 0: never expires
	maxPoints int

	mu      sync.Mutex
	mins    map[int64]*minuteEntry[R, K]
	size    int
	tick    uint64
	fills   map[*minuteFill[R]]struct{}
	flights map[[2]int64]chan struct{}
}

func newMinuteCache[R Row[R, K], K comparable](ttl time.Duration, maxPoints int) *minuteCache[R, K] {
	return &minuteCache[R, K]{
		ttl: ttl, maxPoints: maxPoints,
		mins:    map[int64]*minuteEntry[R, K]{},
		fills:   map[*minuteFill[R]]struct{}{},
		flights: map[[2]int64]chan struct{}{},
	}
}

func (c *minuteCache[R, K]) fresh(fetched, now time.Time) bool {
	return c.ttl <= 0 || now.Sub(fetched) < c.ttl
}

// nsSpan is a span of time [lo, hi) in unix nanoseconds.
type nsSpan struct{ lo, hi int64 }

// collect appends to out the rows of the cached points with times in
// [lo, hi) that keep keeps, and answers the spans of minutes not cached
// (or expired), and the parts of [lo, hi) inside big minutes whose points
// the window holds some of only (to be read raw).
func (c *minuteCache[R, K]) collect(lo, hi int64, now time.Time, keep func(R) bool, out []R) ([]R, []nsSpan, []nsSpan) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.tick++
	var missing, partial []nsSpan
	current := tsdb.FloorTo(now.UnixNano(), minuteNS)
	for m := tsdb.FloorTo(lo, minuteNS); m < hi; m += minuteNS {
		e := c.mins[m]
		// A marker of a closed minute is read again (its totals cached
		// again), not read raw on every answer while the marker lasts.
		if e == nil || !c.fresh(e.fetched, now) || e.marker && m < current {
			if n := len(missing); n > 0 && missing[n-1].hi == m {
				missing[n-1].hi = m + minuteNS
			} else {
				missing = append(missing, nsSpan{m, m + minuteNS})
			}
			continue
		}
		e.used, e.reused = c.tick, true
		if e.marker {
			partial = append(partial, nsSpan{max(lo, m), min(hi, m+minuteNS)})
			continue
		}
		if e.points == nil {
			if e.last < lo || e.first >= hi { // none of its points is in
				continue
			}
			if lo <= e.first && e.last < hi { // every point of the minute is in
				for _, r := range e.totals.rows {
					if keep(r) {
						out = append(out, r)
					}
				}
			} else {
				partial = append(partial, nsSpan{max(lo, m), min(hi, m+minuteNS)})
			}
			continue
		}
		for k, r := range e.points {
			if k.ns >= lo && k.ns < hi && keep(r) {
				out = append(out, r)
			}
		}
	}
	return out, missing, partial
}

func (c *minuteCache[R, K]) beginFill(lo, hi int64) *minuteFill[R] {
	f := &minuteFill[R]{lo: lo, hi: hi}
	c.mu.Lock()
	c.fills[f] = struct{}{}
	c.mu.Unlock()
	return f
}

// endFill forgets f and, when its read succeeded, stores its minutes: the
// points read plus those delivered meanwhile (a big minute's totals). It
// answers those points (nil when the read failed), stored or not: the
// minutes that are not big are not stored when their points would take
// more than half the bound. pts holds each key once, as InfluxDB's answer
// does; a point delivered meanwhile replaces the one of its key.
//
// A burst's edge is read whole, up to query.maxPointRows points: the
// points of a big minute are added up from pts as they are, and only a
// small minute's go into a map, so that the read's own slice is the only
// copy of them held.
func (c *minuteCache[R, K]) endFill(f *minuteFill[R], pts []query.Point[R], fetched time.Time, ok bool) []query.Point[R] {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.fills, f)
	if !ok {
		return nil
	}
	pts = withPending(pts, f)
	// The points of minute i of f are pts[order[at[i]:at[i+1]]]: a
	// counting sort of their indexes by minute.
	n := int((f.hi - f.lo) / minuteNS)
	minute := func(ns int64) (int, bool) { return int((ns - f.lo) / minuteNS), ns >= f.lo && ns < f.hi }
	at := make([]int32, n+1)
	for _, p := range pts {
		if i, in := minute(p.NS); in {
			at[i+1]++
		}
	}
	small := 0
	for i := range n {
		if at[i+1] <= bigMinute {
			small += int(at[i+1])
		}
		at[i+1] += at[i]
	}
	order := make([]int32, at[n])
	next := slices.Clone(at[:n])
	for j, p := range pts {
		if i, in := minute(p.NS); in {
			order[next[i]] = int32(j)
			next[i]++
		}
	}
	c.tick++
	for i := range n {
		m := f.lo + int64(i)*minuteNS
		of := order[at[i]:at[i+1]]
		if f.dropped[m] || len(of) <= bigMinute && small > c.maxPoints/2 {
			continue
		}
		if old := c.mins[m]; old != nil {
			c.size -= old.size()
		}
		e := &minuteEntry[R, K]{fetched: fetched, used: c.tick}
		if len(of) > bigMinute {
			e.first, e.last = math.MaxInt64, math.MinInt64
			e.keys = make(map[uint64]struct{}, len(of))
			for _, j := range of {
				p := &pts[j]
				e.first, e.last = min(e.first, p.NS), max(e.last, p.NS)
				e.keys[pointKey{p.NS, p.Series}.hash()] = struct{}{}
				e.totals.add(p.Row)
			}
		} else {
			e.points = make(map[pointKey]R, len(of))
			for _, j := range of {
				e.points[pointKey{pts[j].NS, pts[j].Series}] = pts[j].Row
			}
		}
		c.mins[m] = e
		c.size += e.size()
	}
	c.evict()
	return pts
}

// withPending answers pts with the points delivered into f's minutes
// while it read them: each replaces the point of its key in pts, or is
// added (the last delivered of a key, when it was delivered again).
func withPending[R any](pts []query.Point[R], f *minuteFill[R]) []query.Point[R] {
	if len(f.pending) == 0 {
		return pts
	}
	last := make(map[pointKey]int, len(f.pending)) // index in f.pending
	for i, p := range f.pending {
		if p.NS >= f.lo && p.NS < f.hi {
			last[pointKey{p.NS, p.Series}] = i
		}
	}
	for i := range pts {
		k := pointKey{pts[i].NS, pts[i].Series}
		if j, ok := last[k]; ok {
			pts[i] = f.pending[j]
			delete(last, k)
		}
	}
	for i, p := range f.pending {
		if j, ok := last[pointKey{p.NS, p.Series}]; ok && j == i {
			pts = append(pts, p)
		}
	}
	return pts
}

// pointHashSeed seeds the hashes of point keys (see pointKey.hash).
var pointHashSeed = maphash.MakeSeed()

// hash answers a 64-bit hash of k: two points of one minute share one by
// chance about once in 2^64 (taken then for a point written again, which
// costs a read, never a wrong answer).
func (k pointKey) hash() uint64 {
	return maphash.String(pointHashSeed, k.series) ^ uint64(k.ns)*0x9e3779b97f4a7c15
}

// sums adds up rows by key, and by hour too when byHour, each sum in the
// row of its key's first (keys in the order they first come).
type sums[R Row[R, K], K comparable] struct {
	byHour bool
	at     map[sumKey[K]]int
	rows   []R
}

type sumKey[K comparable] struct {
	hour int64
	key  K
}

func (s *sums[R, K]) add(r R) {
	k := sumKey[K]{key: r.KeyValue()}
	if s.byHour {
		k.hour = r.HourStart()
	}
	if i, ok := s.at[k]; ok {
		s.rows[i] = s.rows[i].Plus(r)
		return
	}
	if s.at == nil {
		s.at = map[sumKey[K]]int{}
	}
	s.at[k] = len(s.rows)
	s.rows = append(s.rows, r)
}

// evict drops least recently used minutes until the points fit in 90% of
// maxPoints. Called with mu held.
func (c *minuteCache[R, K]) evict() {
	if c.size <= c.maxPoints {
		return
	}
	for _, m := range lruOrder(c.mins, func(e *minuteEntry[R, K]) uint64 { return e.used }) {
		if c.size <= c.maxPoints*9/10 {
			break
		}
		c.size -= c.mins[m].size()
		delete(c.mins, m)
	}
}

// bounds answers the first and last minutes held or being read (ok false
// when none is), so that deliveries elsewhere are not looked at.
func (c *minuteCache[R, K]) bounds() (first, last int64, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	first, last = math.MaxInt64, math.MinInt64
	for m := range c.mins {
		first, last = min(first, m), max(last, m)
	}
	for f := range c.fills {
		first, last = min(first, f.lo), max(last, f.hi-minuteNS)
	}
	return first, last, first <= last
}

// wanted answers, of the given minutes, those cached or being read: the
// minutes whose delivered points must be parsed.
func (c *minuteCache[R, K]) wanted(minutes map[int64][][]byte) map[int64]bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[int64]bool{}
	for m := range minutes {
		if c.mins[m] != nil {
			out[m] = true
			continue
		}
		for f := range c.fills {
			if m >= f.lo && m < f.hi {
				out[m] = true
				break
			}
		}
	}
	return out
}

// delivered adds points delivered to InfluxDB to the minutes that hold
// them and to the reads in flight of those minutes: to a big minute's
// totals when new, and a big minute a point is written again in becomes a
// marker instead (its totals cannot tell that point's old values).
func (c *minuteCache[R, K]) delivered(pts []query.Point[R]) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range pts {
		m := tsdb.FloorTo(p.NS, minuteNS)
		if e := c.mins[m]; e != nil {
			if e.points == nil {
				h := pointKey{p.NS, p.Series}.hash()
				_, again := e.keys[h]
				switch {
				case e.marker:
				case again:
					// A point written again, which replaces the one the
					// totals count: they cannot tell its old values.
					c.size -= e.size()
					c.mins[m] = &minuteEntry[R, K]{marker: true, fetched: e.fetched, used: e.used}
					c.size++
				default: // a new point: added to the totals
					before := e.size()
					e.keys[h] = struct{}{}
					e.totals.add(p.Row)
					e.first, e.last = min(e.first, p.NS), max(e.last, p.NS)
					c.size += e.size() - before
				}
			} else {
				before := e.size()
				e.points[pointKey{p.NS, p.Series}] = p.Row
				c.size += e.size() - before
			}
		}
		for f := range c.fills {
			if p.NS >= f.lo && p.NS < f.hi {
				f.pending = append(f.pending, p)
			}
		}
	}
	c.evict()
}

// drop forgets minute m, also in the reads of it in flight.
func (c *minuteCache[R, K]) drop(m int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.mins[m]; e != nil {
		c.size -= e.size()
		delete(c.mins, m)
	}
	for f := range c.fills {
		if m >= f.lo && m < f.hi {
			if f.dropped == nil {
				f.dropped = map[int64]bool{}
			}
			f.dropped[m] = true
		}
	}
}

// flight makes concurrent reads of the same span wait for one another:
// leader is true for the caller that reads.
func (c *minuteCache[R, K]) flight(sp nsSpan) (ch chan struct{}, leader bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	k := [2]int64{sp.lo, sp.hi}
	if ch := c.flights[k]; ch != nil {
		return ch, false
	}
	ch = make(chan struct{})
	c.flights[k] = ch
	return ch, true
}

func (c *minuteCache[R, K]) land(sp nsSpan, ch chan struct{}) {
	c.mu.Lock()
	delete(c.flights, [2]int64{sp.lo, sp.hi})
	c.mu.Unlock()
	close(ch)
}

// stale answers spans of minutes that were looked up since they were
// fetched and are older than half the TTL, oldest first, for the
// refresher.
func (c *minuteCache[R, K]) stale(now time.Time, limit int) []nsSpan {
	if c.ttl <= 0 {
		return nil
	}
	c.mu.Lock()
	var ms []int64
	for m, e := range c.mins {
		if e.reused && !e.marker && now.Sub(e.fetched) >= c.ttl/2 {
			ms = append(ms, m)
		}
	}
	c.mu.Unlock()
	slices.Sort(ms)
	if len(ms) > limit {
		ms = ms[:limit]
	}
	var out []nsSpan
	for _, m := range ms {
		if n := len(out); n > 0 && out[n-1].hi == m && m-out[n-1].lo < int64(time.Hour) {
			out[n-1].hi = m + minuteNS
			continue
		}
		out = append(out, nsSpan{m, m + minuteNS})
	}
	return out
}

// stats answers the minutes held and the points (or rows) they count.
func (c *minuteCache[R, K]) stats() (minutes, points int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.mins), c.size
}

// deliveredLines adds to into the lines of line protocol lp of points of
// measurement meas with times in minutes [first, last], by the minute
// (unix nanoseconds of its start) of their times.
func deliveredLines(lp []byte, meas string, first, last int64, into map[int64][][]byte) {
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
		if m := tsdb.FloorTo(ns, minuteNS); m >= first && m <= last {
			into[m] = append(into[m], line)
		}
	}
}
