package sqlite

import (
	"context"
	"database/sql"
	"strings"

	"github.com/omnimemory/omnimemory-metrics/tsdb"
)

// aggFilter restricts an aggregate to equal column values (empty: any).
type aggFilter struct{ toolID, toolName, mode string }

// aggregateSQL builds one query over the parts (a UNION ALL of rollup and
// raw sums) grouped by (tool_name, operation_mode), or, when bucketWidth > 0,
// by bucket start (unix microseconds), oldest first. One statement reads one
// snapshot, so the parts agree with each other.
func aggregateSQL(parts []tsdb.Part, f aggFilter, bucketWidth int64) (string, []any) {
	var sels []string
	var args []any
	key := "tool_name, operation_mode"
	if bucketWidth > 0 {
		key = "b"
	}
	// An unfiltered hourly trend reads its hours from op_rollup_hourly_all,
	// one row per hour with all keys together, instead of one per key.
	allKeys := bucketWidth == tsdb.MicrosPerHour && f == (aggFilter{})
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
		case tsdb.FromHourly, tsdb.FromDaily:
			table, timeCol, width = "op_rollup_hourly", "hour", tsdb.MicrosPerHour
			switch {
			case p.Source == tsdb.FromDaily:
				table, timeCol, width = "op_rollup_daily", "day", tsdb.MicrosPerDay
			case allKeys:
				table = "op_rollup_hourly_all"
			}
			sums = "sum(count) AS c, sum(tokens_original) AS o, sum(tokens_actual) AS a, sum(tokens_prevented) AS p, sum(response_time_sum) AS r"
		}
		var q strings.Builder
		q.WriteString("SELECT ")
		switch {
		case bucketWidth > 0 && width == bucketWidth:
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
		// [Lo, Hi) of created_at for raw rows, of bucket starts for rollups.
		if p.NoLower {
			q.WriteString(timeCol + " < ?")
			args = append(args, p.Hi)
		} else {
			q.WriteString(timeCol + " >= ? AND " + timeCol + " < ?")
			args = append(args, p.Lo, p.Hi)
		}
		// Raw rows are found by time: "+" keeps the planner from reading every
		// operation of a tool name or mode through their low-cardinality
		// indexes instead of the partial hour's created_at range.
		lowCard := ""
		if p.Source == tsdb.FromRaw {
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
		// A key whose rollup rows the Subtract parts cancel held no
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
	parts := tsdb.PlanWindow(w, tsdb.PlanOptions{Daily: true})
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
	width := tsdb.MicrosPerHour
	if step == tsdb.Daily {
		width = tsdb.MicrosPerDay
	}
	parts := tsdb.PlanWindow(w, tsdb.PlanOptions{Daily: step == tsdb.Daily})
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
