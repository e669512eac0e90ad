package influx

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"
)

// hourQueries answers the two Flux queries (sums of the four fields, and
// counts) of the totals per UTC hour and (tool_id, tool_name,
// operation_mode) of the operations with point times in [lo, hi), of tool
// id tid when given (a predicate, see toolIDPred). Windows are aligned to
// the epoch, hence to UTC hours; a window's _time is its start, or lo for
// the first when lo is not aligned. Shapes as in trendQueries: grouped on
// 1.x, per series on 2.x.
func (s *Store) hourQueries(lo, hi time.Time, tid string, perSeries bool) (sums, counts string) {
	sum := s.opsSource(lo, hi, fieldPred(sumFields...), tid)
	cnt := s.opsSource(lo, hi, fieldPred(countField), tid)
	win := func(fn string) string {
		return "\n  |> aggregateWindow(every: 1h, fn: " + fn + `, createEmpty: false, timeSrc: "_start")`
	}
	const keys = `"tool_id", "tool_name", "operation_mode"`
	if perSeries {
		return sum + win("sum") + `
  |> group(columns: [` + keys + `, "_field", "_time"])
  |> sum()
  |> yield(name: "sum")`, cnt + win("count") + `
  |> group(columns: [` + keys + `, "_time"])
  |> sum()
  |> yield(name: "count")`
	}
	return sum + `
  |> group(columns: [` + keys + `, "_field"])` + win("sum") + `
  |> yield(name: "sum")`, cnt + `
  |> group(columns: [` + keys + `])` + win("count") + `
  |> yield(name: "count")`
}

// readHours runs hourQueries and answers one row per (hour, key) with
// operations.
func (s *Store) readHours(ctx context.Context, name string, lo, hi time.Time, toolID string) ([]hourRow, error) {
	s.learnVersion(ctx)
	if s.v1.Load() && !s.cfg.FluxOnly {
		return s.readHoursQL(ctx, name, lo, hi, toolID)
	}
	tid := toolIDPred(toolID)
	type rk struct {
		hour int64
		key  hourKey
	}
	m := map[rk]*hourRow{}
	var order []rk
	sums, counts := s.hourQueries(lo, hi, tid, s.perSeries.Load())
	err := s.queryEach(ctx, name, func(r row) error {
		k := rk{floorDiv(r.time("_time").Unix(), hourSecs) * hourSecs,
			hourKey{r.str("tool_id"), r.str("tool_name"), r.str("operation_mode")}}
		hr := m[k]
		if hr == nil {
			key := k.key
			hr = &hourRow{hour: k.hour, key: &key}
			m[k] = hr
			order = append(order, k)
		}
		addField(&hr.Totals, r)
		return nil
	}, sums, counts)
	if err != nil {
		return nil, err
	}
	out := make([]hourRow, 0, len(order))
	for _, k := range order {
		if hr := m[k]; hr.Count > 0 {
			out = append(out, *hr)
		}
	}
	return out, nil
}

// hourRows answers the totals per hour and key of the operations of tool id
// toolID (all when empty) with point times in [lo, hi): whole closed hours
// from the cache (reading the missing ones), the rest from raw points.
// Hours before the first operation hold nothing and are never read.
func (s *Store) hourRows(ctx context.Context, lo, hi time.Time, toolID string) ([]hourRow, error) {
	first, ok, err := s.FirstOperationTime(ctx, "")
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
	closed := floorDiv(now.Add(-cacheGrace).Unix(), hourSecs) * hourSecs
	hStart := ceilDiv(lo.UnixNano(), int64(time.Hour)) * hourSecs
	hEnd := min(floorDiv(hi.UnixNano(), int64(time.Hour))*hourSecs, closed)
	if hStart >= hEnd || int((hEnd-hStart)/hourSecs) > s.cache.maxRows/2 {
		return s.readEdge(ctx, lo, hi, toolID) // no whole closed hour inside
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
	raw := func(a, b time.Time) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			add(s.readEdge(ctx, a, b, toolID))
		}()
	}
	if t := time.Unix(hStart, 0); lo.Before(t) {
		raw(lo, t)
	}
	if t := time.Unix(hEnd, 0); t.Before(hi) {
		raw(t, hi)
	}

	cached, missing := s.cache.lookup(hStart, hEnd, now, nil)
	want := tagValue(toolID)
	keep := func(rows []hourRow) []hourRow {
		if toolID == "" {
			return rows
		}
		kept := rows[:0:0]
		for _, r := range rows {
			if r.key.toolID == want {
				kept = append(kept, r)
			}
		}
		return kept
	}
	add(keep(cached), nil)
	if len(missing) > 0 {
		rows, err := s.fillHours(ctx, missing)
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
		if n > 0 && out[n-1][1] == h && (h-out[n-1][0])/hourSecs < fillChunkHours &&
			floorDiv(h, 24*hourSecs) == floorDiv(out[n-1][0], 24*hourSecs) {
			out[n-1][1] = h + hourSecs
			continue
		}
		out = append(out, [2]int64{h, h + hourSecs})
	}
	return out
}

// fillConcurrency bounds the fill queries one call runs at once.
const fillConcurrency = 2

// fillHours reads the given closed hours (ascending) into the cache, one
// query pair per span, and answers their rows (all tool ids). A span that
// another call is reading already is waited for and then looked up.
func (s *Store) fillHours(ctx context.Context, hours []int64) ([]hourRow, error) {
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
			rows, err := s.fillSpan(ctx, sp[0], sp[1])
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

// fillSpan reads hours [lo, hi) (unix seconds) and stores them, or waits
// for a read of the same span in flight and looks it up.
func (s *Store) fillSpan(ctx context.Context, lo, hi int64) ([]hourRow, error) {
	ch, leader := s.cache.flight(lo, hi)
	if !leader {
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		rows, missing := s.cache.lookup(lo, hi, time.Now(), nil)
		if len(missing) == 0 {
			return rows, nil
		}
		more, err := s.readSpan(ctx, missing[0], missing[len(missing)-1]+hourSecs)
		if err != nil {
			return nil, err
		}
		for _, r := range more { // hours found in the cache are in rows already
			if _, found := slices.BinarySearch(missing, r.hour); found {
				rows = append(rows, r)
			}
		}
		return rows, nil
	}
	defer s.cache.land(lo, hi, ch)
	return s.readSpan(ctx, lo, hi)
}

// readSpan reads hours [lo, hi) from InfluxDB and stores them in the cache
// (but for those a delivery dropped meanwhile).
func (s *Store) readSpan(ctx context.Context, lo, hi int64) ([]hourRow, error) {
	f := s.cache.beginFill(lo, hi)
	started := time.Now()
	rows, err := s.readHours(ctx, "hours fill", time.Unix(lo, 0), time.Unix(hi, 0), "")
	s.cache.endFill(f, rows, started, err == nil)
	return rows, err
}

// refreshLoop renews, in the background, cached hours that are in use
// before their TTL runs out, so that answers keep coming from the cache
// while the TTL still bounds how stale an hour may be.
func (s *Store) refreshLoop() {
	defer close(s.refreshDone)
	every := min(max(s.cache.ttl/4, 100*time.Millisecond), 30*time.Second)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		for _, sp := range spans(s.cache.stale(time.Now(), 24*40)) {
			if _, err := s.readSpan(s.ctx, sp[0], sp[1]); err != nil {
				s.log.Debug("hourly cache refresh failed", "err", err)
				break
			}
		}
		for _, id := range s.cache.staleFirst(time.Now()) {
			if _, _, err := s.readFirst(s.ctx, id); err != nil {
				s.log.Debug("first operation time refresh failed", "err", err)
				break
			}
		}
	}
}

// ceilDiv divides rounding towards plus infinity.
func ceilDiv(a, b int64) int64 {
	return -floorDiv(-a, b)
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
func (s *Store) readEdge(ctx context.Context, lo, hi time.Time, toolID string) ([]hourRow, error) {
	k := edgeKey{lo.UnixNano(), hi.UnixNano(), toolID}
	s.edgeMu.Lock()
	if f := s.edges[k]; f != nil {
		s.edgeMu.Unlock()
		select {
		case <-f.done:
			return slices.Clone(f.rows), f.err
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if s.edges == nil {
		s.edges = map[edgeKey]*edgeFlight{}
	}
	f := &edgeFlight{done: make(chan struct{})}
	s.edges[k] = f
	s.edgeMu.Unlock()

	f.rows, f.err = s.readHours(ctx, "hours raw edge", lo, hi, toolID)
	s.edgeMu.Lock()
	delete(s.edges, k)
	s.edgeMu.Unlock()
	close(f.done)
	return slices.Clone(f.rows), f.err
}

// learnVersion asks /ping for the server's version, once, unless an answer
// carried it already: reads depend on it (InfluxQL on 1.x, and the stop of a
// Flux range, see opsSource). A /ping that fails is asked again by a later
// read; one answered without a version is not.
func (s *Store) learnVersion(ctx context.Context) {
	if s.versionKnown.Load() || !s.versionAsked.CompareAndSwap(false, true) {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, min(s.cfg.QueryTimeout, 2*time.Second))
	defer cancel()
	if err := s.ping(ctx); err != nil {
		s.versionAsked.Store(false)
	}
}
