package query

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/omnimemory/omnimemory-metrics/tsdb"
	"github.com/omnimemory/omnimemory-metrics/tsdb/influx/schema"
)

// Spend points (schema.Spend) are read raw: every answer is one aggregate
// over the window's points, summed by the server (InfluxQL on 1.x, where
// Flux 0.65 cannot push aggregates down; Flux elsewhere, in shapes 2.x
// pushes down), within QueryTimeout. There is no rollup cache for them:
// spend points are deltas a tool exports every few seconds to minutes per
// (tool, model, session), far fewer than operations, so a window's points
// are cheap to sum where they lie. The window maps onto point times as for
// operations (TimeRange: the offset below a microsecond never crosses a
// window edge).

// spendFields are the fields of a spend point that are summed; spendCount
// is counted (every point has it).
var spendFields = []string{
	schema.FieldCostUSD, schema.FieldTokensInput, schema.FieldTokensOutput,
	schema.FieldTokensCacheRead, schema.FieldTokensCacheCreation,
}

const spendCount = schema.FieldCostUSD

// spendKey is a row of a spend read: a bucket start (zero in breakdowns)
// and, in breakdowns, a (tool id, model) as stored in their tags.
type spendKey struct {
	bucket        time.Time
	toolID, model string
}

// spendSums are the sums of a spend read, per key.
type spendSums map[spendKey]*tsdb.SpendTotals

func (m spendSums) at(k spendKey) *tsdb.SpendTotals {
	t := m[k]
	if t == nil {
		t = new(tsdb.SpendTotals)
		m[k] = t
	}
	return t
}

// addSpendField adds the value of one aggregate row of field to t.
func addSpendField(t *tsdb.SpendTotals, field string, r row) {
	switch field {
	case schema.FieldCostUSD:
		t.CostUSD += r.float("_value")
	case schema.FieldTokensInput:
		t.Tokens.Input += r.int("_value")
	case schema.FieldTokensOutput:
		t.Tokens.Output += r.int("_value")
	case schema.FieldTokensCacheRead:
		t.Tokens.CacheRead += r.int("_value")
	case schema.FieldTokensCacheCreation:
		t.Tokens.CacheCreation += r.int("_value")
	}
}

// SpendBreakdown answers the totals of every (tool id, model) with at least
// one spend point in w.
func (s *Reader) SpendBreakdown(ctx context.Context, w tsdb.Window) ([]tsdb.SpendTotals, error) {
	out := []tsdb.SpendTotals{}
	lo, hi, ok := TimeRange(w.Start, &w.End)
	if !ok {
		return out, nil
	}
	m, err := s.readSpend(ctx, lo, hi, w.ToolID, 0)
	if err != nil {
		return nil, err
	}
	for k, t := range m {
		if t.Points == 0 {
			continue
		}
		t.ToolID, t.Model = schema.Decode(k.toolID), schema.Decode(k.model)
		out = append(out, *t)
	}
	return out, nil
}

// SpendTrend answers the spend per step bucket of the points in w, oldest
// first, for the buckets that hold a point.
func (s *Reader) SpendTrend(ctx context.Context, w tsdb.Window, step tsdb.Step) ([]tsdb.SpendBucket, error) {
	out := []tsdb.SpendBucket{}
	lo, hi, ok := TimeRange(w.Start, &w.End)
	if !ok {
		return out, nil
	}
	every := time.Hour
	if step == tsdb.Daily {
		every = 24 * time.Hour
	}
	m, err := s.readSpend(ctx, lo, hi, w.ToolID, every)
	if err != nil {
		return nil, err
	}
	byStart := map[time.Time]*tsdb.SpendBucket{}
	for k, t := range m {
		start := step.Truncate(k.bucket)
		b := byStart[start]
		if b == nil {
			b = &tsdb.SpendBucket{Start: start}
			byStart[start] = b
		}
		b.CostUSD += t.CostUSD
		b.Tokens.Add(t.Tokens)
	}
	for _, b := range byStart {
		out = append(out, *b)
	}
	slices.SortFunc(out, func(a, b tsdb.SpendBucket) int { return a.Start.Compare(b.Start) })
	return out, nil
}

// readSpend answers the sums of the spend points of toolID (all when
// empty) with point times in [lo, hi): per (tool id, model) with their
// point counts when every is 0, else per window of every (an hour or a
// day, aligned to the epoch, hence to UTC) with no counts, one key per
// window that holds a point. The window of a key is its start, or lo for
// the first when lo is not aligned (callers truncate).
func (s *Reader) readSpend(ctx context.Context, lo, hi time.Time, toolID string, every time.Duration) (spendSums, error) {
	s.learnVersion(ctx)
	if s.v1.Load() && !s.cfg.AlwaysFlux {
		return s.readSpendQL(ctx, lo, hi, toolID, every)
	}
	m := spendSums{}
	fn := func(r row) error {
		var k spendKey
		if every == 0 {
			k.toolID, k.model = r.str(schema.TagToolID), r.str(schema.TagModel)
		} else {
			k.bucket = r.time("_time")
		}
		t := m.at(k)
		if r.result == "count" {
			t.Points += r.int("_value")
		} else {
			addSpendField(t, r.str("_field"), r)
		}
		return nil
	}
	name := "spend breakdown"
	if every != 0 {
		name = "spend trend"
	}
	if err := s.queryEach(ctx, name, fn, s.spendQueries(lo, hi, toolIDPred(toolID), every, s.perSeries.Load())...); err != nil {
		return nil, err
	}
	return m, nil
}

// spendQueries answers the Flux queries of readSpend. A breakdown is a
// grouped sum of the fields and a grouped count (range |> filter |> group
// |> sum/count, pushed down on 1.8 and 2.x). A trend needs no count (a
// window appears only when it holds a point) and takes one of the two
// shapes of trendQueries: grouped on 1.x, per series on 2.x.
func (s *Reader) spendQueries(lo, hi time.Time, tid string, every time.Duration, perSeries bool) []string {
	sum := s.source(schema.Spend, lo, hi, fieldPred(spendFields...), tid)
	if every == 0 {
		const keys = `"` + schema.TagToolID + `", "` + schema.TagModel + `"`
		return []string{sum + `
  |> group(columns: [` + keys + `, "_field"])
  |> sum()
  |> yield(name: "sum")`, s.source(schema.Spend, lo, hi, fieldPred(spendCount), tid) + `
  |> group(columns: [` + keys + `])
  |> count()
  |> yield(name: "count")`}
	}
	win := "\n  |> aggregateWindow(every: " + fluxDuration(every) + `, fn: sum, createEmpty: false, timeSrc: "_start")`
	if perSeries {
		return []string{sum + win + `
  |> group(columns: ["_field", "_time"])
  |> sum()
  |> yield(name: "sum")`}
	}
	return []string{sum + `
  |> group(columns: ["_field"])` + win + `
  |> yield(name: "sum")`}
}

// fluxDuration answers an hour or a day as a Flux duration literal.
func fluxDuration(d time.Duration) string {
	if d == 24*time.Hour {
		return "1d"
	}
	return "1h"
}

// readSpendQL is readSpend in one InfluxQL query (InfluxDB 1.x).
func (s *Reader) readSpendQL(ctx context.Context, lo, hi time.Time, toolID string, every time.Duration) (spendSums, error) {
	if s.closed.Load() {
		return nil, ErrClosed
	}
	q := "SELECT "
	for _, f := range spendFields {
		q += "sum(" + qlIdent(f) + "), "
	}
	q += fmt.Sprintf("count(%s) FROM %s WHERE time >= %d AND time < %d",
		qlIdent(spendCount), qlIdent(schema.Spend), lo.UnixNano(), hi.UnixNano())
	if toolID != "" {
		q += ` AND ` + qlIdent(schema.TagToolID) + ` = ` + qlString(schema.TagValue(toolID))
	}
	if every == 0 {
		q += ` GROUP BY ` + qlIdent(schema.TagToolID) + `, ` + qlIdent(schema.TagModel)
	} else {
		q += ` GROUP BY time(` + fluxDuration(every) + `) fill(none)`
	}

	start := time.Now()
	m := spendSums{}
	defer func() { s.log.Debug("influxql query", "query", "spend", "rows", len(m), "took", time.Since(start)) }()
	ctx, cancel := context.WithTimeout(ctx, s.cfg.QueryTimeout)
	defer cancel()
	series, err := s.influxQL(ctx, q)
	if err != nil {
		return nil, err
	}
	const cols = 2 + 5 // time, the five sums, the count
	for _, sr := range series {
		for _, v := range sr.Values {
			if len(v) != cols {
				return nil, fmt.Errorf("influx: influxql: %d columns in a spend row, want %d", len(v), cols)
			}
			var t tsdb.SpendTotals
			var ts, cost json.Number
			if err := errors.Join(num(v[0], &ts), num(v[1], &cost), num(v[2], &t.Tokens.Input), num(v[3], &t.Tokens.Output),
				num(v[4], &t.Tokens.CacheRead), num(v[5], &t.Tokens.CacheCreation), num(v[6], &t.Points)); err != nil {
				return nil, fmt.Errorf("influx: influxql: %w", err)
			}
			if t.Points == 0 {
				continue
			}
			if t.CostUSD, err = cost.Float64(); err != nil {
				return nil, fmt.Errorf("influx: influxql: cost sum %q", cost)
			}
			k := spendKey{toolID: sr.Tags[schema.TagToolID], model: sr.Tags[schema.TagModel]}
			if every != 0 {
				ns, err := ts.Int64()
				if err != nil {
					return nil, fmt.Errorf("influx: influxql: time %q", ts)
				}
				k.bucket = time.Unix(0, ns).UTC()
			}
			sum := m.at(k)
			sum.Points += t.Points
			sum.CostUSD += t.CostUSD
			sum.Tokens.Add(t.Tokens)
		}
	}
	return m, nil
}
