package query

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/omnimemory/omnimemory-metrics/tsdb"
	"github.com/omnimemory/omnimemory-metrics/tsdb/influx/schema"
)

// Export hands fn every operation matching f, oldest first (ties
// by id), reading them in pages of at most about Config.ExportPageSize
// operations per query, each query within QueryTimeout: neither this process
// nor InfluxDB ever sorts or holds more than about a page, however many
// operations match.
//
// A page is a time window of whole microseconds, so all the operations of
// one created_at fall in one page; windows follow each other without gap or
// overlap, from the first match to the last. Each step first counts the
// matches of a window in exportBuckets equal slices (range |> filter |>
// count per slice, a few rows back), then reads the longest run of slices
// from the start that holds at most a page, in one query, and sorts it here
// by created_at and id. A first slice that alone holds more than a page is
// counted again in finer slices (a dense burst costs a few more counts, not
// a sort); a single microsecond that holds more than a page is read in
// pages by id instead (keyset on id, sorted by InfluxDB within that
// microsecond only). The window's width adapts so that it holds about two
// pages.
//
// The export is not a snapshot: an operation written while it runs is in it
// when its window is read after it was written. fn runs between queries,
// never inside one, so a slow fn does not count against QueryTimeout.
func (s *Reader) Export(ctx context.Context, f tsdb.OperationFilter, fn func(*tsdb.Operation) error) error {
	s.learnVersion(ctx)
	var fnErr error
	err := s.export(ctx, f, func(op *tsdb.Operation) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		fnErr = fn(op)
		return fnErr
	})
	switch {
	case err == nil, fnErr != nil:
		return err // fn's own error as it is
	case ctx.Err() != nil && !errors.Is(err, ctx.Err()):
		// A query cut short by the end of ctx says so only in its text.
		return fmt.Errorf("export operations: %w (%v)", ctx.Err(), err)
	}
	return err
}

func (s *Reader) export(ctx context.Context, f tsdb.OperationFilter, fn func(*tsdb.Operation) error) error {
	if s.closed.Load() {
		return ErrClosed
	}
	lo, hi, ok := TimeRange(f.Start, f.End)
	if !ok {
		return nil
	}
	if s.readsQL() {
		return s.exportQL(ctx, lo.UnixMicro(), hi.UnixMicro(), f, fn)
	}
	tags := operationTags(f)
	page := int64(s.cfg.ExportPageSize)

	// From the first match to the last, in whole microseconds.
	cur, end := lo.UnixMicro(), hi.UnixMicro()
	first, last, ok, err := s.exportBounds(ctx, cur, end, tags)
	if err != nil || !ok {
		return err
	}
	cur = max(cur, first.Truncate(time.Microsecond).UnixMicro())
	end = min(end, last.Truncate(time.Microsecond).UnixMicro()+1)
	width := end - cur

	// The counts of the next window are read while the page before it is:
	// two requests at once instead of one after the other.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type counted struct {
		lo, hi int64
		slices []sliceCount
		err    error
	}
	count := func(lo, hi int64) <-chan counted {
		ch := make(chan counted, 1)
		go func() {
			c, err := s.exportCounts(ctx, lo, hi, max(1, tsdb.CeilTo(hi-lo, exportBuckets)/exportBuckets), tags)
			ch <- counted{lo, hi, c, err}
		}()
		return ch
	}
	var next <-chan counted
	ops := make([]tsdb.Operation, 0, page)
	for cur < end {
		if err := ctx.Err(); err != nil {
			return err
		}
		stop := cur + min(width, end-cur)
		var c counted
		if next != nil {
			c, next = <-next, nil
		}
		if c.lo != cur || c.hi != stop {
			c = <-count(cur, stop)
		}
		if c.err != nil {
			return c.err
		}
		// The run of slices from cur that holds at most a page ends at cut.
		cut, n, all := stop, int64(0), int64(0)
		for i, sc := range c.slices {
			all += sc.n
			if cut == stop && n+sc.n > page {
				cut = sc.start
				if i == 0 {
					cut = cur
				}
			}
			if cut == stop {
				n += sc.n
			}
		}
		if cut == cur {
			// The first slice with matches holds more than a page.
			dense := c.slices[0]
			if dense.end-dense.start <= 1 {
				if err := s.exportMicro(ctx, dense.start, tags, page, fn); err != nil {
					return err
				}
				cur = dense.end
				continue
			}
			cur, width = dense.start, dense.end-dense.start // count it in finer slices
			continue
		}
		// The next window: about two pages at this window's density, at
		// most exportBuckets times as wide.
		span := stop - cur
		grown := span * exportBuckets
		if all > 0 {
			grown = min(grown, int64(float64(span)*float64(2*page)/float64(all)))
		}
		grown = max(1, grown)
		if cut < end {
			next = count(cut, cut+min(grown, end-cut))
		}
		if n > 0 {
			var err error
			if ops, err = s.exportWindow(ctx, cur, cut, tags, ops[:0]); err != nil {
				return err
			}
			for i := range ops {
				if err := fn(&ops[i]); err != nil {
					return err
				}
			}
			clear(ops) // let the page's strings go before the next is read
		}
		cur, width = cut, grown
	}
	return nil
}

// exportBuckets is how many slices a window is counted in.
const exportBuckets = 64

// sliceCount is the number of matches in the slice [start, end) (unix
// microseconds).
type sliceCount struct{ start, end, n int64 }

// exportCounts answers the slices of [lo, hi) that hold matches, oldest
// first, in slices of width µs aligned to the epoch (the first and last
// cut to [lo, hi)): range |> filter |> group |> aggregateWindow(count), at
// most exportBuckets+1 rows.
func (s *Reader) exportCounts(ctx context.Context, lo, hi, width int64, tags []string) ([]sliceCount, error) {
	q := s.opsSource(time.UnixMicro(lo), time.UnixMicro(hi), `r._field == "id"`, tags...) + `
  |> group()
  |> aggregateWindow(every: ` + strconv.FormatInt(width, 10) + `us, fn: count, createEmpty: false, timeSrc: "_start")`
	byStart := map[int64]int64{}
	err := s.query(ctx, "export count", q, func(r row) error {
		// A point at exactly hi (which InfluxDB 1.8 takes into the
		// range) is not counted.
		if n, start := r.int("_value"), tsdb.FloorTo(r.time("_time").UnixMicro(), width); n > 0 && start < hi {
			byStart[start] += n
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := make([]sliceCount, 0, len(byStart))
	for start, n := range byStart {
		out = append(out, sliceCount{start: max(start, lo), end: min(start+width, hi), n: n})
	}
	slices.SortFunc(out, func(a, b sliceCount) int { return cmp.Compare(a.start, b.start) })
	return out, nil
}

// exportBounds answers the point times of the first and the last operation
// that match tags in [lo, hi) (unix microseconds); ok is false when there is
// none. Two queries, run at once, that hold one row per series at most.
func (s *Reader) exportBounds(ctx context.Context, lo, hi int64, tags []string) (first, last time.Time, ok bool, err error) {
	src := s.opsSource(time.UnixMicro(lo), time.UnixMicro(hi), `r._field == "id"`, tags...)
	edge := func(fn string, desc bool) string {
		return src + `
  |> ` + fn + `()
  |> group()
  |> keep(columns: ["_time"])
  |> sort(columns: ["_time"], desc: ` + strconv.FormatBool(desc) + `)
  |> limit(n: 1)
  |> yield(name: "` + fn + `")`
	}
	var haveFirst, haveLast bool
	err = s.queryEach(ctx, "export bounds", func(r row) error {
		switch t := r.time("_time"); r.result {
		case "first":
			if !haveFirst || t.Before(first) {
				first, haveFirst = t, true
			}
		case "last":
			if !haveLast || t.After(last) {
				last, haveLast = t, true
			}
		}
		return nil
	}, edge("first", false), edge("last", true))
	// Both or neither, unless an operation was written between the two.
	return first, last, haveFirst && haveLast, err
}

// exportSource is opsSource for [lo, hi) (unix microseconds). InfluxDB 1.8
// takes a point at exactly the stop of a range into it, and a window's stop
// is the next window's start, where an operation whose point time is its
// created_at (offset 0) lies: opsSource moves the stop of 1.x back, but only
// once the server's version is known; until then a filter of its own
// enforces the stop (it costs about as much as the read).
func (s *Reader) exportSource(lo, hi int64, fields string, tags []string) string {
	stop := time.UnixMicro(hi)
	src := s.opsSource(time.UnixMicro(lo), stop, fields, tags...)
	if s.versionKnown.Load() {
		return src
	}
	return src + `
  |> filter(fn: (r) => r._time < ` + fluxTime(stop) + `)`
}

// exportWindow appends the operations matching tags with point times in
// [lo, hi) (unix microseconds) to ops, sorted by created_at and id. It reads
// the points grouped by field (a handful of tables, which InfluxDB groups in
// storage) rather than pivoted per series: with thousands of series (one per
// session, tool, mode and tool id) a pivot costs about twice as much. The
// operations are assembled here from their fields, at most a page of them.
func (s *Reader) exportWindow(ctx context.Context, lo, hi int64, tags []string, ops []tsdb.Operation) ([]tsdb.Operation, error) {
	q := s.opsSource(time.UnixMicro(lo), time.UnixMicro(hi), "", tags...) + `
  |> group(columns: ["_field"])`
	type pointKey struct {
		ns     int64
		series string
	}
	points := map[pointKey]map[string]any{}
	err := s.query(ctx, "export page", q, func(r row) error {
		t := r.time("_time")
		if t.UnixMicro() >= hi {
			return nil // InfluxDB 1.8 takes a point at exactly the stop
		}
		k := pointKey{t.UnixNano(), r.str("session_id") + "\x00" + r.str("tool_name") + "\x00" +
			r.str("operation_mode") + "\x00" + r.str("tool_id") + "\x00" + r.str(schema.TagDup)}
		p := points[k]
		if p == nil {
			p = map[string]any{"_time": t, "session_id": r.values["session_id"], "tool_name": r.values["tool_name"],
				"operation_mode": r.values["operation_mode"], "tool_id": r.values["tool_id"]}
			points[k] = p
		}
		p[r.str("_field")] = r.values["_value"]
		return nil
	})
	if err != nil {
		return ops, err
	}
	s.log.Debug("export page", "operations", len(points), "from", time.UnixMicro(lo).UTC(), "to", time.UnixMicro(hi).UTC())
	for _, p := range points {
		_, p["has_file_path"] = p["file_path"]
		op, err := rowOperation(row{values: p})
		if err != nil {
			return ops, err
		}
		ops = append(ops, op)
	}
	slices.SortFunc(ops, compareOperations)
	return ops, nil
}

// compareOperations orders operations as an export hands them out: by
// created_at, then by id.
func compareOperations(a, b tsdb.Operation) int {
	if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
		return c
	}
	return bytes.Compare(a.ID[:], b.ID[:])
}

// exportMicro hands fn the operations matching tags created at the one
// microsecond us, which holds more than a page, a page of ids at a time in
// ascending order (the lower-case text of ids sorts as their bytes): the
// page's ids (the id field alone, its other columns dropped so that every
// series' table has one shape, merged and sorted within that microsecond
// only), then the operations of that id range. The comparison on _value
// comes after keep so that InfluxDB 1.8 does not push it down into storage,
// which answers no rows for it.
func (s *Reader) exportMicro(ctx context.Context, us int64, tags []string, page int64, fn func(*tsdb.Operation) error) error {
	after := ""
	ops := make([]tsdb.Operation, 0, page)
	for {
		keys := s.exportSource(us, us+1, `r._field == "id"`, tags) + `
  |> keep(columns: ["_value"])
  |> filter(fn: (r) => r._value > ` + fluxString(after) + `)
  |> group()
  |> sort(columns: ["_value"])
  |> limit(n: ` + strconv.FormatInt(page, 10) + `)`
		var first, last string
		n := int64(0)
		err := s.query(ctx, "export ids", keys, func(r row) error {
			id := r.str("_value")
			if n == 0 || id < first {
				first = id
			}
			if n == 0 || id > last {
				last = id
			}
			n++
			return nil
		})
		if err != nil || n == 0 {
			return err
		}
		q := s.exportSource(us, us+1, "", tags) + pivotOperations + `
  |> filter(fn: (r) => r.id >= ` + fluxString(first) + ` and r.id <= ` + fluxString(last) + `)`
		ops = ops[:0]
		err = s.query(ctx, "export page by id", q, func(r row) error {
			op, err := rowOperation(r)
			if err != nil {
				return err
			}
			ops = append(ops, op)
			return nil
		})
		if err != nil {
			return err
		}
		s.log.Debug("export page", "operations", len(ops), "from", time.UnixMicro(us).UTC(), "to", time.UnixMicro(us+1).UTC())
		slices.SortFunc(ops, func(a, b tsdb.Operation) int { return bytes.Compare(a.ID[:], b.ID[:]) })
		for i := range ops {
			if err := fn(&ops[i]); err != nil {
				return err
			}
		}
		clear(ops)
		if n < page {
			return nil
		}
		after = last
	}
}
