package exporter_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/omnimemory/omnimemory-metrics/client/api"

	"github.com/google/uuid"

	"github.com/omnimemory/omnimemory-metrics/exporter"
	"github.com/omnimemory/omnimemory-metrics/tsdb"
	"github.com/omnimemory/omnimemory-metrics/tsdb/sqlite"
)

// compareNow is the clock of the comparison tests: not on an hour, so that
// both periods start and end inside hours and days.
var compareNow = time.Date(2025, 1, 14, 12, 30, 0, 0, time.UTC)

// newReporter answers a Reporter at 0.015 USD per 1,000 tokens over a real
// SQLite store holding ops, with the clock at now.
func newReporter(t *testing.T, now time.Time, ops ...tsdb.Operation) *exporter.Reporter {
	t.Helper()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	store, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "m.db"), logger)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := store.Close(); err != nil {
			t.Error(err)
		}
	})
	if len(ops) > 0 {
		if err := store.WriteOperations(context.Background(), ops); err != nil {
			t.Fatal(err)
		}
	}
	return exporter.NewReporter(store, exporter.Pricing{PerThousandUSD: 0.015}, func() time.Time { return now })
}

// operation builds a stored operation; prevented is original - actual.
func operation(at time.Time, toolID, tool, mode string, original, actual int64) tsdb.Operation {
	return tsdb.Operation{
		ID: uuid.New(), SessionID: uuid.MustParse("123e4567-e89b-12d3-a456-426614174000"),
		ToolName: tool, OperationMode: mode, Parameters: json.RawMessage("{}"),
		TokensOriginal: original, TokensActual: actual, TokensPrevented: original - actual,
		ResponseTimeMs: 10, ToolID: toolID, CreatedAt: at.UTC(),
	}
}

func pct(v float64) *float64 { return &v }

// periodOperations places operations on both sides of every boundary of the
// comparison of range d ending at now: three in the current period (one at
// its very start, one at now), two in the previous one (one at its very
// start, one a microsecond before the current period starts), one a
// microsecond before the previous period starts (in neither), and one of
// another tool in each period.
func periodOperations(now time.Time, d time.Duration) []tsdb.Operation {
	start, prevStart := now.Add(-d), now.Add(-2*d)
	return []tsdb.Operation{
		operation(start, "claude-code", "read", "full", 5000, 5000),
		operation(now.Add(-d/3), "claude-code", "read", "overview", 5000, 500),
		operation(now, "claude-code", "search", "semantic", 50000, 5000),
		operation(start.Add(-time.Microsecond), "claude-code", "read", "symbol", 8000, 800),
		operation(prevStart, "claude-code", "search", "tri_index", 30000, 3000),
		operation(prevStart.Add(-time.Microsecond), "claude-code", "read", "full", 1000000, 0),
		operation(now.Add(-d/2), "cursor", "read", "references", 700, 100),
		operation(now.Add(-d-d/2), "cursor", "read", "references", 900, 100),
	}
}

func TestCompareAPISavingsFiguresAndBoundaries(t *testing.T) {
	for _, r := range []exporter.TimeRange{exporter.Range1h, exporter.Range24h, exporter.Range7d, exporter.Range30d} {
		t.Run(string(r.Name), func(t *testing.T) {
			rep := newReporter(t, compareNow, periodOperations(compareNow, r.Duration)...)
			got, err := rep.CompareAPISavings(context.Background(), r, "claude-code")
			if err != nil {
				t.Fatal(err)
			}
			wantCurrent := api.PeriodSavings{
				APICostBaseline: 0.9, APICostActual: 0.1575, TotalCostSaved: 0.7425, SavingsPercentage: 82.5,
				TotalTokensProcessed: 60000, TotalTokensPrevented: 49500, TotalOperations: 3,
				BreakdownByTool: api.ToolSavings{
					Read:   api.Savings{CostSaved: 0.0675, TokensPrevented: 4500, Operations: 2},
					Search: api.Savings{CostSaved: 0.675, TokensPrevented: 45000, Operations: 1},
				},
				BreakdownByMode: map[string]api.Savings{
					"full":     {CostSaved: 0, TokensPrevented: 0, Operations: 1},
					"overview": {CostSaved: 0.0675, TokensPrevented: 4500, Operations: 1},
					"semantic": {CostSaved: 0.675, TokensPrevented: 45000, Operations: 1},
				},
			}
			if !reflect.DeepEqual(got.PeriodSavings, wantCurrent) {
				t.Errorf("current period\n got %+v\nwant %+v", got.PeriodSavings, wantCurrent)
			}
			wantPrevious := api.PreviousPeriod{
				Start: compareNow.Add(-2 * r.Duration),
				End:   compareNow.Add(-r.Duration),
				PeriodSavings: api.PeriodSavings{
					APICostBaseline: 0.57, APICostActual: 0.057, TotalCostSaved: 0.513, SavingsPercentage: 90,
					TotalTokensProcessed: 38000, TotalTokensPrevented: 34200, TotalOperations: 2,
					BreakdownByTool: api.ToolSavings{
						Read:   api.Savings{CostSaved: 0.108, TokensPrevented: 7200, Operations: 1},
						Search: api.Savings{CostSaved: 0.405, TokensPrevented: 27000, Operations: 1},
					},
					BreakdownByMode: map[string]api.Savings{
						"symbol":    {CostSaved: 0.108, TokensPrevented: 7200, Operations: 1},
						"tri_index": {CostSaved: 0.405, TokensPrevented: 27000, Operations: 1},
					},
				},
			}
			if got.PreviousPeriod == nil || !reflect.DeepEqual(*got.PreviousPeriod, wantPrevious) {
				t.Errorf("previous period\n got %+v\nwant %+v", got.PreviousPeriod, wantPrevious)
			}
			wantChange := api.SavingsChange{
				APICostBaseline:      api.Change[float64]{Absolute: 0.33, Percent: pct(57.89)},
				APICostActual:        api.Change[float64]{Absolute: 0.1005, Percent: pct(176.32)},
				TotalCostSaved:       api.Change[float64]{Absolute: 0.2295, Percent: pct(44.74)},
				SavingsPercentage:    api.Change[float64]{Absolute: -7.5, Percent: pct(-8.33)},
				TotalTokensProcessed: api.Change[int64]{Absolute: 22000, Percent: pct(57.89)},
				TotalTokensPrevented: api.Change[int64]{Absolute: 15300, Percent: pct(44.74)},
				TotalOperations:      api.Change[int64]{Absolute: 1, Percent: pct(50)},
			}
			if got.Change == nil || !reflect.DeepEqual(*got.Change, wantChange) {
				t.Errorf("change\n got %s\nwant %s", jsonOf(t, got.Change), jsonOf(t, wantChange))
			}
			if got.TimeRange != r.Name || api.FormatTime(got.CalculatedAt) != "2025-01-14T12:30:00Z" {
				t.Errorf("time_range %q, calculated_at %q", got.TimeRange, got.CalculatedAt)
			}

			// The current figures and trends are those of the plain answer.
			plain, err := rep.APISavings(context.Background(), r, "claude-code")
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(plain.PeriodSavings, got.PeriodSavings) || !reflect.DeepEqual(plain.Trends, got.Trends) {
				t.Errorf("compared current figures differ from the plain answer's")
			}
		})
	}
}

// TestCompareAPISavingsJSON checks the answer's shape: the plain answer has
// no comparison fields; the compared one has them, with null percents.
func TestCompareAPISavingsJSON(t *testing.T) {
	rep := newReporter(t, compareNow,
		operation(compareNow.Add(-time.Hour), "claude-code", "read", "overview", 5000, 500))
	plain, err := rep.APISavings(context.Background(), exporter.Range24h, "")
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(jsonOf(t, plain)), &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"previous_period", "change"} {
		if _, ok := m[k]; ok {
			t.Errorf("the plain answer has %s", k)
		}
	}
	if len(m) != 12 {
		t.Errorf("the plain answer has %d fields, want the 12 of the contract: %v", len(m), m)
	}
	compared, err := rep.CompareAPISavings(context.Background(), exporter.Range24h, "")
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"absolute":5000,"percent":null}`
	if err := json.Unmarshal([]byte(jsonOf(t, compared)), &m); err != nil {
		t.Fatal(err)
	}
	if got := jsonOf(t, m["change"].(map[string]any)["total_tokens_processed"]); got != want {
		t.Errorf("change.total_tokens_processed = %s, want %s", got, want)
	}
	prev := m["previous_period"].(map[string]any)
	if prev["start"] != "2025-01-12T12:30:00Z" || prev["end"] != "2025-01-13T12:30:00Z" || prev["total_operations"] != 0.0 {
		t.Errorf("previous_period = %v", prev)
	}
	if _, ok := prev["trends"]; ok {
		t.Errorf("previous_period has trends")
	}
	for _, k := range []string{"api_cost_baseline", "savings_percentage", "total_tokens_processed", "breakdown_by_tool", "breakdown_by_mode"} {
		if _, ok := prev[k]; !ok {
			t.Errorf("previous_period lacks %s", k)
		}
	}
}

func TestCompareAPISavingsWithAnEmptyPreviousPeriod(t *testing.T) {
	rep := newReporter(t, compareNow,
		operation(compareNow.Add(-time.Hour), "claude-code", "read", "overview", 5000, 500))
	got, err := rep.CompareAPISavings(context.Background(), exporter.Range24h, "")
	if err != nil {
		t.Fatal(err)
	}
	want := api.SavingsChange{
		APICostBaseline:      api.Change[float64]{Absolute: 0.075},
		APICostActual:        api.Change[float64]{Absolute: 0.0075},
		TotalCostSaved:       api.Change[float64]{Absolute: 0.0675},
		SavingsPercentage:    api.Change[float64]{Absolute: 90},
		TotalTokensProcessed: api.Change[int64]{Absolute: 5000},
		TotalTokensPrevented: api.Change[int64]{Absolute: 4500},
		TotalOperations:      api.Change[int64]{Absolute: 1},
	}
	if !reflect.DeepEqual(*got.Change, want) {
		t.Errorf("change\n got %s\nwant %s", jsonOf(t, got.Change), jsonOf(t, want))
	}
	empty := api.PeriodSavings{BreakdownByMode: map[string]api.Savings{}}
	if !reflect.DeepEqual(got.PreviousPeriod.PeriodSavings, empty) {
		t.Errorf("previous period %+v, want zeros", got.PreviousPeriod.PeriodSavings)
	}

	// Nothing in either period: every change is 0, every percent null.
	got, err = newReporter(t, compareNow).CompareAPISavings(context.Background(), exporter.Range1h, "")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(*got.Change, api.SavingsChange{}) {
		t.Errorf("change of nothing: %s", jsonOf(t, got.Change))
	}
}

// TestCompareAPISavingsSplitsAtTheMicrosecond: with a clock that is not on
// a microsecond, an operation at the boundary's microsecond still counts in
// exactly one period.
func TestCompareAPISavingsSplitsAtTheMicrosecond(t *testing.T) {
	now := compareNow.Add(500 * time.Nanosecond)
	ops := []tsdb.Operation{
		operation(compareNow.Add(-time.Hour), "claude-code", "read", "full", 100, 0),
		operation(compareNow.Add(-time.Hour-time.Microsecond), "claude-code", "read", "full", 10, 0),
		operation(compareNow.Add(-2*time.Hour), "claude-code", "read", "full", 1, 0),
	}
	got, err := newReporter(t, now, ops...).CompareAPISavings(context.Background(), exporter.Range1h, "")
	if err != nil {
		t.Fatal(err)
	}
	if got.TotalTokensProcessed != 100 || got.PreviousPeriod.TotalTokensProcessed != 11 {
		t.Errorf("current %d, previous %d tokens; want 100 and 11", got.TotalTokensProcessed, got.PreviousPeriod.TotalTokensProcessed)
	}
	if api.FormatTime(got.PreviousPeriod.End) != "2025-01-14T11:30:00Z" || api.FormatTime(got.CalculatedAt) != "2025-01-14T12:30:00Z" {
		t.Errorf("end %s, calculated_at %s", got.PreviousPeriod.End, got.CalculatedAt)
	}
}

// TestCompareAPISavingsNegativeTotals: when operations cost more than their
// baseline the totals go negative. The change is still current - previous,
// and percent (current - previous) / |previous| * 100, so that its sign is
// always absolute's: from -100 to -200 is -100 %.
func TestCompareAPISavingsNegativeTotals(t *testing.T) {
	rep := newReporter(t, compareNow,
		operation(compareNow.Add(-30*time.Minute), "claude-code", "read", "full", 100, 300),
		operation(compareNow.Add(-90*time.Minute), "claude-code", "read", "full", 100, 200))
	got, err := rep.CompareAPISavings(context.Background(), exporter.Range1h, "")
	if err != nil {
		t.Fatal(err)
	}
	want := api.Change[int64]{Absolute: -100, Percent: pct(-100)}
	if !reflect.DeepEqual(got.Change.TotalTokensPrevented, want) {
		t.Errorf("prevented change %s, want %s", jsonOf(t, got.Change.TotalTokensPrevented), jsonOf(t, want))
	}
	if got.Change.SavingsPercentage.Absolute != -100 || *got.Change.SavingsPercentage.Percent != -100 {
		t.Errorf("savings percentage change %s", jsonOf(t, got.Change.SavingsPercentage))
	}
}

func TestCompareAPISavingsNeedsABoundedRange(t *testing.T) {
	_, err := newReporter(t, compareNow).CompareAPISavings(context.Background(), exporter.RangeAll, "")
	if !errors.Is(err, exporter.ErrUnboundedRange) {
		t.Errorf("compare over all: %v, want ErrUnboundedRange", err)
	}
}

func jsonOf(t *testing.T, v any) string {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}
