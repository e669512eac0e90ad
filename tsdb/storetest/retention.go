package storetest

import (
	"fmt"
	"math/rand"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/omnimemory/omnimemory-metrics/client/api"
	"github.com/omnimemory/omnimemory-metrics/tsdb"
)

// RetentionStore is a store that expires raw rows (tsdb.Expirer).
type RetentionStore interface {
	tsdb.Store
	tsdb.Expirer
}

// RunRetention runs the retention cases against stores from newStore
// (fresh and empty, cleaned up through t.Cleanup): after raw operations and
// spend points are expired, every aggregate still answers what it answered
// before (windows of whole hours; an edge inside an expired hour counts
// that hour whole), and lists and exports no longer hold them.
func RunRetention(t *testing.T, newStore func(t *testing.T) RetentionStore) {
	t.Helper()
	runCases(t, newStore, []testCase[RetentionStore]{
		{"Retention/AggregatesUnchanged", testRetentionAggregates},
		{"Retention/ListsOnlyWhatRemains", testRetentionLists},
		{"Retention/HorizonOnTheHourNeverBack", testRetentionHorizon},
		{"Retention/LateWriteBeforeHorizon", testRetentionLateWrite},
		{"Retention/SessionTotalsKept", testRetentionSessions},
	})
}

// retentionData is 2,000 operations and 400 spend points over 40 days from
// 2024-12-10 (two months, so a store that partitions by month has a month
// wholly before the cutoff below), some at hour and day boundaries.
func retentionData(g *ids, r *rand.Rand) ([]tsdb.Operation, []tsdb.SpendPoint) {
	from := time.Date(2024, 12, 10, 0, 0, 0, 0, time.UTC)
	span := int64(40 * 24 * time.Hour / time.Microsecond)
	randTime := func() time.Time {
		t := from.Add(time.Duration(r.Int63n(span)) * time.Microsecond)
		switch r.Intn(10) {
		case 0:
			return t.Truncate(time.Hour)
		case 1:
			return t.Truncate(time.Hour).Add(-time.Microsecond)
		}
		return t
	}
	toolIDs := []string{"claude-code", "cursor", "windsurf"}
	sessions := make([]uuid.UUID, 12)
	for i := range sessions {
		sessions[i] = g.next()
	}
	ops := make([]tsdb.Operation, 2000)
	for i := range ops {
		orig, act := r.Int63n(20000), r.Int63n(20000)
		ops[i] = g.mk(opSpec{
			session: sessions[r.Intn(len(sessions))],
			tool:    api.ToolNames[r.Intn(len(api.ToolNames))],
			mode:    api.OperationModes[r.Intn(len(api.OperationModes))],
			toolID:  toolIDs[r.Intn(len(toolIDs))],
			at:      randTime(), orig: orig, act: act,
			rt: float64(r.Intn(40000)) / 8, // exact binary fractions: sums do not round
		})
	}
	points := make([]tsdb.SpendPoint, 400)
	for i := range points {
		points[i] = g.spend(toolIDs[r.Intn(len(toolIDs))], []string{"", "a", "b"}[r.Intn(3)], randTime(),
			float64(r.Intn(1000))/64, tsdb.Tokens{Input: r.Int63n(5000), Output: r.Int63n(500), CacheRead: r.Int63n(20000)})
	}
	return ops, points
}

// retentionCutoff is the cutoff the cases expire with: past the whole of
// December 2024, in the middle of an hour.
var retentionCutoff = time.Date(2025, 1, 5, 10, 37, 12, 345678, time.UTC)

// ExpireAll calls s.ExpireBefore with batches of batch until it has no
// more, checking that no call deletes more than batch rows, and answers
// what it deleted in all and the horizon.
func ExpireAll(t *testing.T, s tsdb.Expirer, cutoff time.Time, batch int) tsdb.Expiry {
	t.Helper()
	var sum tsdb.Expiry
	for calls := 1; ; calls++ {
		ex, err := s.ExpireBefore(t.Context(), cutoff, batch)
		if err != nil {
			t.Fatalf("ExpireBefore(%s, %d), call %d: %v", cutoff.Format(time.RFC3339Nano), batch, calls, err)
		}
		if n := ex.Operations + ex.SpendPoints; n > batch {
			t.Fatalf("ExpireBefore(batch %d) deleted %d rows", batch, n)
		}
		sum.Operations += ex.Operations
		sum.SpendPoints += ex.SpendPoints
		sum.Horizon = ex.Horizon
		if !ex.More {
			return sum
		}
		if calls > 10000 {
			t.Fatalf("ExpireBefore still has more after %d calls", calls)
		}
	}
}

// kept answers the operations at or after the horizon.
func kept(ops []tsdb.Operation, horizon time.Time) []tsdb.Operation {
	return slices.DeleteFunc(slices.Clone(ops), func(op tsdb.Operation) bool { return op.CreatedAt.Before(horizon) })
}

// retentionWindows are windows over the data of retentionData: random ones,
// and as many whose edges are on whole hours.
func retentionWindows(r *rand.Rand) (whole, windows []tsdb.Window) {
	from := time.Date(2024, 12, 9, 0, 0, 0, 0, time.UTC)
	end := time.Date(2025, 1, 21, 0, 0, 0, 0, time.UTC)
	toolIDs := []string{"", "", "cursor"}
	whole = []tsdb.Window{{End: end}, {ToolID: "cursor", End: end}, {Start: ptr(from), End: end}}
	for range 40 {
		lo := from.Add(time.Duration(r.Int63n(int64(end.Sub(from))))).Truncate(time.Microsecond)
		hi := lo.Add(time.Duration(r.Int63n(int64(10 * 24 * time.Hour)))).Truncate(time.Microsecond)
		w := tsdb.Window{ToolID: toolIDs[r.Intn(3)], Start: &lo, End: hi}
		windows = append(windows, w)
		ws, we := lo.Truncate(time.Hour), hi.Truncate(time.Hour).Add(-time.Microsecond)
		if we.After(ws) {
			whole = append(whole, tsdb.Window{ToolID: w.ToolID, Start: &ws, End: we})
		}
	}
	return whole, windows
}

// aggregateAnswers are every aggregate of a store over one window.
type aggregateAnswers struct {
	breakdown     []tsdb.ModeTotals
	hourly, daily []tsdb.Bucket
	spend         []tsdb.SpendTotals
	spendHourly   []tsdb.SpendBucket
	spendDaily    []tsdb.SpendBucket
	groups        []tsdb.AggregateResult // of retentionGroupings, in order
}

// retentionGroupings are custom aggregations that rollups answer: over
// whole hours they answer alike before and after expiry.
var retentionGroupings = [][]tsdb.Dimension{
	{tsdb.DimToolName, tsdb.DimOperationMode},
	{tsdb.DimToolID, tsdb.DimDay},
	{tsdb.DimHour},
}

// groupsOf answers s's aggregation by dims over w, every group.
func groupsOf(t *testing.T, s tsdb.Store, w tsdb.Window, dims []tsdb.Dimension) tsdb.AggregateResult {
	t.Helper()
	end := w.End
	got, err := s.Aggregate(t.Context(), tsdb.AggregateQuery{GroupBy: dims, Filter: tsdb.OperationFilter{Start: w.Start, End: &end}, Order: tsdb.OrderByKey, Limit: 1000})
	if err != nil {
		t.Fatalf("Aggregate(%v, %s): %v", dims, fmtWindow(w), err)
	}
	return got
}

func answersOf(t *testing.T, s tsdb.Store, w tsdb.Window) aggregateAnswers {
	t.Helper()
	var a aggregateAnswers
	var err error
	if a.breakdown, err = s.Breakdown(t.Context(), w); err != nil {
		t.Fatalf("Breakdown(%s): %v", fmtWindow(w), err)
	}
	sortModes(a.breakdown)
	if a.hourly, err = s.Trend(t.Context(), w, tsdb.Hourly); err != nil {
		t.Fatalf("Trend(%s): %v", fmtWindow(w), err)
	}
	if a.daily, err = s.Trend(t.Context(), w, tsdb.Daily); err != nil {
		t.Fatalf("Trend(%s): %v", fmtWindow(w), err)
	}
	a.spend = spendBreakdown(t, s, w)
	if a.spendHourly, err = s.SpendTrend(t.Context(), w, tsdb.Hourly); err != nil {
		t.Fatalf("SpendTrend(%s): %v", fmtWindow(w), err)
	}
	if a.spendDaily, err = s.SpendTrend(t.Context(), w, tsdb.Daily); err != nil {
		t.Fatalf("SpendTrend(%s): %v", fmtWindow(w), err)
	}
	for _, dims := range retentionGroupings {
		a.groups = append(a.groups, groupsOf(t, s, w, dims))
	}
	return a
}

// checkAnswers compares every aggregate of s over w with want.
func checkAnswers(t *testing.T, s tsdb.Store, w tsdb.Window, want aggregateAnswers) {
	t.Helper()
	checkBreakdown(t, s, w, want.breakdown)
	checkTrend(t, s, w, tsdb.Hourly, want.hourly)
	checkTrend(t, s, w, tsdb.Daily, want.daily)
	checkSpendBreakdown(t, s, w, want.spend)
	for _, st := range []struct {
		step tsdb.Step
		want []tsdb.SpendBucket
	}{{tsdb.Hourly, want.spendHourly}, {tsdb.Daily, want.spendDaily}} {
		got, err := s.SpendTrend(t.Context(), w, st.step)
		if err != nil {
			t.Fatalf("SpendTrend(%s): %v", fmtWindow(w), err)
		}
		checkBuckets(t, st.step.String()+" "+fmtWindow(w), got, st.want)
	}
}

// testRetentionAggregates: answers over windows of whole hours are the
// same before and after expiry, and any window answers the sums of the
// window with its expired edge hours counted whole (tsdb.HorizonWindow).
func testRetentionAggregates(t *testing.T, s RetentionStore) {
	const seed = 20250105
	r := rand.New(rand.NewSource(seed))
	ops, points := retentionData(newIDs(seed), r)
	writeBatches(t, s, ops, 250)
	for i := 0; i < len(points); i += 100 {
		writeSpend(t, s, points[i:i+100]...)
	}
	whole, windows := retentionWindows(r)
	before := make([]aggregateAnswers, len(whole))
	for i, w := range whole {
		before[i] = answersOf(t, s, w)
	}

	horizon := retentionCutoff.Truncate(time.Hour)
	var wantOps, wantPoints int
	for _, op := range ops {
		if op.CreatedAt.Before(horizon) {
			wantOps++
		}
	}
	for _, p := range points {
		if p.Time.Before(horizon) {
			wantPoints++
		}
	}
	got := ExpireAll(t, s, retentionCutoff, 97)
	if got.Operations != wantOps || got.SpendPoints != wantPoints || !got.Horizon.Equal(horizon) {
		t.Fatalf("expiry deleted %d operations and %d spend points with horizon %s; want %d, %d, %s",
			got.Operations, got.SpendPoints, got.Horizon.Format(time.RFC3339), wantOps, wantPoints, horizon.Format(time.RFC3339))
	}
	if wantOps < 1000 || wantOps == len(ops) {
		t.Fatalf("the cutoff expires %d of %d operations: the case needs both kinds", wantOps, len(ops))
	}

	for i, w := range whole {
		checkAnswers(t, s, w, before[i])
		for j, dims := range retentionGroupings {
			if got := groupsOf(t, s, w, dims); !reflect.DeepEqual(got, before[i].groups[j]) {
				t.Errorf("Aggregate(%v, %s) after expiry:\n%+v\nbefore:\n%+v", dims, fmtWindow(w), got, before[i].groups[j])
			}
		}
		if t.Failed() {
			t.Fatalf("seed %d: whole-hour window %s answers otherwise after expiry", seed, fmtWindow(w))
		}
	}
	for _, w := range windows {
		hw := tsdb.HorizonWindow(w, horizon.UnixMicro())
		want := aggregateAnswers{
			breakdown: bruteBreakdown(ops, hw),
			hourly:    bruteTrend(ops, hw, tsdb.Hourly),
			daily:     bruteTrend(ops, hw, tsdb.Daily),
		}
		want.spend, want.spendDaily = bruteSpend(points, hw, tsdb.Daily)
		_, want.spendHourly = bruteSpend(points, hw, tsdb.Hourly)
		checkAnswers(t, s, w, want)
		if t.Failed() {
			t.Fatalf("seed %d: window %s does not answer the sums of %s", seed, fmtWindow(w), fmtWindow(hw))
		}
	}

	// The oldest operation is gone: its hour answers for it.
	first := slices.MinFunc(ops, func(a, b tsdb.Operation) int { return a.CreatedAt.Compare(b.CreatedAt) })
	if ts, ok, err := s.FirstOperationTime(t.Context(), ""); err != nil || !ok || !ts.Equal(first.CreatedAt.Truncate(time.Hour)) {
		t.Errorf("FirstOperationTime after expiry = %v, %v, %v; want the hour of the oldest operation, %v", ts, ok, err,
			first.CreatedAt.Truncate(time.Hour))
	}
}

// testRetentionLists: the list, its totals and the export hold exactly the
// operations at or after the horizon, whatever the filter.
func testRetentionLists(t *testing.T, s RetentionStore) {
	const seed = 20250106
	r := rand.New(rand.NewSource(seed))
	ops, points := retentionData(newIDs(seed), r)
	writeBatches(t, s, ops, 500)
	writeSpend(t, s, points...)
	ex := ExpireAll(t, s, retentionCutoff, 500)
	remain := kept(ops, ex.Horizon)
	inside := retentionCutoff.Add(-3 * 24 * time.Hour)
	later := retentionCutoff.Add(2 * 24 * time.Hour)
	for _, f := range []tsdb.OperationFilter{
		{},
		{ToolName: api.ToolSearch},
		{ToolID: "cursor", OperationMode: "full"},
		{Start: &inside},
		{Start: &inside, End: &later, ToolID: "windsurf"},
		{End: &inside},
		{SessionID: &ops[0].SessionID},
	} {
		checkQuery(t, s, remain, f, 400)
		checkExport(t, s, remain, f)
	}
}

// testRetentionHorizon: the horizon is the cutoff's hour, an earlier cutoff
// moves it back never, and expiring again deletes nothing.
func testRetentionHorizon(t *testing.T, s RetentionStore) {
	g := newIDs(7)
	write(t, s,
		g.mk(opSpec{at: at(9, 59, 59, 999999)}),
		g.mk(opSpec{at: at(10, 0, 0, 0)}),
		g.mk(opSpec{at: at(10, 30, 0, 0)}),
	)
	ex, err := s.ExpireBefore(t.Context(), at(10, 45, 0, 0), 100)
	if err != nil {
		t.Fatal(err)
	}
	if !ex.Horizon.Equal(at(10, 0, 0, 0)) || ex.Operations != 1 || ex.SpendPoints != 0 || ex.More {
		t.Errorf("ExpireBefore(10:45) = %+v; want horizon 10:00, 1 operation deleted, no more", ex)
	}
	ex, err = s.ExpireBefore(t.Context(), at(2, 0, 0, 0), 100)
	if err != nil {
		t.Fatal(err)
	}
	if !ex.Horizon.Equal(at(10, 0, 0, 0)) || ex.Operations != 0 {
		t.Errorf("ExpireBefore(02:00) after ExpireBefore(10:45) = %+v; want the horizon left at 10:00, nothing deleted", ex)
	}
	page, err := s.QueryOperations(t.Context(), tsdb.OperationFilter{Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if page.Total != 2 || len(page.Operations) != 2 {
		t.Errorf("after expiry: %d operations listed, total %d; want the 2 from 10:00", len(page.Operations), page.Total)
	}
}

// testRetentionLateWrite: an operation written with a created_at before the
// horizon counts in the aggregates at once and for good, and is listed
// until the next expiry deletes it.
func testRetentionLateWrite(t *testing.T, s RetentionStore) {
	g := newIDs(8)
	write(t, s, g.mk(opSpec{at: at(5, 0, 0, 0), orig: 100, act: 10}))
	ExpireAll(t, s, at(12, 0, 0, 0), 10)
	late := g.mk(opSpec{at: at(6, 15, 0, 0), orig: 50, act: 5})
	write(t, s, late)
	w := tsdb.Window{Start: ptr(at(0, 0, 0, 0)), End: at(23, 0, 0, 0)}
	want := []tsdb.ModeTotals{mt(api.ToolRead, "full", 2, 150, 15, 135, 0)}
	checkBreakdown(t, s, w, want)
	checkQuery(t, s, []tsdb.Operation{late}, tsdb.OperationFilter{}, 10)
	ex := ExpireAll(t, s, at(12, 0, 0, 0), 10)
	if ex.Operations != 1 {
		t.Errorf("expiring again deleted %d operations, want the late one", ex.Operations)
	}
	checkBreakdown(t, s, w, want)
	checkQuery(t, s, nil, tsdb.OperationFilter{}, 10)
}

// testRetentionSessions: a session and its running totals outlive its
// expired operations.
func testRetentionSessions(t *testing.T, s RetentionStore) {
	g := newIDs(9)
	sess := uuid.MustParse("6f1c1e2a-0000-4000-8000-00000000abcd")
	write(t, s,
		g.mk(opSpec{session: sess, at: at(5, 0, 0, 0), orig: 100, act: 10}),
		g.mk(opSpec{session: sess, tool: api.ToolSearch, mode: "semantic", at: at(6, 0, 0, 0), orig: 70, act: 7}),
		g.mk(opSpec{session: sess, at: at(20, 0, 0, 0), orig: 10, act: 1}),
	)
	before := getSession(t, s, sess)
	ExpireAll(t, s, at(12, 0, 0, 0), 10)
	after := getSession(t, s, sess)
	if after.TotalOperations != 3 || after.TokensSaved != 162 || after.TotalCompressions != 2 || after.TotalEmbeddings != 1 ||
		after.TotalOperations != before.TotalOperations || !after.StartedAt.Equal(before.StartedAt) {
		t.Errorf("session after expiry %+v; want its totals unchanged: %+v", after, before)
	}
	checkQuery(t, s, []tsdb.Operation{}, tsdb.OperationFilter{SessionID: &sess, End: ptr(at(12, 0, 0, 0))}, 10)
}

// Answers describes every answer of s that retention bears on, over each
// of windows: breakdowns, hourly and daily trends, spend, the total of the
// operations list from each window's start, and the first operation's time.
// Store tests compare two stores' descriptions (one that expired, one that
// planned its reads before the horizon moved).
func Answers(t *testing.T, s tsdb.Store, windows []tsdb.Window) string {
	t.Helper()
	var b strings.Builder
	for _, w := range windows {
		a := answersOf(t, s, w)
		fmt.Fprintf(&b, "%s:\n%s\n%s\n%s\n%+v\n%+v\n%+v\n", fmtWindow(w), fmtModes(a.breakdown), fmtBuckets(a.hourly),
			fmtBuckets(a.daily), a.spend, a.spendHourly, a.spendDaily)
		page, err := s.QueryOperations(t.Context(), tsdb.OperationFilter{Start: w.Start, ToolID: w.ToolID, Limit: 1})
		if err != nil {
			t.Fatalf("QueryOperations: %v", err)
		}
		fmt.Fprintf(&b, "listed %d\n", page.Total)
	}
	first, ok, err := s.FirstOperationTime(t.Context(), "")
	if err != nil {
		t.Fatalf("FirstOperationTime: %v", err)
	}
	fmt.Fprintf(&b, "first %v %v\n", first, ok)
	return b.String()
}
