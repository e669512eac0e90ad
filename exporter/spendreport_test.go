package exporter_test

import (
	"context"
	"math"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/omnimemory/omnimemory-metrics/client/api"
	"github.com/omnimemory/omnimemory-metrics/exporter"
	"github.com/omnimemory/omnimemory-metrics/tsdb"
	"github.com/omnimemory/omnimemory-metrics/tsdb/sqlite"
)

// spendReporter answers a Reporter at 0.015 USD per 1,000 tokens over a
// real SQLite store holding ops and points, with the clock at now.
func spendReporter(t *testing.T, now time.Time, ops []tsdb.Operation, points []tsdb.SpendPoint) *exporter.Reporter {
	t.Helper()
	store, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "m.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	if err := store.WriteOperations(context.Background(), ops); err != nil {
		t.Fatal(err)
	}
	if err := store.WriteSpend(context.Background(), points); err != nil {
		t.Fatal(err)
	}
	return exporter.NewReporter(store, exporter.Pricing{PerThousandUSD: 0.015}, func() time.Time { return now })
}

func spendPoint(at time.Time, tool, model string, cost float64, tok tsdb.Tokens) tsdb.SpendPoint {
	return tsdb.SpendPoint{ID: uuid.New(), ToolID: tool, Model: model, Time: at, CostUSD: cost, Tokens: tok}
}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

// TestSpendBesideSavings checks every figure of the spend answer against
// sums made by hand: spent and saved in the same window, the share, per
// model and tool, and trend buckets that sum to the totals.
func TestSpendBesideSavings(t *testing.T) {
	now := compareNow // 2025-01-14 12:30
	day := time.Date(2025, 1, 14, 0, 0, 0, 0, time.UTC)
	rep := spendReporter(t, now,
		[]tsdb.Operation{
			operation(day.Add(10*time.Hour), "claude-code", "read", "overview", 10000, 1000), // saves 0.135
			operation(day.Add(11*time.Hour), "cursor", "search", "semantic", 2000, 200),      // saves 0.027
		},
		[]tsdb.SpendPoint{
			spendPoint(day.Add(10*time.Hour+5*time.Minute), "claude-code", "sonnet", 0.5, tsdb.Tokens{Input: 1000, Output: 100}),
			spendPoint(day.Add(11*time.Hour+10*time.Minute), "claude-code", "sonnet", 0.25, tsdb.Tokens{CacheRead: 2000}),
			spendPoint(day.Add(12*time.Hour), "claude-code", "", 0.015, tsdb.Tokens{CacheCreation: 10}),
			spendPoint(day.Add(9*time.Hour), "codex", "gpt", 1, tsdb.Tokens{Input: 5}),
			spendPoint(day.Add(-4*24*time.Hour), "codex", "gpt", 2, tsdb.Tokens{Output: 7}), // only in "all"
		})
	ctx := context.Background()

	got, err := rep.Spend(ctx, exporter.Range24h, "")
	if err != nil {
		t.Fatal(err)
	}
	if !near(got.CostSpentUSD, 1.765) || !near(got.CostSavedUSD, 0.162) || got.SavingsSharePercentage != 8.41 {
		t.Errorf("spent %v saved %v share %v; want 1.765, 0.162, 8.41", got.CostSpentUSD, got.CostSavedUSD, got.SavingsSharePercentage)
	}
	if want := (api.SpendTokens{Input: 1005, Output: 100, CacheRead: 2000, CacheCreation: 10}); got.Tokens != want {
		t.Errorf("tokens %+v, want %+v", got.Tokens, want)
	}
	wantModels := map[string]api.ModelSpend{
		"sonnet":         {CostUSD: 0.75, SpendTokens: api.SpendTokens{Input: 1000, Output: 100, CacheRead: 2000}},
		api.UnknownModel: {CostUSD: 0.015, SpendTokens: api.SpendTokens{CacheCreation: 10}},
		"gpt":            {CostUSD: 1, SpendTokens: api.SpendTokens{Input: 5}},
	}
	if len(got.ByModel) != len(wantModels) {
		t.Errorf("by_model %+v, want %+v", got.ByModel, wantModels)
	}
	for k, w := range wantModels {
		if g := got.ByModel[k]; !near(g.CostUSD, w.CostUSD) || g.SpendTokens != w.SpendTokens {
			t.Errorf("by_model[%s] = %+v, want %+v", k, g, w)
		}
	}
	wantTools := map[string]api.ToolSpend{"claude-code": {CostSpentUSD: 0.765, CostSavedUSD: 0.135}, "codex": {CostSpentUSD: 1}}
	if len(got.ByTool) != len(wantTools) {
		t.Errorf("by_tool %+v, want %+v", got.ByTool, wantTools)
	}
	for k, w := range wantTools {
		if g := got.ByTool[k]; !near(g.CostSpentUSD, w.CostSpentUSD) || !near(g.CostSavedUSD, w.CostSavedUSD) {
			t.Errorf("by_tool[%s] = %+v, want %+v", k, g, w)
		}
	}
	checkSpendTrends(t, "24h", got, 25, time.Date(2025, 1, 13, 12, 0, 0, 0, time.UTC))
	for _, p := range got.Trends {
		if p.Timestamp.Equal(day.Add(10*time.Hour)) && (!near(p.CostSpentUSD, 0.5) || !near(p.CostSavedUSD, 0.135)) {
			t.Errorf("bucket 10:00: %+v, want spent 0.5 and saved 0.135", p)
		}
	}

	// "all" reaches back to the spend before the first operation.
	all, err := rep.Spend(ctx, exporter.RangeAll, "")
	if err != nil {
		t.Fatal(err)
	}
	if !near(all.CostSpentUSD, 3.765) {
		t.Errorf("all: spent %v, want 3.765", all.CostSpentUSD)
	}
	checkSpendTrends(t, "all", all, 5, day.Add(-4*24*time.Hour))

	// One tool, one hour: its spend, no savings, a share of 0.
	one, err := rep.Spend(ctx, exporter.Range1h, "claude-code")
	if err != nil {
		t.Fatal(err)
	}
	if !near(one.CostSpentUSD, 0.015) || one.CostSavedUSD != 0 || one.SavingsSharePercentage != 0 ||
		len(one.ByTool) != 1 || !near(one.ByTool["claude-code"].CostSpentUSD, 0.015) {
		t.Errorf("1h of claude-code: %+v", one)
	}
}

// checkSpendTrends checks the number and first start of the buckets, and
// that they sum to the answer's totals.
func checkSpendTrends(t *testing.T, name string, s api.Spend, n int, first time.Time) {
	t.Helper()
	if len(s.Trends) != n || !s.Trends[0].Timestamp.Equal(first) {
		t.Fatalf("%s: %d buckets from %v, want %d from %v", name, len(s.Trends), s.Trends[0].Timestamp, n, first)
	}
	var spent, saved float64
	for _, p := range s.Trends {
		spent += p.CostSpentUSD
		saved += p.CostSavedUSD
	}
	if !near(spent, s.CostSpentUSD) || !near(saved, s.CostSavedUSD) {
		t.Errorf("%s: buckets sum to spent %v saved %v; totals %v and %v", name, spent, saved, s.CostSpentUSD, s.CostSavedUSD)
	}
}
