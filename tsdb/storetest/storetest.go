// Package storetest is the conformance suite every tsdb.Store passes. A store's
// own tests call Run with a factory of fresh, empty stores:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) tsdb.Store { ... })
//	}
//
// The suite is store-agnostic: times are fixed dates in the past at
// microsecond precision, every window is explicit (nothing depends on the
// wall clock), and no subtest writes more than a few thousand operations.
package storetest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/omnimemory/omnimemory-metrics/client/api"

	"github.com/google/uuid"

	"github.com/omnimemory/omnimemory-metrics/tsdb"
)

// Run runs the whole suite. newStore must return a fresh, empty store and
// register its cleanup with t.Cleanup; every subtest gets its own store.
func Run(t *testing.T, newStore func(t *testing.T) tsdb.Store) {
	t.Helper()
	runCases(t, newStore, append(append([]testCase[tsdb.Store]{{"Ping", testPing}}, operationCases...), []testCase[tsdb.Store]{
		{"Export/MatchesQueryOldestFirst", testExportMatchesQuery},
		{"Export/TiesByIDAcrossPages", testExportTies},
		{"Export/StopsAtCallbackError", testExportCallbackError},
		{"Export/StopsWhenCancelled", testExportCancelled},
		{"Breakdown/HandComputed", testBreakdownHand},
		{"Breakdown/WindowEdges", testBreakdownEdges},
		{"Breakdown/EmptyWindow", testBreakdownEmpty},
		{"Trend/Hourly", testTrendHourly},
		{"Trend/Daily", testTrendDaily},
		{"Aggregates/RandomizedEquivalence", testRandomized},
		{"Aggregate/HandComputed", testAggregateHand},
		{"Aggregate/Empty", testAggregateEmpty},
		{"Aggregate/RandomizedEquivalence", testAggregateRandomized},
		{"Aggregate/FilesOverDays", testAggregateFilesOverDays},
		{"Aggregate/FilesAheadOfTheClock", testAggregateFilesAhead},
		{"FirstOperationTime", testFirstOperationTime},
		{"Sessions/CreateAndGet", testSessionCreateGet},
		{"Sessions/GetUnknown", testSessionGetUnknown},
		{"Sessions/ImplicitCreation", testSessionImplicit},
		{"Sessions/ImplicitStartsAtEarliestOperation", testImplicitStartsAtEarliest},
		{"Sessions/Totals", testSessionTotals},
		{"Sessions/Touch", testSessionTouch},
		{"Sessions/End", testSessionEnd},
		{"Sessions/OperationsNeverReopen", testSessionNoReopen},
		{"Sessions/FindOpen", testFindOpen},
		{"Sessions/Active", testActiveSessions},
	}...))
}

// operationCases are the cases of Run that write and list operations.
var operationCases = []testCase[tsdb.Store]{
	{"Operations/RoundTrip", testRoundTrip},
	{"Operations/EmptyWrite", testEmptyWrite},
	{"Operations/Filters", testFilters},
	{"Operations/OrderNewestFirstTiesByIDDesc", testOrder},
	{"Operations/Paging", testPaging},
	{"Operations/OffsetPastEnd", testOffsetPastEnd},
	{"Operations/IdenticalTimestampsAllKept", testIdenticalTimestamps},
	{"Operations/KeyedRetryStoredOnce", testKeyedRetry},
	{"Operations/CacheHitRoundTrip", testCacheHitRoundTrip},
}

// RunOperations runs the operation cases of Run: for a store that can
// list operations more than one way (InfluxDB: InfluxQL on 1.x, Flux on
// 2.x), so that each way is checked.
func RunOperations(t *testing.T, newStore func(t *testing.T) tsdb.Store) {
	t.Helper()
	runCases(t, newStore, operationCases)
}

// RunAggregates runs the aggregate cases of Run but the randomized custom
// aggregations (whose hundreds of queries the hand-computed ones and those
// over days stand for): for a store that can read its totals and
// operations more than one way (InfluxDB: InfluxQL on 1.x, Flux on 2.x),
// so that each way is checked.
func RunAggregates(t *testing.T, newStore func(t *testing.T) tsdb.Store) {
	t.Helper()
	runCases(t, newStore, []testCase[tsdb.Store]{
		{"Breakdown/HandComputed", testBreakdownHand},
		{"Breakdown/WindowEdges", testBreakdownEdges},
		{"Trend/Hourly", testTrendHourly},
		{"Trend/Daily", testTrendDaily},
		{"Aggregates/RandomizedEquivalence", testRandomized},
		{"Aggregate/HandComputed", testAggregateHand},
		{"Aggregate/FilesOverDays", testAggregateFilesOverDays},
		{"Aggregate/FilesAheadOfTheClock", testAggregateFilesAhead},
	})
}

// base is the fixed past instant most data hangs from (a Tuesday, UTC).
var base = time.Date(2025, 1, 14, 0, 0, 0, 0, time.UTC)

func at(h, m, s, us int) time.Time {
	return base.Add(time.Duration(h)*time.Hour + time.Duration(m)*time.Minute +
		time.Duration(s)*time.Second + time.Duration(us)*time.Microsecond)
}

func ptr[T any](v T) *T { return &v }

// ids is a deterministic UUID source, so failures reproduce.
type ids struct{ r *rand.Rand }

func newIDs(seed int64) *ids { return &ids{rand.New(rand.NewSource(seed))} }

func (g *ids) next() uuid.UUID {
	id, err := uuid.NewRandomFromReader(g.r)
	if err != nil {
		panic(err)
	}
	return id
}

// opSpec is the part of an operation a test cares about; mk fills the rest.
type opSpec struct {
	session   uuid.UUID
	tool      string
	mode      string
	toolID    string
	at        time.Time
	orig, act int64
	prev      *int64 // nil: orig - act
	rt        float64
}

func (g *ids) mk(sp opSpec) tsdb.Operation {
	prev := sp.orig - sp.act
	if sp.prev != nil {
		prev = *sp.prev
	}
	if sp.tool == "" {
		sp.tool = api.ToolRead
	}
	if sp.mode == "" {
		sp.mode = "full"
	}
	if sp.toolID == "" {
		sp.toolID = "claude-code"
	}
	if sp.session == uuid.Nil {
		sp.session = uuid.MustParse("6f1c1e2a-0000-4000-8000-000000000001")
	}
	return tsdb.Operation{
		ID:              g.next(),
		SessionID:       sp.session,
		ToolName:        sp.tool,
		OperationMode:   sp.mode,
		Parameters:      json.RawMessage(`{}`),
		TokensOriginal:  sp.orig,
		TokensActual:    sp.act,
		TokensPrevented: prev,
		ResponseTimeMs:  sp.rt,
		ToolID:          sp.toolID,
		CreatedAt:       sp.at,
	}
}

func write(t *testing.T, s tsdb.Store, ops ...tsdb.Operation) {
	t.Helper()
	if err := s.WriteOperations(t.Context(), ops); err != nil {
		t.Fatalf("WriteOperations(%d ops): %v", len(ops), err)
	}
}

// writeBatches writes ops in batches of n.
func writeBatches(t *testing.T, s tsdb.Store, ops []tsdb.Operation, n int) {
	t.Helper()
	for i := 0; i < len(ops); i += n {
		write(t, s, ops[i:min(i+n, len(ops))]...)
	}
}

// ---------------------------------------------------------------------------
// brute-force references

func matches(op tsdb.Operation, f tsdb.OperationFilter) bool {
	switch {
	case f.SessionID != nil && op.SessionID != *f.SessionID,
		f.ToolName != "" && op.ToolName != f.ToolName,
		f.OperationMode != "" && op.OperationMode != f.OperationMode,
		f.ToolID != "" && op.ToolID != f.ToolID,
		f.Start != nil && op.CreatedAt.Before(*f.Start),
		f.End != nil && op.CreatedAt.After(*f.End):
		return false
	}
	return true
}

// newestFirst sorts ops by created_at descending, then id descending.
func newestFirst(ops []tsdb.Operation) {
	slices.SortFunc(ops, func(a, b tsdb.Operation) int {
		if c := b.CreatedAt.Compare(a.CreatedAt); c != 0 {
			return c
		}
		return bytes.Compare(b.ID[:], a.ID[:])
	})
}

func inWindow(op tsdb.Operation, w tsdb.Window) bool {
	if w.ToolID != "" && op.ToolID != w.ToolID {
		return false
	}
	if w.Start != nil && op.CreatedAt.Before(*w.Start) {
		return false
	}
	return !op.CreatedAt.After(w.End)
}

func totalsOf(op tsdb.Operation) tsdb.Totals { return tsdb.TotalsOf(&op) }

func bruteBreakdown(ops []tsdb.Operation, w tsdb.Window) []tsdb.ModeTotals {
	m := map[[2]string]*tsdb.Totals{}
	for _, op := range ops {
		if !inWindow(op, w) {
			continue
		}
		k := [2]string{op.ToolName, op.OperationMode}
		if m[k] == nil {
			m[k] = new(tsdb.Totals)
		}
		m[k].Add(totalsOf(op))
	}
	out := []tsdb.ModeTotals{}
	for k, v := range m {
		out = append(out, tsdb.ModeTotals{ToolName: k[0], OperationMode: k[1], Totals: *v})
	}
	sortModes(out)
	return out
}

func bruteTrend(ops []tsdb.Operation, w tsdb.Window, step tsdb.Step) []tsdb.Bucket {
	m := map[int64]*tsdb.Totals{}
	for _, op := range ops {
		if !inWindow(op, w) {
			continue
		}
		k := step.Truncate(op.CreatedAt).UnixMicro()
		if m[k] == nil {
			m[k] = new(tsdb.Totals)
		}
		m[k].Add(totalsOf(op))
	}
	out := []tsdb.Bucket{}
	for k, v := range m {
		out = append(out, tsdb.Bucket{Start: time.UnixMicro(k).UTC(), Totals: *v})
	}
	slices.SortFunc(out, func(a, b tsdb.Bucket) int { return a.Start.Compare(b.Start) })
	return out
}

// ---------------------------------------------------------------------------
// comparisons

func sortModes(m []tsdb.ModeTotals) {
	slices.SortFunc(m, func(a, b tsdb.ModeTotals) int {
		if c := strings.Compare(a.ToolName, b.ToolName); c != 0 {
			return c
		}
		return strings.Compare(a.OperationMode, b.OperationMode)
	})
}

// floatEq tolerates the rounding of float sums added in another order.
func floatEq(a, b float64) bool {
	return math.Abs(a-b) <= 1e-9*math.Max(1, math.Max(math.Abs(a), math.Abs(b)))
}

func totalsEq(a, b tsdb.Totals) bool {
	return a.Count == b.Count && a.TokensOriginal == b.TokensOriginal && a.TokensActual == b.TokensActual &&
		a.TokensPrevented == b.TokensPrevented && floatEq(a.ResponseTimeSumMs, b.ResponseTimeSumMs)
}

func fmtTotals(t tsdb.Totals) string {
	return fmt.Sprintf("{n=%d orig=%d act=%d prev=%d rt=%g}", t.Count, t.TokensOriginal, t.TokensActual,
		t.TokensPrevented, t.ResponseTimeSumMs)
}

func fmtModes(m []tsdb.ModeTotals) string {
	var b strings.Builder
	for _, x := range m {
		fmt.Fprintf(&b, "\n\t%s/%s %s", x.ToolName, x.OperationMode, fmtTotals(x.Totals))
	}
	return b.String()
}

func fmtBuckets(bs []tsdb.Bucket) string {
	var b strings.Builder
	for _, x := range bs {
		fmt.Fprintf(&b, "\n\t%s %s", x.Start.UTC().Format(time.RFC3339Nano), fmtTotals(x.Totals))
	}
	return b.String()
}

func fmtWindow(w tsdb.Window) string {
	start := "-inf"
	if w.Start != nil {
		start = w.Start.UTC().Format(time.RFC3339Nano)
	}
	return fmt.Sprintf("[%s, %s] tool_id=%q", start, w.End.UTC().Format(time.RFC3339Nano), w.ToolID)
}

func modesEq(got, want []tsdb.ModeTotals) bool {
	got = slices.Clone(got)
	sortModes(got)
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if got[i].ToolName != want[i].ToolName || got[i].OperationMode != want[i].OperationMode ||
			!totalsEq(got[i].Totals, want[i].Totals) {
			return false
		}
	}
	return true
}

func bucketsEq(got, want []tsdb.Bucket) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if !got[i].Start.Equal(want[i].Start) || !totalsEq(got[i].Totals, want[i].Totals) {
			return false
		}
	}
	return true
}

func checkBreakdown(t *testing.T, s tsdb.Store, w tsdb.Window, want []tsdb.ModeTotals) {
	t.Helper()
	got, err := s.Breakdown(t.Context(), w)
	if err != nil {
		t.Fatalf("Breakdown(%s): %v", fmtWindow(w), err)
	}
	if got == nil {
		t.Errorf("Breakdown(%s) = nil slice, want non-nil (empty) slice", fmtWindow(w))
	}
	if !modesEq(got, want) {
		sorted := slices.Clone(got)
		sortModes(sorted)
		t.Errorf("Breakdown(%s):\ngot:%s\nwant:%s", fmtWindow(w), fmtModes(sorted), fmtModes(want))
	}
}

func checkTrend(t *testing.T, s tsdb.Store, w tsdb.Window, step tsdb.Step, want []tsdb.Bucket) {
	t.Helper()
	got, err := s.Trend(t.Context(), w, step)
	if err != nil {
		t.Fatalf("Trend(%s, %v): %v", fmtWindow(w), step, err)
	}
	if got == nil {
		t.Errorf("Trend(%s, %v) = nil slice, want non-nil (empty) slice", fmtWindow(w), step)
	}
	if !bucketsEq(got, want) {
		t.Errorf("Trend(%s, step %v):\ngot:%s\nwant:%s", fmtWindow(w), step, fmtBuckets(got), fmtBuckets(want))
	}
}

func sameOp(a, b tsdb.Operation) error {
	var diffs []string
	if a.ID != b.ID {
		diffs = append(diffs, fmt.Sprintf("ID %s != %s", a.ID, b.ID))
	}
	if a.SessionID != b.SessionID {
		diffs = append(diffs, fmt.Sprintf("SessionID %s != %s", a.SessionID, b.SessionID))
	}
	if a.ToolName != b.ToolName || a.OperationMode != b.OperationMode || a.ToolID != b.ToolID {
		diffs = append(diffs, fmt.Sprintf("tool/mode/tool_id %s/%s/%s != %s/%s/%s",
			a.ToolName, a.OperationMode, a.ToolID, b.ToolName, b.OperationMode, b.ToolID))
	}
	if !bytes.Equal(a.Parameters, b.Parameters) {
		diffs = append(diffs, fmt.Sprintf("Parameters %s != %s", a.Parameters, b.Parameters))
	}
	switch {
	case (a.FilePath == nil) != (b.FilePath == nil):
		diffs = append(diffs, fmt.Sprintf("FilePath nil=%v != nil=%v", a.FilePath == nil, b.FilePath == nil))
	case a.FilePath != nil && *a.FilePath != *b.FilePath:
		diffs = append(diffs, fmt.Sprintf("FilePath %q != %q", *a.FilePath, *b.FilePath))
	}
	if a.TokensOriginal != b.TokensOriginal || a.TokensActual != b.TokensActual || a.TokensPrevented != b.TokensPrevented {
		diffs = append(diffs, fmt.Sprintf("tokens %d/%d/%d != %d/%d/%d", a.TokensOriginal, a.TokensActual,
			a.TokensPrevented, b.TokensOriginal, b.TokensActual, b.TokensPrevented))
	}
	if !eqPtr(a.CacheHit, b.CacheHit) {
		diffs = append(diffs, fmt.Sprintf("CacheHit %s != %s", fmtPtr(a.CacheHit), fmtPtr(b.CacheHit)))
	}
	if a.ResponseTimeMs != b.ResponseTimeMs {
		diffs = append(diffs, fmt.Sprintf("ResponseTimeMs %v != %v", a.ResponseTimeMs, b.ResponseTimeMs))
	}
	if !a.CreatedAt.Equal(b.CreatedAt) {
		diffs = append(diffs, fmt.Sprintf("CreatedAt %s != %s", a.CreatedAt.Format(time.RFC3339Nano), b.CreatedAt.Format(time.RFC3339Nano)))
	}
	if len(diffs) == 0 {
		return nil
	}
	return errors.New(strings.Join(diffs, "; "))
}

func opIDs(ops []tsdb.Operation) []uuid.UUID {
	out := make([]uuid.UUID, len(ops))
	for i, op := range ops {
		out[i] = op.ID
	}
	return out
}

// queryAll pages through every operation matching f with page size limit and
// checks Total on each page.
func queryAll(t *testing.T, s tsdb.Store, f tsdb.OperationFilter, limit int) []tsdb.Operation {
	t.Helper()
	var all []tsdb.Operation
	var total int64 = -1
	for off := 0; ; off += limit {
		f.Limit, f.Offset = limit, off
		page, err := s.QueryOperations(t.Context(), f)
		if err != nil {
			t.Fatalf("QueryOperations(limit %d, offset %d): %v", limit, off, err)
		}
		if total >= 0 && page.Total != total {
			t.Fatalf("QueryOperations offset %d: Total %d, earlier pages said %d", off, page.Total, total)
		}
		total = page.Total
		if len(page.Operations) > limit {
			t.Fatalf("QueryOperations(limit %d): %d operations", limit, len(page.Operations))
		}
		all = append(all, page.Operations...)
		if len(page.Operations) < limit {
			break
		}
	}
	if int64(len(all)) != total {
		t.Fatalf("paging returned %d operations, Total says %d", len(all), total)
	}
	return all
}

// checkQuery compares QueryOperations(f) with the brute-force answer over
// ops: same operations, same order, same Total, every field equal.
func checkQuery(t *testing.T, s tsdb.Store, ops []tsdb.Operation, f tsdb.OperationFilter, limit int) {
	t.Helper()
	var want []tsdb.Operation
	for _, op := range ops {
		if matches(op, f) {
			want = append(want, op)
		}
	}
	newestFirst(want)
	got := queryAll(t, s, f, limit)
	if !slices.Equal(opIDs(got), opIDs(want)) {
		t.Fatalf("QueryOperations ids (newest first):\ngot  %v\nwant %v", opIDs(got), opIDs(want))
	}
	for i := range got {
		if err := sameOp(got[i], want[i]); err != nil {
			t.Errorf("operation %s: %v", want[i].ID, err)
		}
	}
}

// testCase is one named case of the suite, run on a fresh store.
type testCase[S any] struct {
	name string
	fn   func(t *testing.T, s S)
}

// runCases runs every case as a parallel subtest on a store of its own
// (go test's -parallel bounds how many run at once), so that one case's
// waits on fsync or on a server overlap another's work.
func runCases[S any](t *testing.T, newStore func(t *testing.T) S, cases []testCase[S]) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, newStore(t))
		})
	}
}

// WriteEach writes ops to s in writes of n operations, as the group commit
// of single-operation requests does.
func WriteEach(t *testing.T, s tsdb.OperationWriter, ops []tsdb.Operation, n int) {
	t.Helper()
	for i := 0; i < len(ops); i += n {
		if err := s.WriteOperations(t.Context(), ops[i:min(i+n, len(ops))]); err != nil {
			t.Fatal(err)
		}
	}
}
