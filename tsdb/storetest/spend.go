package storetest

import (
	"math"
	"math/rand"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/omnimemory/omnimemory-metrics/tsdb"
)

// RunSpend runs the spend cases against stores from newStore (fresh and
// empty, cleaned up through t.Cleanup).
func RunSpend(t *testing.T, newStore func(t *testing.T) tsdb.SpendStore) {
	t.Helper()
	runCases(t, newStore, []testCase[tsdb.SpendStore]{
		{"Spend/BreakdownHandComputed", testSpendBreakdownHand},
		{"Spend/RetryStoredOnce", testSpendRetry},
		{"Spend/WindowEdgesAndTool", testSpendEdges},
		{"Spend/Empty", testSpendEmpty},
		{"Spend/Trend", testSpendTrend},
		{"Spend/RandomizedEquivalence", testSpendRandomized},
	})
}

// spend is a spend point of a fresh random id.
func (g *ids) spend(tool, model string, when time.Time, cost float64, tok tsdb.Tokens) tsdb.SpendPoint {
	return tsdb.SpendPoint{ID: g.next(), ToolID: tool, Model: model, Time: when, CostUSD: cost, Tokens: tok}
}

func writeSpend(t *testing.T, s tsdb.SpendStore, points ...tsdb.SpendPoint) {
	t.Helper()
	if err := s.WriteSpend(t.Context(), points); err != nil {
		t.Fatalf("WriteSpend: %v", err)
	}
}

func spendBreakdown(t *testing.T, s tsdb.SpendStore, w tsdb.Window) []tsdb.SpendTotals {
	t.Helper()
	got, err := s.SpendBreakdown(t.Context(), w)
	if err != nil {
		t.Fatalf("SpendBreakdown: %v", err)
	}
	if got == nil {
		t.Fatal("SpendBreakdown answered nil, want a non-nil slice")
	}
	slices.SortFunc(got, func(a, b tsdb.SpendTotals) int {
		return strings.Compare(a.ToolID+"\x00"+a.Model, b.ToolID+"\x00"+b.Model)
	})
	return got
}

// sameSpend reports whether two totals agree: counts exactly, dollars to
// 1e-9 relative (sums of floats in another order).
func sameSpend(a, b tsdb.SpendTotals) bool {
	return a.ToolID == b.ToolID && a.Model == b.Model && a.Points == b.Points && a.Tokens == b.Tokens && nearUSD(a.CostUSD, b.CostUSD)
}

func nearUSD(a, b float64) bool { return math.Abs(a-b) <= 1e-9*math.Max(1, math.Abs(b)) }

func checkSpendBreakdown(t *testing.T, s tsdb.SpendStore, w tsdb.Window, want []tsdb.SpendTotals) {
	t.Helper()
	got := spendBreakdown(t, s, w)
	slices.SortFunc(want, func(a, b tsdb.SpendTotals) int {
		return strings.Compare(a.ToolID+"\x00"+a.Model, b.ToolID+"\x00"+b.Model)
	})
	if !slices.EqualFunc(got, want, sameSpend) {
		t.Errorf("SpendBreakdown(%s):\n got %+v\nwant %+v", describe(w), got, want)
	}
}

func describe(w tsdb.Window) string {
	s := "tool " + w.ToolID + " to " + w.End.Format(time.RFC3339Nano)
	if w.Start != nil {
		s = "from " + w.Start.Format(time.RFC3339Nano) + " " + s
	}
	return s
}

func testSpendBreakdownHand(t *testing.T, s tsdb.SpendStore) {
	g := newIDs(101)
	session := uuid.MustParse("123e4567-e89b-12d3-a456-426614174000")
	p := g.spend("claude-code", "claude-sonnet-4", at(10, 0, 0, 0), 0.25, tsdb.Tokens{Input: 1000, Output: 200})
	p.SessionID = &session
	writeSpend(t, s,
		p,
		g.spend("claude-code", "claude-sonnet-4", at(11, 30, 0, 7), 0.5, tsdb.Tokens{CacheRead: 5000, CacheCreation: 300}),
		g.spend("claude-code", "claude-haiku", at(12, 0, 0, 0), 0.01, tsdb.Tokens{Input: 50, Output: 5}),
		g.spend("cursor", "", at(9, 0, 0, 0), 0, tsdb.Tokens{Input: 7}),
	)
	writeSpend(t, s, g.spend("cursor", "gpt-5", at(13, 0, 0, 0), 1.125, tsdb.Tokens{}))
	checkSpendBreakdown(t, s, tsdb.Window{End: at(23, 0, 0, 0)}, []tsdb.SpendTotals{
		{ToolID: "claude-code", Model: "claude-sonnet-4", Points: 2, CostUSD: 0.75, Tokens: tsdb.Tokens{Input: 1000, Output: 200, CacheRead: 5000, CacheCreation: 300}},
		{ToolID: "claude-code", Model: "claude-haiku", Points: 1, CostUSD: 0.01, Tokens: tsdb.Tokens{Input: 50, Output: 5}},
		{ToolID: "cursor", Model: "", Points: 1, Tokens: tsdb.Tokens{Input: 7}},
		{ToolID: "cursor", Model: "gpt-5", Points: 1, CostUSD: 1.125},
	})
}

func testSpendRetry(t *testing.T, s tsdb.SpendStore) {
	g := newIDs(102)
	a := g.spend("claude-code", "m", at(10, 0, 0, 0), 1, tsdb.Tokens{Input: 10})
	b := g.spend("claude-code", "m", at(10, 0, 1, 0), 2, tsdb.Tokens{Input: 20})
	writeSpend(t, s, a)
	// A retried export: a again, next to a new point and a second copy of it.
	batch := []tsdb.SpendPoint{a, b, b}
	if err := s.WriteSpend(t.Context(), batch); err != nil {
		t.Fatal(err)
	}
	if !batch[0].Duplicate || batch[1].Duplicate || !batch[2].Duplicate {
		t.Errorf("Duplicate marks %v %v %v, want true false true", batch[0].Duplicate, batch[1].Duplicate, batch[2].Duplicate)
	}
	checkSpendBreakdown(t, s, tsdb.Window{End: at(23, 0, 0, 0)}, []tsdb.SpendTotals{
		{ToolID: "claude-code", Model: "m", Points: 2, CostUSD: 3, Tokens: tsdb.Tokens{Input: 30}},
	})
}

func testSpendEdges(t *testing.T, s tsdb.SpendStore) {
	g := newIDs(103)
	one := tsdb.Tokens{Input: 1}
	writeSpend(t, s,
		g.spend("claude-code", "m", at(9, 59, 59, 999999), 1, one), // before
		g.spend("claude-code", "m", at(10, 0, 0, 0), 2, one),       // at the start: in
		g.spend("claude-code", "m", at(14, 0, 0, 0), 4, one),       // at the end: in
		g.spend("claude-code", "m", at(14, 0, 0, 1), 8, one),       // after
		g.spend("cursor", "m", at(12, 0, 0, 0), 16, one),           // another tool
	)
	w := tsdb.Window{ToolID: "claude-code", Start: ptr(at(10, 0, 0, 0)), End: at(14, 0, 0, 0)}
	checkSpendBreakdown(t, s, w, []tsdb.SpendTotals{{ToolID: "claude-code", Model: "m", Points: 2, CostUSD: 6, Tokens: tsdb.Tokens{Input: 2}}})
	w.ToolID = ""
	checkSpendBreakdown(t, s, w, []tsdb.SpendTotals{
		{ToolID: "claude-code", Model: "m", Points: 2, CostUSD: 6, Tokens: tsdb.Tokens{Input: 2}},
		{ToolID: "cursor", Model: "m", Points: 1, CostUSD: 16, Tokens: tsdb.Tokens{Input: 1}},
	})
	w.Start = nil
	checkSpendBreakdown(t, s, w, []tsdb.SpendTotals{
		{ToolID: "claude-code", Model: "m", Points: 3, CostUSD: 7, Tokens: tsdb.Tokens{Input: 3}},
		{ToolID: "cursor", Model: "m", Points: 1, CostUSD: 16, Tokens: tsdb.Tokens{Input: 1}},
	})
}

func testSpendEmpty(t *testing.T, s tsdb.SpendStore) {
	w := tsdb.Window{End: at(23, 0, 0, 0)}
	if got := spendBreakdown(t, s, w); len(got) != 0 {
		t.Errorf("empty store: SpendBreakdown %+v", got)
	}
	got, err := s.SpendTrend(t.Context(), w, tsdb.Hourly)
	if err != nil || got == nil || len(got) != 0 {
		t.Errorf("empty store: SpendTrend %+v, %v; want an empty, non-nil slice", got, err)
	}
	if err := s.WriteSpend(t.Context(), nil); err != nil {
		t.Errorf("WriteSpend(nil): %v", err)
	}
}

func testSpendTrend(t *testing.T, s tsdb.SpendStore) {
	g := newIDs(104)
	writeSpend(t, s,
		g.spend("claude-code", "m", at(10, 0, 0, 0), 1, tsdb.Tokens{Input: 1}),
		g.spend("claude-code", "n", at(10, 59, 59, 999999), 2, tsdb.Tokens{Output: 2}),
		g.spend("cursor", "m", at(12, 30, 0, 0), 4, tsdb.Tokens{CacheRead: 4}),
		g.spend("cursor", "m", base.Add(26*time.Hour), 8, tsdb.Tokens{CacheCreation: 8}),
	)
	w := tsdb.Window{Start: ptr(at(10, 30, 0, 0)), End: base.Add(48 * time.Hour)}
	hourly, err := s.SpendTrend(t.Context(), w, tsdb.Hourly)
	if err != nil {
		t.Fatal(err)
	}
	want := []tsdb.SpendBucket{
		{Start: at(10, 0, 0, 0), CostUSD: 2, Tokens: tsdb.Tokens{Output: 2}},
		{Start: at(12, 0, 0, 0), CostUSD: 4, Tokens: tsdb.Tokens{CacheRead: 4}},
		{Start: base.Add(26 * time.Hour), CostUSD: 8, Tokens: tsdb.Tokens{CacheCreation: 8}},
	}
	checkBuckets(t, "hourly", hourly, want)
	daily, err := s.SpendTrend(t.Context(), tsdb.Window{End: base.Add(48 * time.Hour)}, tsdb.Daily)
	if err != nil {
		t.Fatal(err)
	}
	checkBuckets(t, "daily", daily, []tsdb.SpendBucket{
		{Start: base, CostUSD: 7, Tokens: tsdb.Tokens{Input: 1, Output: 2, CacheRead: 4}},
		{Start: base.Add(24 * time.Hour), CostUSD: 8, Tokens: tsdb.Tokens{CacheCreation: 8}},
	})
}

func checkBuckets(t *testing.T, what string, got, want []tsdb.SpendBucket) {
	t.Helper()
	if !slices.EqualFunc(got, want, func(a, b tsdb.SpendBucket) bool {
		return a.Start.Equal(b.Start) && a.Tokens == b.Tokens && nearUSD(a.CostUSD, b.CostUSD)
	}) {
		t.Errorf("%s SpendTrend:\n got %+v\nwant %+v", what, got, want)
	}
}

// testSpendRandomized writes points over 40 days in batches and compares
// every answer for random windows with sums computed here.
func testSpendRandomized(t *testing.T, s tsdb.SpendStore) {
	g := newIDs(105)
	r := rand.New(rand.NewSource(105))
	tools, models := []string{"claude-code", "cursor", "codex"}, []string{"", "a", "b"}
	var all []tsdb.SpendPoint
	for range 600 {
		when := base.Add(time.Duration(r.Int63n(int64(40 * 24 * time.Hour)))).Truncate(time.Microsecond)
		all = append(all, g.spend(tools[r.Intn(3)], models[r.Intn(3)], when, float64(r.Intn(1000))/64,
			tsdb.Tokens{Input: r.Int63n(5000), Output: r.Int63n(500), CacheRead: r.Int63n(20000), CacheCreation: r.Int63n(100)}))
	}
	for i := 0; i < len(all); i += 50 {
		writeSpend(t, s, all[i:min(i+50, len(all))]...)
	}
	for range 25 {
		lo := base.Add(time.Duration(r.Int63n(int64(40 * 24 * time.Hour)))).Truncate(time.Microsecond)
		w := tsdb.Window{End: lo.Add(time.Duration(r.Int63n(int64(20 * 24 * time.Hour)))).Truncate(time.Microsecond)}
		if r.Intn(4) > 0 {
			w.Start = &lo
		}
		if r.Intn(3) == 0 {
			w.ToolID = tools[r.Intn(3)]
		}
		want, wantTrend := bruteSpend(all, w, tsdb.Daily)
		checkSpendBreakdown(t, s, w, want)
		got, err := s.SpendTrend(t.Context(), w, tsdb.Daily)
		if err != nil {
			t.Fatal(err)
		}
		checkBuckets(t, "daily "+describe(w), got, wantTrend)
	}
}

// bruteSpend sums the points of all in w by (tool id, model) and by step
// bucket, oldest first.
func bruteSpend(all []tsdb.SpendPoint, w tsdb.Window, step tsdb.Step) ([]tsdb.SpendTotals, []tsdb.SpendBucket) {
	sums := map[[2]string]*tsdb.SpendTotals{}
	buckets := map[time.Time]*tsdb.SpendBucket{}
	for _, p := range all {
		if (w.Start != nil && p.Time.Before(*w.Start)) || p.Time.After(w.End) || (w.ToolID != "" && p.ToolID != w.ToolID) {
			continue
		}
		k := [2]string{p.ToolID, p.Model}
		if sums[k] == nil {
			sums[k] = &tsdb.SpendTotals{ToolID: p.ToolID, Model: p.Model}
		}
		sums[k].Points++
		sums[k].CostUSD += p.CostUSD
		sums[k].Tokens.Add(p.Tokens)
		b := step.Truncate(p.Time)
		if buckets[b] == nil {
			buckets[b] = &tsdb.SpendBucket{Start: b}
		}
		buckets[b].CostUSD += p.CostUSD
		buckets[b].Tokens.Add(p.Tokens)
	}
	totals := []tsdb.SpendTotals{}
	for _, v := range sums {
		totals = append(totals, *v)
	}
	trend := []tsdb.SpendBucket{}
	for _, b := range buckets {
		trend = append(trend, *b)
	}
	slices.SortFunc(trend, func(a, b tsdb.SpendBucket) int { return a.Start.Compare(b.Start) })
	return totals, trend
}
