package query

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/omnimemory/omnimemory-metrics/tsdb"
	"github.com/omnimemory/omnimemory-metrics/tsdb/influx/schema"
)

// Spend points (schema.Spend) are summed by the server: InfluxQL on 1.x,
// where Flux 0.65 cannot push aggregates down, Flux elsewhere, in shapes
// 2.x pushes down, within QueryTimeout. With the store's rollup cache
// (internal/rollup, as for operations) answers come from the totals per
// UTC hour and (tool id, model) that ReadSpendHours reads, and
// SpendBreakdownOf and SpendTrendOf add them up; without it,
// SpendBreakdown and SpendTrend sum the window's points in one query. The
// window maps onto point times as for operations (TimeRange: the offset
// below a microsecond never crosses a window edge).

// spendFields are the fields of a spend point that are summed; spendCount
// is counted (every point has it).
var spendFields = []string{
	schema.FieldCostUSD, schema.FieldTokensInput, schema.FieldTokensOutput,
	schema.FieldTokensCacheRead, schema.FieldTokensCacheCreation,
}

const spendCount = schema.FieldCostUSD

// spendKey is a row of a spend read: a window start (zero unless per
// window) and a (tool id, model) as stored in their tags (empty unless per
// key).
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

// breakdown answers SpendBreakdown's rows from sums per (tool id, model):
// the keys with points, decoded.
func (m spendSums) breakdown() []tsdb.SpendTotals {
	out := []tsdb.SpendTotals{}
	for k, t := range m {
		if t.Points == 0 {
			continue
		}
		t.ToolID, t.Model = schema.Decode(k.toolID), schema.Decode(k.model)
		out = append(out, *t)
	}
	return out
}

// trend answers SpendTrend's buckets of step from sums per window, oldest
// first.
func (m spendSums) trend(step tsdb.Step) []tsdb.SpendBucket {
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
	out := []tsdb.SpendBucket{}
	for _, b := range byStart {
		out = append(out, *b)
	}
	slices.SortFunc(out, func(a, b tsdb.SpendBucket) int { return a.Start.Compare(b.Start) })
	return out
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
// one spend point in w, in one query over its points.
func (s *Reader) SpendBreakdown(ctx context.Context, w tsdb.Window) ([]tsdb.SpendTotals, error) {
	lo, hi, ok := TimeRange(w.Start, &w.End)
	if !ok {
		return []tsdb.SpendTotals{}, nil
	}
	m, err := s.readSpend(ctx, "spend breakdown", lo, hi, w.ToolID, spendRead{byKey: true})
	if err != nil {
		return nil, err
	}
	return m.breakdown(), nil
}

// SpendTrend answers the spend per step bucket of the points in w, oldest
// first, for the buckets that hold a point, in one query over its points.
func (s *Reader) SpendTrend(ctx context.Context, w tsdb.Window, step tsdb.Step) ([]tsdb.SpendBucket, error) {
	lo, hi, ok := TimeRange(w.Start, &w.End)
	if !ok {
		return []tsdb.SpendBucket{}, nil
	}
	every := time.Hour
	if step == tsdb.Daily {
		every = 24 * time.Hour
	}
	m, err := s.readSpend(ctx, "spend trend", lo, hi, w.ToolID, spendRead{every: every})
	if err != nil {
		return nil, err
	}
	return m.trend(step), nil
}

// ReadSpendHours answers the totals per UTC hour and (tool id, model) of
// the spend points of tool id toolID (all when empty) with point times in
// [lo, hi), one row per (hour, key) with points: with InfluxQL on InfluxDB
// 1.x, with Flux elsewhere. name names the read in logs.
func (s *Reader) ReadSpendHours(ctx context.Context, name string, lo, hi time.Time, toolID string) ([]SpendHourRow, error) {
	m, err := s.readSpend(ctx, name, lo, hi, toolID, spendRead{every: time.Hour, byKey: true})
	if err != nil {
		return nil, err
	}
	out := make([]SpendHourRow, 0, len(m))
	for k, t := range m {
		if t.Points == 0 {
			continue
		}
		t.ToolID, t.Model = k.toolID, k.model
		out = append(out, SpendHourRow{Hour: tsdb.FloorTo(k.bucket.UnixMicro(), tsdb.MicrosPerHour), SpendTotals: *t})
	}
	return out, nil
}

// SpendBreakdownOf answers SpendBreakdown's rows from hourly totals.
func SpendBreakdownOf(rows []SpendHourRow) []tsdb.SpendTotals {
	m := spendSums{}
	for _, r := range rows {
		m.at(spendKey{toolID: r.ToolID, model: r.Model}).Add(r.SpendTotals)
	}
	return m.breakdown()
}

// SpendTrendOf answers SpendTrend's buckets from hourly totals.
func SpendTrendOf(rows []SpendHourRow, step tsdb.Step) []tsdb.SpendBucket {
	m := spendSums{}
	for _, r := range rows {
		m.at(spendKey{bucket: time.UnixMicro(r.Hour).UTC()}).Add(r.SpendTotals)
	}
	return m.trend(step)
}

// spendRead is what a spend read sums per: windows of every (an hour or a
// day, aligned to the epoch, hence to UTC; 0: the whole range), and, with
// byKey, (tool id, model) with the points counted.
type spendRead struct {
	every time.Duration
	byKey bool
}

// readSpend answers the sums of the spend points of toolID (all when
// empty) with point times in [lo, hi), per rd, one key per window and key
// that holds a point. The window of a key is its start, or lo for the
// first when lo is not aligned (callers truncate).
func (s *Reader) readSpend(ctx context.Context, name string, lo, hi time.Time, toolID string, rd spendRead) (spendSums, error) {
	s.learnVersion(ctx)
	if s.readsQL() {
		return s.readSpendQL(ctx, name, lo, hi, toolID, rd)
	}
	m := spendSums{}
	fn := func(r row) error {
		var k spendKey
		if rd.byKey {
			k.toolID, k.model = r.str(schema.TagToolID), r.str(schema.TagModel)
		}
		if rd.every != 0 {
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
	if err := s.queryEach(ctx, name, fn, s.spendQueries(lo, hi, toolIDPred(toolID), rd)...); err != nil {
		return nil, err
	}
	return m, nil
}

// spendQueries answers the Flux queries of readSpend. A breakdown over
// the whole range is a grouped sum of the fields and a grouped count (range
// |> filter |> group |> sum/count, pushed down on 1.8 and 2.x). Windows
// take the shapes of windowQueries, with a count only per key (a window
// appears only when it holds a point).
func (s *Reader) spendQueries(lo, hi time.Time, tid string, rd spendRead) []string {
	sum := s.source(schema.Spend, lo, hi, fieldPred(spendFields...), tid)
	var cnt string
	var counts []countQuery
	var keys []string
	if rd.byKey {
		cnt = s.source(schema.Spend, lo, hi, fieldPred(spendCount), tid)
		counts = []countQuery{{cnt, "count"}}
		keys = []string{schema.TagToolID, schema.TagModel}
	}
	if rd.every != 0 {
		return windowQueries(sum, counts, fluxDuration(rd.every), keys, s.perSeries.Load())
	}
	cols := `"` + strings.Join(keys, `", "`) + `"`
	return []string{sum + `
  |> group(columns: [` + cols + `, "_field"])
  |> sum()
  |> yield(name: "sum")`, cnt + `
  |> group(columns: [` + cols + `])
  |> count()
  |> yield(name: "count")`}
}

// fluxDuration answers an hour or a day as a Flux duration literal.
func fluxDuration(d time.Duration) string {
	if d == 24*time.Hour {
		return "1d"
	}
	return "1h"
}

// readSpendQL is readSpend in one InfluxQL query (InfluxDB 1.x).
func (s *Reader) readSpendQL(ctx context.Context, name string, lo, hi time.Time, toolID string, rd spendRead) (spendSums, error) {
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
	var group []string
	if rd.every != 0 {
		group = append(group, "time("+fluxDuration(rd.every)+")")
	}
	if rd.byKey {
		group = append(group, qlIdent(schema.TagToolID), qlIdent(schema.TagModel))
	}
	q += ` GROUP BY ` + strings.Join(group, ", ")
	if rd.every != 0 {
		q += ` fill(none)`
	}

	start := time.Now()
	m := spendSums{}
	defer func() { s.log.Debug("influxql query", "query", name, "rows", len(m), "took", time.Since(start)) }()
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
			if rd.every != 0 {
				ns, err := ts.Int64()
				if err != nil {
					return nil, fmt.Errorf("influx: influxql: time %q", ts)
				}
				k.bucket = time.Unix(0, ns).UTC()
			}
			m.at(k).Add(t)
		}
	}
	return m, nil
}
