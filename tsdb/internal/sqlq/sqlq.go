// Package sqlq writes the SQL that the two SQL stores (SQLite and
// PostgreSQL) share, in the small Dialect each declares, and reads its
// answers: aggregates over a window's plan, the operation filters, the
// session lookups; and the goroutine both run to move staged operations
// (Mover).
package sqlq

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/omnimemory/omnimemory-metrics/tsdb"
)

// Dialect is what differs between the SQL stores in the statements this
// package writes. Both keep the same tables and columns (tool_operations,
// op_rollup_hourly, op_rollup_daily, tool_sessions); times differ in type
// (unix microseconds or timestamptz), so do placeholders and bucketing.
type Dialect struct {
	// Param writes the n-th placeholder (from 1): "?" or "$n".
	Param func(n int) string
	// Time is a time as an argument, in the type of the time columns.
	Time func(t time.Time) any
	// ID is a UUID as an argument, in the type of tool_operations' id and
	// session_id columns.
	ID func(id uuid.UUID) any
	// SessionID is a UUID as an argument, in the type of tool_sessions'
	// session_id column.
	SessionID func(id uuid.UUID) any
	// Greatest is the function of the larger of two values: "max" or
	// "greatest".
	Greatest string
	// BucketStart writes the start of the bucket of width microseconds (an
	// hour or a day, aligned on the Unix epoch) that col falls in; it may
	// take arguments from q.
	BucketStart func(q *Query, col string, width int64) string
	// Micros writes a bucket start, in the type of the time columns, as
	// unix microseconds (bigint).
	Micros func(expr string) string
	// Sum writes the sum of expr over a group, which must not fail when it
	// passes the bounds of a bigint (the contract's token counts go up to
	// 2^63-1): PostgreSQL's sum of bigints is a numeric; SQLite's sum fails
	// then, so SQLite takes its total, a real (exact up to 2^53).
	Sum func(expr string) string
	// Int writes a Sum of integers so that it reads as a 64-bit integer,
	// held at the bounds of one as tsdb.AddSat holds the sums made in Go.
	Int func(expr string) string
	// HourlyAll, when set, is a rollup table of one row per hour for all
	// keys together, which an unfiltered hourly trend reads instead of
	// op_rollup_hourly.
	HourlyAll string
	// UUIDText writes an id column of tool_operations as the lower-case
	// hyphenated text of the UUID; SessionKey writes tool_operations'
	// session_id in the type of tool_sessions' session_id, to join them.
	UUIDText, SessionKey func(expr string) string
	// TextCollate follows a text expression that an answer is ordered by,
	// so that it orders byte by byte, as Go compares strings: "" where that
	// is the default, else a COLLATE clause.
	TextCollate string
	// FileDaySeek: the day rollup per file (op_rollup_file_daily) is keyed
	// by (day, file_null, file_path), so that a file's row of a day is
	// found by a seek; an aggregate by file path then ranks the files
	// before it reads their totals (see Dialect.GroupOperations).
	FileDaySeek bool
	// LowCardinality goes before tool_name and operation_mode where a
	// raw-row condition should not use their indexes ("+" on SQLite, whose
	// planner otherwise prefers them to the created_at range).
	LowCardinality string
}

// Query is a statement being written and its arguments.
type Query struct {
	d    *Dialect
	Args []any
}

// NewQuery starts a statement in d.
func (d *Dialect) NewQuery() *Query { return &Query{d: d} }

// Arg adds v to the arguments and answers its placeholder.
func (q *Query) Arg(v any) string {
	q.Args = append(q.Args, v)
	return q.d.Param(len(q.Args))
}

// Filter restricts an aggregate to equal column values (empty: any).
// SessionID (nil: any) is a column of raw rows only: a plan that reads
// rollups cannot filter on it.
type Filter struct {
	ToolID, ToolName, Mode string
	SessionID              *uuid.UUID
}

// Sum is one column an aggregate sums: Raw over the raw rows, Rollup over
// the rollup rows (which hold partial sums); Float marks a sum of reals.
type Sum struct {
	Raw, Rollup string
	Float       bool
}

// Series is a kind of row that aggregates read: its raw table and time
// column, its hourly (hour) and daily (day) rollup tables, the key a
// breakdown groups by, and the sums.
type Series struct {
	Raw, Time     string
	Hourly, Daily string
	Key           string
	Sums          []Sum
	// AllKeys uses the dialect's HourlyAll table for unfiltered hourly
	// trends (the operations' only).
	AllKeys bool
}

// Operations are tool operations: a breakdown by (tool name, mode) of the
// count, the three token sums and the response time sum.
var Operations = Series{
	Raw: "tool_operations", Time: "created_at", Hourly: "op_rollup_hourly", Daily: "op_rollup_daily",
	Key: "tool_name, operation_mode", AllKeys: true,
	Sums: []Sum{
		{Raw: "1", Rollup: "count"},
		{Raw: "tokens_original", Rollup: "tokens_original"},
		{Raw: "tokens_actual", Rollup: "tokens_actual"},
		{Raw: "tokens_prevented", Rollup: "tokens_prevented"},
		{Raw: "response_time_ms", Rollup: "response_time_sum", Float: true},
	},
}

// Spend are spend points: a breakdown by (tool id, model) of the count,
// the dollars and the four token sums.
var Spend = Series{
	Raw: "spend_points", Time: "at", Hourly: "spend_rollup_hourly", Daily: "spend_rollup_daily",
	Key: "tool_id, model",
	Sums: []Sum{
		{Raw: "1", Rollup: "points"},
		{Raw: "cost_usd", Rollup: "cost_usd", Float: true},
		{Raw: "tokens_input", Rollup: "tokens_input"},
		{Raw: "tokens_output", Rollup: "tokens_output"},
		{Raw: "tokens_cache_read", Rollup: "tokens_cache_read"},
		{Raw: "tokens_cache_creation", Rollup: "tokens_cache_creation"},
	},
}

// Aggregate writes one query over the parts of a window's plan (a UNION ALL
// of rollup and raw sums) of series, grouped by its key, or, when
// bucketWidth > 0, by bucket start as unix microseconds, oldest first: the
// key's columns (or the bucket), then the sums in series' order, the first
// of which must be the row count. One statement reads one snapshot, so the
// parts agree with each other.
func (d *Dialect) Aggregate(series Series, parts []tsdb.Part, f Filter, bucketWidth int64) (string, []any) {
	q := d.NewQuery()
	keyCols := strings.Split(series.Key, ", ")
	if bucketWidth > 0 {
		keyCols = []string{"b"}
	}
	allKeys := series.AllKeys && bucketWidth == tsdb.MicrosPerHour && f == (Filter{})
	union := d.unionParts(q, series, parts, f, allKeys, func(_ *Query, p partTable) []string {
		if bucketWidth == 0 {
			return keyCols
		}
		if p.width == bucketWidth {
			// Rollup rows are their own buckets; grouping by the key's
			// leading column follows the primary key, with no sort.
			return []string{p.timeCol}
		}
		return []string{d.BucketStart(q, p.timeCol, bucketWidth)}
	})
	keys := make([]string, len(keyCols))
	out := make([]string, len(keyCols))
	for i, c := range keyCols {
		keys[i] = "k" + strconv.Itoa(i)
		out[i] = keys[i] + " AS " + c
	}
	if bucketWidth > 0 {
		out[0] = d.Micros(keys[0])
	}
	stmt := "SELECT " + strings.Join(append(out, d.sumColumns(series)...), ", ") + " FROM (" + union + ") AS parts GROUP BY " +
		strings.Join(keys, ", ") +
		// A key whose rollup rows the Subtract parts cancel held no row
		// inside the window.
		" HAVING " + d.Sum("s0") + " <> 0"
	if bucketWidth > 0 {
		stmt += " ORDER BY " + keys[0]
	}
	return stmt, q.Args
}

// partTable is the table a part of a plan reads: its name, its time column,
// and the width of its buckets (0 for raw rows).
type partTable struct {
	tsdb.Part
	table, timeCol string
	width          int64
}

// unionParts writes the parts of a window's plan of series as one UNION ALL
// of SELECTs, each grouped by the key columns keys writes for its table
// (named k0, k1, ...), then the sums in series' order (named s0, s1, ...;
// negated for a Subtract part). Rollup parts read the hourly or daily
// table of series, or with allKeys the dialect's HourlyAll table for hours
// (when it has one), and are filtered on f's columns as raw parts are.
func (d *Dialect) unionParts(q *Query, series Series, parts []tsdb.Part, f Filter, allKeys bool, keys func(q *Query, p partTable) []string) string {
	sels := make([]string, 0, len(parts))
	for _, part := range parts {
		p := partTable{Part: part, table: series.Raw, timeCol: series.Time}
		switch part.Source {
		case tsdb.FromHourly:
			p.table, p.timeCol, p.width = series.Hourly, "hour", tsdb.MicrosPerHour
			if allKeys && d.HourlyAll != "" {
				p.table = d.HourlyAll
			}
		case tsdb.FromDaily:
			p.table, p.timeCol, p.width = series.Daily, "day", tsdb.MicrosPerDay
		}
		var s strings.Builder
		s.WriteString("SELECT ")
		cols := keys(q, p)
		groupBy := make([]string, len(cols))
		for i, c := range cols {
			groupBy[i] = "k" + strconv.Itoa(i)
			s.WriteString(c + " AS " + groupBy[i] + ", ")
		}
		for i, sum := range series.Sums {
			expr := d.Sum(sum.Rollup)
			if part.Source == tsdb.FromRaw {
				expr = d.Sum(sum.Raw)
				if part.Subtract {
					expr = "-" + expr
				}
			}
			if i > 0 {
				s.WriteString(", ")
			}
			s.WriteString(expr + " AS s" + strconv.Itoa(i))
		}
		s.WriteString(" FROM " + p.table + " WHERE ")
		// [Lo, Hi) of the time for raw rows, of bucket starts for rollups.
		if !part.NoLower {
			s.WriteString(p.timeCol + " >= " + q.Arg(d.Time(time.UnixMicro(part.Lo))) + " AND ")
		}
		s.WriteString(p.timeCol + " < " + q.Arg(d.Time(time.UnixMicro(part.Hi))))
		// Raw rows are found by time, not through the indexes of a tool
		// name or mode.
		lowCard := ""
		if part.Source == tsdb.FromRaw {
			lowCard = d.LowCardinality
		}
		for _, c := range []struct{ col, val string }{
			{"tool_id", f.ToolID}, {lowCard + "tool_name", f.ToolName}, {lowCard + "operation_mode", f.Mode},
		} {
			if c.val != "" {
				s.WriteString(" AND " + c.col + " = " + q.Arg(c.val))
			}
		}
		if f.SessionID != nil {
			s.WriteString(" AND session_id = " + q.Arg(d.ID(*f.SessionID)))
		}
		if len(groupBy) > 0 {
			s.WriteString(" GROUP BY " + strings.Join(groupBy, ", "))
		}
		sels = append(sels, s.String())
	}
	return strings.Join(sels, " UNION ALL ")
}

// sumColumns writes the outer sums of unionParts' s0, s1, ...: integers as
// 64-bit integers, reals as 0.0 when there is no row.
func (d *Dialect) sumColumns(series Series) []string {
	out := make([]string, len(series.Sums))
	for i, sum := range series.Sums {
		col := d.Sum("s" + strconv.Itoa(i))
		if sum.Float {
			out[i] = "coalesce(" + col + ", 0.0)"
		} else {
			out[i] = d.Int(col)
		}
	}
	return out
}

// Rows is what both drivers' result sets offer (database/sql's *sql.Rows,
// pgx's Rows).
type Rows interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
}

// QueryFunc runs a query in a store's driver; done releases its rows.
type QueryFunc func(ctx context.Context, sql string, args ...any) (rows Rows, done func(), err error)

// Breakdown answers the totals per (tool name, mode) pair of the operations
// in w: daily rollup rows for the window's whole days, hourly ones for the
// whole hours of its partial days, raw rows for its partial hours after the
// raw horizon hz (see Horizon.Consistent).
func (d *Dialect) Breakdown(ctx context.Context, query QueryFunc, hz *Horizon, w tsdb.Window) (out []tsdb.ModeTotals, err error) {
	err = hz.Consistent(ctx, query, func(horizon int64) error {
		out, err = aggregate(ctx, query, d, Operations, w, tsdb.PlanOptions{Daily: true, RawHorizon: horizon}, 0, ReadModeTotals)
		return err
	})
	return out, err
}

// Trend answers the totals per hourly or daily UTC bucket of the operations
// in w, oldest first, for non-empty buckets only, from the same parts as
// Breakdown (hourly trends do without the daily rollup).
func (d *Dialect) Trend(ctx context.Context, query QueryFunc, hz *Horizon, w tsdb.Window, step tsdb.Step) (out []tsdb.Bucket, err error) {
	err = hz.Consistent(ctx, query, func(horizon int64) error {
		o := tsdb.PlanOptions{Daily: step == tsdb.Daily, RawHorizon: horizon}
		out, err = aggregate(ctx, query, d, Operations, w, o, step.Micros(), ReadBuckets)
		return err
	})
	return out, err
}

// aggregate reads the Aggregate of series over the plan of w with o,
// filtered by w's tool id, through read; an empty plan answers an empty,
// non-nil slice.
func aggregate[T any](ctx context.Context, query QueryFunc, d *Dialect, series Series, w tsdb.Window, o tsdb.PlanOptions,
	bucketWidth int64, read func(Rows) ([]T, error)) ([]T, error) {
	parts := tsdb.PlanWindow(w, o)
	if len(parts) == 0 {
		return []T{}, nil
	}
	q, args := d.Aggregate(series, parts, Filter{ToolID: w.ToolID}, bucketWidth)
	rows, done, err := query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer done()
	return read(rows)
}

// CountOperations answers how many operations match f from the rollups for
// the whole days and hours of its time range and from raw rows only at its
// edges, so that the total of a list of millions costs no scan. (A
// session's operations are better counted through the session's index.)
// Before the raw horizon (unix microseconds, 0: none) it counts the raw
// rows that remain, as the list shows them.
func (d *Dialect) CountOperations(ctx context.Context, query QueryFunc, f tsdb.OperationFilter, horizon int64) (int64, error) {
	w := tsdb.Window{Start: f.Start, End: tsdb.FarFuture}
	if f.End != nil {
		w.End = *f.End
	}
	var parts []tsdb.Part
	if horizon != 0 && (w.Start == nil || w.Start.UnixMicro() < horizon) {
		before := tsdb.Part{Source: tsdb.FromRaw, Hi: min(horizon, w.End.UnixMicro()+1), NoLower: w.Start == nil}
		if w.Start != nil {
			before.Lo = w.Start.UnixMicro()
		}
		if before.NoLower || before.Lo < before.Hi {
			parts = append(parts, before)
		}
		h := time.UnixMicro(horizon).UTC()
		w.Start = &h
	}
	parts = append(parts, tsdb.PlanWindow(w, tsdb.PlanOptions{Daily: true})...)
	if len(parts) == 0 {
		return 0, nil
	}
	q, args := d.Aggregate(Operations, parts, Filter{ToolID: f.ToolID, ToolName: f.ToolName, Mode: f.OperationMode}, 0)
	rows, done, err := query(ctx, q, args...)
	if err != nil {
		return 0, err
	}
	defer done()
	totals, err := ReadModeTotals(rows)
	var n int64
	for _, m := range totals {
		n += m.Count
	}
	return n, err
}

// ReadModeTotals reads the rows of an Aggregate without buckets.
func ReadModeTotals(rows Rows) ([]tsdb.ModeTotals, error) {
	return Collect(rows, func(r Rows) (m tsdb.ModeTotals, err error) {
		err = r.Scan(&m.ToolName, &m.OperationMode, &m.Count, &m.TokensOriginal,
			&m.TokensActual, &m.TokensPrevented, &m.ResponseTimeSumMs)
		return m, err
	})
}

// ReadBuckets reads the rows of an Aggregate with buckets.
func ReadBuckets(rows Rows) ([]tsdb.Bucket, error) {
	return Collect(rows, func(r Rows) (b tsdb.Bucket, err error) {
		var start int64
		err = r.Scan(&start, &b.Count, &b.TokensOriginal, &b.TokensActual, &b.TokensPrevented, &b.ResponseTimeSumMs)
		b.Start = time.UnixMicro(start).UTC()
		return b, err
	})
}

// OperationWhere writes the WHERE clause of f (its Limit and Offset aside),
// "" when f has no condition. lowCard writes tool_name and operation_mode
// with the dialect's LowCardinality prefix.
func (q *Query) OperationWhere(f tsdb.OperationFilter, lowCard bool) string {
	var where []string
	pre := ""
	if lowCard {
		pre = q.d.LowCardinality
	}
	if f.SessionID != nil {
		where = append(where, "session_id = "+q.Arg(q.d.ID(*f.SessionID)))
	}
	if f.ToolName != "" {
		where = append(where, pre+"tool_name = "+q.Arg(f.ToolName))
	}
	if f.OperationMode != "" {
		where = append(where, pre+"operation_mode = "+q.Arg(f.OperationMode))
	}
	if f.ToolID != "" {
		where = append(where, "tool_id = "+q.Arg(f.ToolID))
	}
	if f.Start != nil {
		where = append(where, "created_at >= "+q.Arg(q.d.Time(*f.Start)))
	}
	if f.End != nil {
		where = append(where, "created_at <= "+q.Arg(q.d.Time(*f.End)))
	}
	if len(where) == 0 {
		return ""
	}
	return " WHERE " + strings.Join(where, " AND ")
}
