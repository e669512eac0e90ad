package storetest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/omnimemory/omnimemory-metrics/client/api"

	"github.com/google/uuid"

	"github.com/omnimemory/omnimemory-metrics/tsdb"
)

// RunExport runs only the ExportOperations cases of the suite (Run runs
// them too), for a store configured to read exports in small pages, so that
// every case crosses many page boundaries.
func RunExport(t *testing.T, newStore func(t *testing.T) tsdb.Store) {
	t.Helper()
	runCases(t, newStore, []testCase[tsdb.Store]{
		{"Export/MatchesQueryOldestFirst", testExportMatchesQuery},
		{"Export/TiesByIDAcrossPages", testExportTies},
		{"Export/StopsAtCallbackError", testExportCallbackError},
		{"Export/StopsWhenCancelled", testExportCancelled},
	})
}

// oldestFirst sorts ops by created_at ascending, then id ascending: the
// export's order, the reverse of the query's.
func oldestFirst(ops []tsdb.Operation) {
	slices.SortFunc(ops, func(a, b tsdb.Operation) int {
		if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
			return c
		}
		return bytes.Compare(a.ID[:], b.ID[:])
	})
}

// exportAll collects what ExportOperations hands out (copies: the store may
// reuse what it passes).
func exportAll(t *testing.T, s tsdb.Store, f tsdb.OperationFilter) []tsdb.Operation {
	t.Helper()
	var got []tsdb.Operation
	err := s.ExportOperations(t.Context(), f, func(op *tsdb.Operation) error {
		c := *op
		c.Parameters = slices.Clone(op.Parameters)
		if op.FilePath != nil {
			c.FilePath = ptr(*op.FilePath)
		}
		got = append(got, c)
		return nil
	})
	if err != nil {
		t.Fatalf("ExportOperations: %v", err)
	}
	return got
}

// checkExport compares ExportOperations(f) with the brute-force answer over
// ops (same operations, oldest first, every field equal) and with what
// QueryOperations answers for f, paged through and reversed.
func checkExport(t *testing.T, s tsdb.Store, ops []tsdb.Operation, f tsdb.OperationFilter) {
	t.Helper()
	var want []tsdb.Operation
	for _, op := range ops {
		if matches(op, f) {
			want = append(want, op)
		}
	}
	oldestFirst(want)
	got := exportAll(t, s, f)
	if !slices.Equal(opIDs(got), opIDs(want)) {
		t.Fatalf("ExportOperations: %d operations, want %d; %s", len(got), len(want), firstDifference(got, want))
	}
	for i := range got {
		if err := sameOp(got[i], want[i]); err != nil {
			t.Errorf("operation %s: %v", want[i].ID, err)
		}
	}
	queried := queryAll(t, s, f, 1000)
	slices.Reverse(queried)
	if !slices.Equal(opIDs(got), opIDs(queried)) {
		t.Fatalf("ExportOperations and QueryOperations (reversed) differ: %s", firstDifference(got, queried))
	}
}

// firstDifference describes where two lists of operations part.
func firstDifference(got, want []tsdb.Operation) string {
	desc := func(ops []tsdb.Operation, i int) string {
		if i >= len(ops) {
			return "nothing"
		}
		return fmt.Sprintf("%s at %s", ops[i].ID, ops[i].CreatedAt.Format(time.RFC3339Nano))
	}
	for i := range max(len(got), len(want)) {
		if i >= len(got) || i >= len(want) || got[i].ID != want[i].ID {
			return fmt.Sprintf("first difference at position %d: got %s, want %s", i, desc(got, i), desc(want, i))
		}
	}
	return "no difference"
}

// exportData is filterData and, the day after, a dense run of operations
// at consecutive microseconds, a group of operations at one identical
// created_at spread over several series (some with a file path), a sparse
// tail days apart, and varied parameters and file paths.
func exportData(g *ids) ([]tsdb.Operation, []uuid.UUID) {
	ops, sessions := filterData(g)
	day2 := base.Add(24 * time.Hour)
	modes := []string{"full", "overview", "semantic", "symbol"}
	toolIDs := []string{"claude-code", "cursor", "windsurf"}
	for i := range 300 { // dense: one microsecond apart
		op := g.mk(opSpec{session: sessions[i%3], tool: api.ToolNames[i%2], mode: modes[i%4], toolID: toolIDs[i%3],
			at: day2.Add(3*time.Hour + time.Duration(i)*time.Microsecond), orig: int64(i), act: int64(i / 2), rt: float64(i) / 8})
		if i%5 == 0 {
			op.FilePath = ptr(fmt.Sprintf("src/dense/%d.go", i))
		}
		if i%3 > 0 {
			op.CacheHit = ptr(i%3 == 1)
		}
		ops = append(ops, op)
	}
	tie := day2.Add(5*time.Hour + 123456*time.Microsecond)
	for i := range 120 { // 120 at one created_at, over 3 sessions x 2 tools
		op := g.mk(opSpec{session: sessions[i%3], tool: api.ToolNames[(i/3)%2], mode: "full", toolID: "claude-code",
			at: tie, orig: 1000, act: int64(i), rt: 2.5})
		if i%2 == 0 {
			op.FilePath = ptr(fmt.Sprintf("pkg/tie_%03d.go", i))
		}
		op.Parameters = json.RawMessage(fmt.Sprintf(`{"i":%d,"q":"tie \"%d\""}`, i, i))
		if i%4 > 1 {
			op.CacheHit = ptr(i%4 == 2)
		}
		ops = append(ops, op)
	}
	for _, d := range []time.Duration{-time.Microsecond, time.Microsecond, time.Second} { // the tie's neighbours
		ops = append(ops, g.mk(opSpec{session: sessions[0], at: tie.Add(d), orig: 7, act: 7}))
	}
	for i := range 40 { // sparse: two days apart, then minutes apart
		ts := day2.Add(time.Duration(i+1) * 48 * time.Hour)
		if i >= 20 {
			ts = day2.Add(41*48*time.Hour + time.Duration(i)*time.Minute)
		}
		ops = append(ops, g.mk(opSpec{session: sessions[i%3], tool: api.ToolSearch, mode: "semantic", toolID: toolIDs[i%3],
			at: ts, orig: int64(10 * i), act: 1, rt: 0.25}))
	}
	return ops, sessions
}

func testExportMatchesQuery(t *testing.T, s tsdb.Store) {
	g := newIDs(40)
	ops, sessions := exportData(g)
	writeBatches(t, s, ops, 200)
	tie := ops[len(ops)-50].CreatedAt // the group at one created_at
	if ops[len(ops)-44].CreatedAt != tie {
		t.Fatal("test data: the tie group moved")
	}
	pivot := ops[17].CreatedAt
	late := ops[len(ops)-30].CreatedAt
	for _, tc := range []struct {
		name string
		f    tsdb.OperationFilter
	}{
		{"none", tsdb.OperationFilter{}},
		{"limit and offset ignored", tsdb.OperationFilter{Limit: 3, Offset: 7}},
		{"session", tsdb.OperationFilter{SessionID: &sessions[1]}},
		{"unknown session", tsdb.OperationFilter{SessionID: ptr(g.next())}},
		{"tool search", tsdb.OperationFilter{ToolName: api.ToolSearch}},
		{"mode", tsdb.OperationFilter{OperationMode: "overview"}},
		{"tool and mode", tsdb.OperationFilter{ToolName: api.ToolRead, OperationMode: "full"}},
		{"tool id", tsdb.OperationFilter{ToolID: "cursor"}},
		{"tool id unknown", tsdb.OperationFilter{ToolID: "nope"}},
		{"start inclusive", tsdb.OperationFilter{Start: &pivot}},
		{"end inclusive", tsdb.OperationFilter{End: &pivot}},
		{"start and end at the tie", tsdb.OperationFilter{Start: &tie, End: &tie}},
		{"from the tie on", tsdb.OperationFilter{Start: &tie, End: &late}},
		{"up to 1us before the tie", tsdb.OperationFilter{End: ptr(tie.Add(-time.Microsecond))}},
		{"start after end", tsdb.OperationFilter{Start: &late, End: &pivot}},
		{"session, tool id and range", tsdb.OperationFilter{SessionID: &sessions[0], ToolID: "claude-code",
			Start: &pivot, End: &late}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkExport(t, s, ops, tc.f)
		})
	}
}

// testExportTies: many operations at one created_at (more than InfluxDB
// keeps in one series and microsecond, so some land in a series of their
// own), with neighbours one microsecond away: handed out by id, whatever
// the store's page boundaries.
func testExportTies(t *testing.T, s tsdb.Store) {
	g := newIDs(41)
	sess, other := g.next(), g.next()
	tie := at(6, 30, 0, 424242)
	var ops []tsdb.Operation
	for i := range 1100 { // one series
		ops = append(ops, g.mk(opSpec{session: sess, tool: api.ToolRead, mode: "full", at: tie, orig: int64(i), act: 0}))
	}
	for i := range 100 { // other series, half with a file path
		op := g.mk(opSpec{session: other, tool: api.ToolSearch, mode: "symbol", toolID: "cursor", at: tie, orig: 5, act: int64(i)})
		if i%2 == 1 {
			op.FilePath = ptr(fmt.Sprintf("a/%d", i))
		}
		ops = append(ops, op)
	}
	for i := range 30 {
		d := time.Duration(i/2+1) * time.Microsecond
		if i%2 == 0 {
			d = -d
		}
		ops = append(ops, g.mk(opSpec{session: other, at: tie.Add(d), orig: 1, act: 1}))
	}
	writeBatches(t, s, ops, 500)
	for _, f := range []tsdb.OperationFilter{
		{},
		{Start: &tie, End: &tie},
		{SessionID: &other},
		{ToolID: "cursor", Start: &tie},
		{End: &tie},
	} {
		checkExport(t, s, ops, f)
	}
}

func testExportCallbackError(t *testing.T, s tsdb.Store) {
	g := newIDs(42)
	var ops []tsdb.Operation
	for i := range 200 {
		ops = append(ops, g.mk(opSpec{at: at(2, 0, i, 0), orig: 1, act: 1}))
	}
	write(t, s, ops...)
	stop := errors.New("client went away")
	calls := 0
	err := s.ExportOperations(t.Context(), tsdb.OperationFilter{}, func(*tsdb.Operation) error {
		calls++
		if calls == 120 {
			return stop
		}
		return nil
	})
	if err != stop { //nolint:errorlint // the contract: fn's error, unwrapped
		t.Fatalf("ExportOperations answered %v, want fn's error as it is", err)
	}
	if calls != 120 {
		t.Fatalf("fn called %d times, want 120 (none after its error)", calls)
	}
}

func testExportCancelled(t *testing.T, s tsdb.Store) {
	g := newIDs(43)
	var ops []tsdb.Operation
	for i := range 200 {
		ops = append(ops, g.mk(opSpec{at: at(3, i/60, i%60, 0), orig: 1, act: 1}))
	}
	write(t, s, ops...)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	calls := 0
	err := s.ExportOperations(ctx, tsdb.OperationFilter{}, func(*tsdb.Operation) error {
		calls++
		if calls == 50 {
			cancel()
		}
		return nil
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("ExportOperations after its context ended answered %v, want an error wrapping context.Canceled", err)
	}
	if calls != 50 {
		t.Fatalf("fn called %d times, want 50 (none once the context ended)", calls)
	}
}
