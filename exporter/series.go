package exporter

import (
	"container/list"
	"sync"

	"github.com/google/uuid"
)

// seriesCache keeps, per cumulative series, its last point, to turn the
// next one into a delta; it follows the OpenTelemetry collector's
// cumulativetodelta processor. It holds at most max series: past that the
// least recently seen one is forgotten (and counted). A forgotten series
// seen again is a first point again, so that it cannot be counted twice a
// first point whose start is not after the newest point of every series
// forgotten so far (the horizon) only sets the baseline.
type seriesCache struct {
	mu      sync.Mutex
	max     int
	started uint64 // the process's start, in Unix nanoseconds
	horizon uint64 // the newest time of the series forgotten so far
	lru     *list.List
	entries map[uuid.UUID]*list.Element
	metrics *Metrics
}

// seriesEntry is the last point of a series and what it added.
type seriesEntry struct {
	key         uuid.UUID
	start, time uint64
	value       float64
	delta       float64 // the delta the point gave (0 for a baseline)
}

// seriesUndo is one change a request made to the cache, to undo when its
// write fails: the entry before (had: there was one) and the entry set.
type seriesUndo struct {
	before seriesEntry
	had    bool
	after  seriesEntry
}

func newSeriesCache(max int, started uint64, metrics *Metrics) *seriesCache {
	return &seriesCache{max: max, started: started, lru: list.New(), entries: map[uuid.UUID]*list.Element{}, metrics: metrics}
}

// delta answers what the cumulative point (start, time, value) of series
// key adds, or why it is ignored, and records the change in undo:
//
//   - a series first seen: the whole value when its start is at or after
//     the process started (and after the horizon), else 0 (a baseline);
//   - the same start and time as the last point (a retried export): the
//     delta that point gave, again, so that the retry has the same point
//     and the state does not move;
//   - an older time, or an older start: ignored ("out_of_order"), already
//     accounted for by the newer points;
//   - a newer start, or a value lower than the last one: a reset, the
//     whole value;
//   - else the difference from the last value.
func (c *seriesCache) delta(key uuid.UUID, start, time uint64, value float64, undo *[]seriesUndo) (float64, string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	next := seriesEntry{key: key, start: start, time: time, value: value}
	el, ok := c.entries[key]
	var before seriesEntry
	if ok {
		before = *el.Value.(*seriesEntry)
		switch {
		case start == before.start && time == before.time:
			c.lru.MoveToFront(el)
			return before.delta, ""
		case start < before.start, start == before.start && time < before.time:
			return 0, "out_of_order"
		case start > before.start, value < before.value:
			next.delta = value
		default:
			next.delta = value - before.value
		}
	} else if start != 0 && start >= c.started && start > c.horizon {
		next.delta = value
	}
	c.set(next)
	*undo = append(*undo, seriesUndo{before: before, had: ok, after: next})
	return next.delta, ""
}

// set stores e as its series' last point, forgetting the least recently
// seen series when the cache is full.
func (c *seriesCache) set(e seriesEntry) {
	if el, ok := c.entries[e.key]; ok {
		*el.Value.(*seriesEntry) = e
		c.lru.MoveToFront(el)
		return
	}
	for c.lru.Len() >= c.max {
		old := c.lru.Remove(c.lru.Back()).(*seriesEntry)
		delete(c.entries, old.key)
		c.horizon = max(c.horizon, old.time)
		c.metrics.otlpEvictions.Inc()
	}
	c.entries[e.key] = c.lru.PushFront(&e)
	c.metrics.otlpSeries.Set(float64(c.lru.Len()))
}

// rollback undoes the changes of a request whose write failed, newest
// first, where no other request changed the series since.
func (c *seriesCache) rollback(undo []seriesUndo) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := len(undo) - 1; i >= 0; i-- {
		u := undo[i]
		el, ok := c.entries[u.after.key]
		switch {
		case ok && *el.Value.(*seriesEntry) != u.after:
			continue // moved on since: leave it
		case u.had:
			c.set(u.before)
		case ok:
			c.lru.Remove(el)
			delete(c.entries, u.after.key)
		}
	}
	c.metrics.otlpSeries.Set(float64(c.lru.Len()))
}
