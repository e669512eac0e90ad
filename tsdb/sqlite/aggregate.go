package sqlite

import (
	"context"
	"database/sql"
	"strings"

	"github.com/omnimemory/omnimemory-metrics/tsdb"
)

// source is where a part of a window is summed from.
type source int

const (
	fromRaw       source = iota // tool_operations, through the created_at indexes
	fromHourly                  // op_rollup_hourly
	fromDaily                   // op_rollup_daily
	fromHourlyAll               // op_rollup_hourly_all: hourly, all keys together
)

// part is a piece of a window. For raw rows it is the inclusive range
// [lo, hi] of created_at; for a rollup, the rows whose hour or day start s
// has lo <= s < hi (no lower bound when noLower). A negated part (raw rows
// only) is subtracted: an hour's rollup row less the raw rows of the hour
// outside the window.
type part struct {
	src     source
	lo, hi  int64
	noLower bool
	negated bool
}

// planWindow splits w into whole UTC days (when useDaily), whole UTC hours
// and at most a few partial-hour raw ranges at its edges, so that an
// aggregate reads O(days + hours at the edges) rollup rows plus the raw rows
// of at most two partial hours. An empty plan answers nothing. Hourly trends
// pass useDaily=false: their buckets need hour rows.
func planWindow(w tsdb.Window, useDaily bool) []part {
	end := w.End.UnixMicro()
	if w.Start == nil {
		if useDaily {
			dEnd := floorTo(end+1, usPerDay) // days before dEnd end inside the window
			parts := []part{{src: fromDaily, hi: dEnd, noLower: true}}
			if dEnd <= end {
				parts = append(parts, planHours(dEnd, end)...)
			}
			return parts
		}
		hEnd := floorTo(end+1, usPerHour)
		parts := []part{{src: fromHourly, hi: hEnd, noLower: true}}
		if hEnd <= end {
			parts = append(parts, edgeHour(hEnd, hEnd, end, true)...)
		}
		return parts
	}
	start := w.Start.UnixMicro()
	if start > end {
		return nil
	}
	if useDaily {
		dStart, dEnd := ceilTo(start, usPerDay), floorTo(end+1, usPerDay)
		if dStart < dEnd {
			var parts []part
			if start < dStart {
				parts = append(parts, planHours(start, dStart-1)...)
			}
			parts = append(parts, part{src: fromDaily, lo: dStart, hi: dEnd})
			if dEnd <= end {
				parts = append(parts, planHours(dEnd, end)...)
			}
			return parts
		}
	}
	return planHours(start, end)
}

// planHours splits [start, end] (start <= end) into whole hours and the
// partial hours at its edges (see edgeHour).
func planHours(start, end int64) []part {
	first, last := floorTo(start, usPerHour), floorTo(end, usPerHour)
	if first == last {
		return edgeHour(first, start, end, true)
	}
	var parts []part
	wholeFrom, wholeTo := first, last // whole hours: wholeFrom <= h < wholeTo
	if start > first {
		parts = append(parts, edgeHour(first, start, first+usPerHour-1, false)...)
		wholeFrom += usPerHour
	}
	lastWhole := end == last+usPerHour-1
	if lastWhole {
		wholeTo += usPerHour
	}
	if wholeFrom < wholeTo {
		parts = append(parts, part{src: fromHourly, lo: wholeFrom, hi: wholeTo})
	}
	if !lastWhole {
		parts = append(parts, edgeHour(last, last, end, true)...)
	}
	return parts
}

// edgeHour reads the operations of the hour starting at h that lie in
// [lo, hi] (a part of that hour) either as raw rows or as the hour's rollup
// row less the raw rows of the hour outside [lo, hi], whichever spans less
// time. A trailing edge ends the window, whose end is "now" for every
// aggregate the service answers: the time after it holds no operations (or
// the rare one sent with a future created_at), so it costs nothing. Either
// way an edge reads at most half an hour of raw rows, and the hour holding
// now, where live traffic lands, none.
func edgeHour(h, lo, hi int64, trailing bool) []part {
	before, after := lo-h, h+usPerHour-1-hi
	cost := before
	if !trailing {
		cost += after
	}
	if cost >= hi-lo+1 {
		return []part{{src: fromRaw, lo: lo, hi: hi}}
	}
	parts := []part{{src: fromHourly, lo: h, hi: h + usPerHour}}
	if before > 0 {
		parts = append(parts, part{src: fromRaw, lo: h, hi: lo - 1, negated: true})
	}
	if after > 0 {
		parts = append(parts, part{src: fromRaw, lo: hi + 1, hi: h + usPerHour - 1, negated: true})
	}
	return parts
}

// ceilTo rounds v up to a multiple of step.
func ceilTo(v, step int64) int64 {
	f := floorTo(v, step)
	if f < v {
		f += step
	}
	return f
}

// aggFilter restricts an aggregate to equal column values (empty: any).
type aggFilter struct{ toolID, toolName, mode string }

// aggregateSQL builds one query over the parts (a UNION ALL of rollup and
// raw sums) grouped by (tool_name, operation_mode), or, when bucketWidth > 0,
// by bucket start (unix microseconds), oldest first. One statement reads one
// snapshot, so the parts agree with each other.
func aggregateSQL(parts []part, f aggFilter, bucketWidth int64) (string, []any) {
	var sels []string
	var args []any
	key := "tool_name, operation_mode"
	if bucketWidth > 0 {
		key = "b"
	}
	allKeys := bucketWidth == usPerHour && f == (aggFilter{})
	for _, p := range parts {
		if allKeys && p.src == fromHourly {
			p.src = fromHourlyAll
		}
		var table, timeCol, sums string
		switch p.src {
		case fromRaw:
			table, timeCol = "tool_operations", "created_at"
			sums = "count(*) AS c, sum(tokens_original) AS o, sum(tokens_actual) AS a, sum(tokens_prevented) AS p, sum(response_time_ms) AS r"
			if p.negated {
				sums = "-count(*) AS c, -sum(tokens_original) AS o, -sum(tokens_actual) AS a, -sum(tokens_prevented) AS p, -sum(response_time_ms) AS r"
			}
		case fromHourly, fromDaily, fromHourlyAll:
			table, timeCol = "op_rollup_hourly", "hour"
			switch p.src {
			case fromDaily:
				table, timeCol = "op_rollup_daily", "day"
			case fromHourlyAll:
				table = "op_rollup_hourly_all"
			}
			sums = "sum(count) AS c, sum(tokens_original) AS o, sum(tokens_actual) AS a, sum(tokens_prevented) AS p, sum(response_time_sum) AS r"
		}
		var q strings.Builder
		q.WriteString("SELECT ")
		switch {
		case bucketWidth > 0 && ((p.src == fromHourly || p.src == fromHourlyAll) && bucketWidth == usPerHour || p.src == fromDaily && bucketWidth == usPerDay):
			// Rollup rows are their own buckets; grouping by the key's leading
			// column follows the primary key, with no sort.
			q.WriteString(timeCol + " AS b")
		case bucketWidth > 0:
			// floor(t / width) * width, right for times before 1970 too
			q.WriteString(timeCol + " - ((" + timeCol + " % ?) + ?) % ? AS b")
			args = append(args, bucketWidth, bucketWidth, bucketWidth)
		default:
			q.WriteString(key)
		}
		q.WriteString(", " + sums + " FROM " + table + " WHERE ")
		switch {
		case p.src == fromRaw:
			q.WriteString(timeCol + " >= ? AND " + timeCol + " <= ?")
			args = append(args, p.lo, p.hi)
		case p.noLower:
			q.WriteString(timeCol + " < ?")
			args = append(args, p.hi)
		default:
			q.WriteString(timeCol + " >= ? AND " + timeCol + " < ?")
			args = append(args, p.lo, p.hi)
		}
		// Raw rows are found by time: "+" keeps the planner from reading every
		// operation of a tool name or mode through their low-cardinality
		// indexes instead of the partial hour's created_at range.
		lowCard := ""
		if p.src == fromRaw {
			lowCard = "+"
		}
		for _, c := range []struct{ col, val string }{
			{"tool_id", f.toolID}, {lowCard + "tool_name", f.toolName}, {lowCard + "operation_mode", f.mode},
		} {
			if c.val != "" {
				q.WriteString(" AND " + c.col + " = ?")
				args = append(args, c.val)
			}
		}
		q.WriteString(" GROUP BY " + key)
		sels = append(sels, q.String())
	}
	q := "SELECT " + key + ", sum(c), sum(o), sum(a), sum(p), sum(r) FROM (" +
		strings.Join(sels, " UNION ALL ") + ") GROUP BY " + key +
		// A key whose rollup rows the negated parts cancel held no
		// operation inside the window.
		" HAVING sum(c) <> 0"
	if bucketWidth > 0 {
		q += " ORDER BY b"
	}
	return q, args
}

// Breakdown answers the totals per (tool name, mode) pair of the operations
// in w: daily rollup rows for the window's whole days, hourly ones for the
// whole hours of its partial days, raw rows for its partial hours.
func (s *Store) Breakdown(ctx context.Context, w tsdb.Window) ([]tsdb.ModeTotals, error) {
	if s.closed.Load() {
		return nil, errClosed
	}
	parts := planWindow(w, true)
	out := []tsdb.ModeTotals{}
	if len(parts) == 0 {
		return out, nil
	}
	q, args := aggregateSQL(parts, aggFilter{toolID: w.ToolID}, 0)
	rows, err := s.reader.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, s.wrap("breakdown", err)
	}
	defer rows.Close()
	for rows.Next() {
		var m tsdb.ModeTotals
		if err := rows.Scan(&m.ToolName, &m.OperationMode, &m.Count, &m.TokensOriginal,
			&m.TokensActual, &m.TokensPrevented, &m.ResponseTimeSumMs); err != nil {
			return nil, s.wrap("breakdown", err)
		}
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		return nil, s.wrap("breakdown", err)
	}
	return out, nil
}

// Trend answers the totals per hourly or daily UTC bucket of the operations
// in w, oldest first, for non-empty buckets only, from the same parts as
// Breakdown (hourly trends do without the daily rollup).
func (s *Store) Trend(ctx context.Context, w tsdb.Window, step tsdb.Step) ([]tsdb.Bucket, error) {
	if s.closed.Load() {
		return nil, errClosed
	}
	width := usPerHour
	if step == tsdb.Daily {
		width = usPerDay
	}
	parts := planWindow(w, step == tsdb.Daily)
	out := []tsdb.Bucket{}
	if len(parts) == 0 {
		return out, nil
	}
	q, args := aggregateSQL(parts, aggFilter{toolID: w.ToolID}, width)
	rows, err := s.reader.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, s.wrap("trend", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			b     tsdb.Bucket
			start int64
			rsum  sql.NullFloat64
		)
		if err := rows.Scan(&start, &b.Count, &b.TokensOriginal, &b.TokensActual,
			&b.TokensPrevented, &rsum); err != nil {
			return nil, s.wrap("trend", err)
		}
		b.Start = fromMicros(start)
		b.ResponseTimeSumMs = rsum.Float64
		out = append(out, b)
	}
	if err := rows.Err(); err != nil {
		return nil, s.wrap("trend", err)
	}
	return out, nil
}
