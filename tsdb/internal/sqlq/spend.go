package sqlq

import (
	"cmp"
	"context"
	"slices"
	"strings"
	"time"

	"github.com/omnimemory/omnimemory-metrics/tsdb"
)

// SpendBreakdown answers the spend per (tool id, model) of the points in w
// (see tsdb.SpendStore), from the same kind of plan as Breakdown.
func (d *Dialect) SpendBreakdown(ctx context.Context, query QueryFunc, hz *Horizon, w tsdb.Window) (out []tsdb.SpendTotals, err error) {
	err = hz.Consistent(ctx, query, func(horizon int64) error {
		out, err = aggregate(ctx, query, d, Spend, w, tsdb.PlanOptions{Daily: true, RawHorizon: horizon}, 0,
			func(rows Rows) ([]tsdb.SpendTotals, error) {
				return Collect(rows, func(r Rows) (t tsdb.SpendTotals, err error) {
					err = r.Scan(&t.ToolID, &t.Model, &t.Points, &t.CostUSD,
						&t.Tokens.Input, &t.Tokens.Output, &t.Tokens.CacheRead, &t.Tokens.CacheCreation)
					return t, err
				})
			})
		return err
	})
	return out, err
}

// SpendTrend answers the spend per hourly or daily bucket of the points in
// w, oldest first, for non-empty buckets only.
func (d *Dialect) SpendTrend(ctx context.Context, query QueryFunc, hz *Horizon, w tsdb.Window, step tsdb.Step) (out []tsdb.SpendBucket, err error) {
	err = hz.Consistent(ctx, query, func(horizon int64) error {
		o := tsdb.PlanOptions{Daily: step == tsdb.Daily, RawHorizon: horizon}
		out, err = aggregate(ctx, query, d, Spend, w, o, step.Micros(), func(rows Rows) ([]tsdb.SpendBucket, error) {
			return Collect(rows, func(r Rows) (b tsdb.SpendBucket, err error) {
				var start, points int64
				err = r.Scan(&start, &points, &b.CostUSD,
					&b.Tokens.Input, &b.Tokens.Output, &b.Tokens.CacheRead, &b.Tokens.CacheCreation)
				b.Start = time.UnixMicro(start).UTC()
				return b, err
			})
		})
		return err
	})
	return out, err
}

// SpendRollup is one row of a spend rollup table: the sums of the points of
// one (bucket, tool id, model).
type SpendRollup struct {
	Start time.Time // the hour or day
	tsdb.SpendTotals
}

// SpendRollups sums points into rollup rows of width microseconds (an hour
// or a day), in (start, tool id, model) order: concurrent writers then
// lock shared rollup rows in one order and cannot deadlock.
func SpendRollups(points []tsdb.SpendPoint, width int64) []SpendRollup {
	type key struct {
		start         int64
		toolID, model string
	}
	sums := map[key]*SpendRollup{}
	for _, p := range points {
		k := key{tsdb.FloorTo(p.Time.UnixMicro(), width), p.ToolID, p.Model}
		r := sums[k]
		if r == nil {
			r = &SpendRollup{Start: time.UnixMicro(k.start).UTC(), SpendTotals: tsdb.SpendTotals{ToolID: p.ToolID, Model: p.Model}}
			sums[k] = r
		}
		r.Points++
		r.CostUSD += p.CostUSD
		r.Tokens.Add(p.Tokens)
	}
	out := make([]SpendRollup, 0, len(sums))
	for _, r := range sums {
		out = append(out, *r)
	}
	slices.SortFunc(out, func(a, b SpendRollup) int {
		return cmp.Or(a.Start.Compare(b.Start), cmp.Compare(a.ToolID, b.ToolID), cmp.Compare(a.Model, b.Model))
	})
	return out
}

// FirstCopies marks Duplicate every point of points whose ID an earlier
// point of points carries (a retry within one request), and answers the
// indexes of the others.
func FirstCopies(points []tsdb.SpendPoint) []int {
	seen := make(map[[16]byte]bool, len(points))
	out := make([]int, 0, len(points))
	for i := range points {
		points[i].Duplicate = seen[points[i].ID]
		if !points[i].Duplicate {
			seen[points[i].ID] = true
			out = append(out, i)
		}
	}
	return out
}

// SpendRollupTable is a spend rollup table: its name, its bucket column
// and the width of its buckets in microseconds.
type SpendRollupTable struct {
	Name, Col string
	Width     int64
}

// SpendRollupTables are the hourly and daily spend rollups.
var SpendRollupTables = []SpendRollupTable{
	{Name: Spend.Hourly, Col: "hour", Width: tsdb.MicrosPerHour},
	{Name: Spend.Daily, Col: "day", Width: tsdb.MicrosPerDay},
}

// Upsert writes the statement that adds rows from source (a VALUES list or
// a SELECT of the bucket, then tool id, model and the sums in
// SpendRollup's order) to the table's rows.
func (t SpendRollupTable) Upsert(source string) string {
	sums := []string{"points", "cost_usd", "tokens_input", "tokens_output", "tokens_cache_read", "tokens_cache_creation"}
	set := make([]string, len(sums))
	for i, c := range sums {
		set[i] = c + " = r." + c + " + excluded." + c
	}
	return "INSERT INTO " + t.Name + " AS r (" + t.Col + ", tool_id, model, " + strings.Join(sums, ", ") + ") " +
		source + " ON CONFLICT (" + t.Col + ", tool_id, model) DO UPDATE SET " + strings.Join(set, ", ")
}

// RollupUpsert is the upsert of one rollup table and the width of its
// buckets.
type RollupUpsert struct {
	SQL   string
	Width int64
}

// SpendUpserts are the upserts of every spend rollup table from source
// (see SpendRollupTable.Upsert).
func SpendUpserts(source string) []RollupUpsert {
	out := make([]RollupUpsert, len(SpendRollupTables))
	for i, t := range SpendRollupTables {
		out[i] = RollupUpsert{SQL: t.Upsert(source), Width: t.Width}
	}
	return out
}
