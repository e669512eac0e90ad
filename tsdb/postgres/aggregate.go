package postgres

import (
	"context"
	"strings"
	"time"

	"github.com/omnimemory/omnimemory-metrics/tsdb"
)

// aggFilter restricts an aggregate to equal column values (empty: any).
type aggFilter struct{ toolID, toolName, mode string }

// aggregateSQL builds one query over the parts (a UNION ALL of rollup and
// raw sums) grouped by (tool_name, operation_mode), or, when bucketWidth > 0,
// by bucket start, oldest first. One statement reads one snapshot, so the
// parts agree with each other.
func aggregateSQL(parts []tsdb.Part, f aggFilter, bucketWidth int64) (string, []any) {
	var sels []string
	var a args
	key := "tool_name, operation_mode"
	if bucketWidth > 0 {
		key = "b"
	}
	stride := "'1 hour'::interval"
	if bucketWidth == tsdb.MicrosPerDay {
		stride = "'1 day'::interval"
	}
	for _, p := range parts {
		var table, timeCol, sums string
		width := int64(0) // the width of a rollup row's bucket
		switch p.Source {
		case tsdb.FromRaw:
			table, timeCol = "tool_operations", "created_at"
			sums = "count(*) AS c, sum(tokens_original) AS o, sum(tokens_actual) AS a, sum(tokens_prevented) AS p, sum(response_time_ms) AS r"
			if p.Subtract {
				sums = "-count(*) AS c, -sum(tokens_original) AS o, -sum(tokens_actual) AS a, -sum(tokens_prevented) AS p, -sum(response_time_ms) AS r"
			}
		case tsdb.FromHourly:
			table, timeCol, width = "op_rollup_hourly", "hour", tsdb.MicrosPerHour
		case tsdb.FromDaily:
			table, timeCol, width = "op_rollup_daily", "day", tsdb.MicrosPerDay
		}
		if p.Source != tsdb.FromRaw {
			sums = "sum(count) AS c, sum(tokens_original) AS o, sum(tokens_actual) AS a, sum(tokens_prevented) AS p, sum(response_time_sum) AS r"
		}
		var q strings.Builder
		q.WriteString("SELECT ")
		switch {
		case bucketWidth > 0 && width == bucketWidth:
			q.WriteString(timeCol + " AS b") // rollup rows are their own buckets
		case bucketWidth > 0:
			q.WriteString("date_bin(" + stride + ", " + timeCol + ", 'epoch'::timestamptz) AS b")
		default:
			q.WriteString(key)
		}
		q.WriteString(", " + sums + " FROM " + table + " WHERE ")
		// [Lo, Hi) of created_at for raw rows, of bucket starts for rollups.
		if p.NoLower {
			q.WriteString(timeCol + " < " + a.add(fromMicros(p.Hi)))
		} else {
			q.WriteString(timeCol + " >= " + a.add(fromMicros(p.Lo)) + " AND " + timeCol + " < " + a.add(fromMicros(p.Hi)))
		}
		for _, c := range []struct{ col, val string }{
			{"tool_id", f.toolID}, {"tool_name", f.toolName}, {"operation_mode", f.mode},
		} {
			if c.val != "" {
				q.WriteString(" AND " + c.col + " = " + a.add(c.val))
			}
		}
		q.WriteString(" GROUP BY " + key)
		sels = append(sels, q.String())
	}
	q := "SELECT " + key + ", sum(c)::bigint, sum(o)::bigint, sum(a)::bigint, sum(p)::bigint, coalesce(sum(r), 0)::float8 FROM (" +
		strings.Join(sels, " UNION ALL ") + ") AS parts GROUP BY " + key +
		// A key whose rollup rows the Subtract parts cancel held no
		// operation inside the window.
		" HAVING sum(c) <> 0"
	if bucketWidth > 0 {
		q += " ORDER BY b"
	}
	return q, a
}

// Breakdown answers the totals per (tool name, mode) pair of the operations
// in w: daily rollup rows for the window's whole days, hourly ones for the
// whole hours of its partial days, raw rows for its partial hours.
func (s *Store) Breakdown(ctx context.Context, w tsdb.Window) ([]tsdb.ModeTotals, error) {
	if s.closed.Load() {
		return nil, errClosed
	}
	parts := tsdb.PlanWindow(w, tsdb.PlanOptions{Daily: true})
	out := []tsdb.ModeTotals{}
	if len(parts) == 0 {
		return out, nil
	}
	q, qargs := aggregateSQL(parts, aggFilter{toolID: w.ToolID}, 0)
	rows, err := s.pool.Query(ctx, q, qargs...)
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
	width := tsdb.MicrosPerHour
	if step == tsdb.Daily {
		width = tsdb.MicrosPerDay
	}
	parts := tsdb.PlanWindow(w, tsdb.PlanOptions{Daily: step == tsdb.Daily})
	out := []tsdb.Bucket{}
	if len(parts) == 0 {
		return out, nil
	}
	q, qargs := aggregateSQL(parts, aggFilter{toolID: w.ToolID}, width)
	rows, err := s.pool.Query(ctx, q, qargs...)
	if err != nil {
		return nil, s.wrap("trend", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			b     tsdb.Bucket
			start time.Time
		)
		if err := rows.Scan(&start, &b.Count, &b.TokensOriginal, &b.TokensActual,
			&b.TokensPrevented, &b.ResponseTimeSumMs); err != nil {
			return nil, s.wrap("trend", err)
		}
		b.Start = start.UTC()
		out = append(out, b)
	}
	if err := rows.Err(); err != nil {
		return nil, s.wrap("trend", err)
	}
	return out, nil
}
