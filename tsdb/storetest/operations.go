package storetest

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/omnimemory/omnimemory-metrics/client/api"

	"github.com/google/uuid"

	"github.com/omnimemory/omnimemory-metrics/tsdb"
)

func testPing(t *testing.T, s tsdb.Store) {
	if err := s.Ping(t.Context()); err != nil {
		t.Fatalf("Ping on a healthy store: %v", err)
	}
}

func testEmptyWrite(t *testing.T, s tsdb.Store) {
	if err := s.WriteOperations(t.Context(), nil); err != nil {
		t.Fatalf("WriteOperations(nil): %v", err)
	}
	page, err := s.QueryOperations(t.Context(), tsdb.OperationFilter{Limit: 10})
	if err != nil {
		t.Fatalf("QueryOperations: %v", err)
	}
	if page.Total != 0 || len(page.Operations) != 0 {
		t.Fatalf("empty store: Total %d, %d operations; want 0, 0", page.Total, len(page.Operations))
	}
}

func testRoundTrip(t *testing.T, s tsdb.Store) {
	g := newIDs(1)
	sess1, sess2 := g.next(), g.next()
	ops := []tsdb.Operation{
		{
			ID: g.next(), SessionID: sess1, ToolName: api.ToolRead, OperationMode: "full",
			Parameters:     json.RawMessage(`{"file_path":"/src/main.go","nested":{"a":[1,2.5,null,true],"b":{}},"q":"caf\u00e9 \"quoted\" 日本語"}`),
			FilePath:       ptr("/home/dev/project/src/main.go"),
			TokensOriginal: 5000, TokensActual: 1200, TokensPrevented: 3800,
			ResponseTimeMs: 12.375, ToolID: "claude-code", CreatedAt: at(10, 17, 23, 123456),
			CacheHit: ptr(true),
		},
		{
			ID: g.next(), SessionID: sess1, ToolName: api.ToolSearch, OperationMode: "semantic",
			Parameters: json.RawMessage(`{}`), FilePath: nil,
			TokensOriginal: 100, TokensActual: 250, TokensPrevented: -150,
			ResponseTimeMs: 0.5, ToolID: "claude-code", CreatedAt: at(10, 17, 23, 123457),
			CacheHit: ptr(false),
		},
		{
			ID: g.next(), SessionID: sess2, ToolName: api.ToolSearch, OperationMode: "tri_index",
			Parameters:     json.RawMessage(`{"query":"where is ErrNotFound used?","limit":5}`),
			FilePath:       ptr(`C:\Users\dev\file with spaces.ts`),
			TokensOriginal: 0, TokensActual: 0, TokensPrevented: 0,
			ResponseTimeMs: 0, ToolID: strings.Repeat("x", 100), CreatedAt: at(23, 59, 59, 999999),
		},
		{
			ID: g.next(), SessionID: sess2, ToolName: api.ToolRead, OperationMode: "references",
			Parameters: json.RawMessage(`{"symbol":"Store.Close"}`), FilePath: ptr("tsdb/tsdb.go"),
			TokensOriginal: 9_000_000_000_000, TokensActual: 1, TokensPrevented: 8_999_999_999_999,
			ResponseTimeMs: 1234.5678, ToolID: "cursor", CreatedAt: at(0, 0, 0, 1),
		},
	}
	write(t, s, ops...)
	checkQuery(t, s, ops, tsdb.OperationFilter{}, 100)
	for _, op := range ops {
		id := op.SessionID
		checkQuery(t, s, ops, tsdb.OperationFilter{SessionID: &id, ToolID: op.ToolID, Start: &op.CreatedAt, End: &op.CreatedAt}, 10)
	}
}

// testCacheHitRoundTrip: cache_hit true, false and unknown come back as
// written, from the list and the export alike: in one series (same session,
// tool, mode and tool id) mixed from one microsecond to the next and at one
// identical created_at, and in series that hold only one of the three.
func testCacheHitRoundTrip(t *testing.T, s tsdb.Store) {
	g := newIDs(4)
	mixed, known, unknown := g.next(), g.next(), g.next()
	states := []*bool{nil, ptr(true), ptr(false)}
	var ops []tsdb.Operation
	for i := range 30 {
		op := g.mk(opSpec{session: mixed, mode: "overview", at: at(9, 0, 0, i), orig: 100, act: 10, rt: 1})
		op.CacheHit = states[i%3]
		ops = append(ops, op)
	}
	for i := range 9 { // at one created_at
		op := g.mk(opSpec{session: mixed, mode: "overview", at: at(9, 30, 0, 0), orig: 100, act: int64(i), rt: 1})
		op.CacheHit = states[i%3]
		ops = append(ops, op)
	}
	for i := range 6 {
		op := g.mk(opSpec{session: known, tool: api.ToolSearch, mode: "semantic", at: at(10, i, 0, 0), orig: 50, act: 5})
		op.CacheHit = ptr(i%2 == 0)
		ops = append(ops, op)
		ops = append(ops, g.mk(opSpec{session: unknown, tool: api.ToolSearch, mode: "semantic", at: at(10, i, 0, 0), orig: 50, act: 5}))
	}
	writeBatches(t, s, ops, 7)
	checkQuery(t, s, ops, tsdb.OperationFilter{}, 10)
	checkQuery(t, s, ops, tsdb.OperationFilter{SessionID: &mixed}, 1000)
	checkExport(t, s, ops, tsdb.OperationFilter{})
	checkExport(t, s, ops, tsdb.OperationFilter{SessionID: &known})
	checkExport(t, s, ops, tsdb.OperationFilter{Start: ptr(at(9, 30, 0, 0)), End: ptr(at(9, 30, 0, 0))})
}

// filterData is a day of operations over three sessions, two tools, three
// modes and three tool ids, with some identical timestamps.
func filterData(g *ids) ([]tsdb.Operation, []uuid.UUID) {
	sessions := []uuid.UUID{g.next(), g.next(), g.next()}
	modes := []string{"full", "overview", "semantic"}
	toolIDs := []string{"claude-code", "cursor", "windsurf"}
	var ops []tsdb.Operation
	for i := range 36 {
		tool := api.ToolRead
		if i%2 == 1 {
			tool = api.ToolSearch
		}
		ts := at(i/2, (i*7)%60, (i*13)%60, (i*104729)%1_000_000) // pairs share the hour
		if i%9 == 4 {
			ts = ops[i-1].CreatedAt // identical created_at
		}
		ops = append(ops, g.mk(opSpec{
			session: sessions[i%3], tool: tool, mode: modes[(i/3)%3], toolID: toolIDs[(i/4)%3],
			at: ts, orig: int64(100 * i), act: int64(30 * i), rt: float64(i) / 4,
		}))
	}
	return ops, sessions
}

func testFilters(t *testing.T, s tsdb.Store) {
	g := newIDs(2)
	ops, sessions := filterData(g)
	writeBatches(t, s, ops, 10)
	pivot := ops[17].CreatedAt
	later := ops[29].CreatedAt
	tests := []struct {
		name string
		f    tsdb.OperationFilter
		want int // -1: whatever the brute force says
	}{
		{"none", tsdb.OperationFilter{}, len(ops)},
		{"session", tsdb.OperationFilter{SessionID: &sessions[1]}, 12},
		{"unknown session", tsdb.OperationFilter{SessionID: ptr(g.next())}, 0},
		{"tool read", tsdb.OperationFilter{ToolName: api.ToolRead}, 18},
		{"tool search", tsdb.OperationFilter{ToolName: api.ToolSearch}, 18},
		{"mode", tsdb.OperationFilter{OperationMode: "overview"}, 12},
		{"mode absent", tsdb.OperationFilter{OperationMode: "symbol"}, 0},
		{"tool id", tsdb.OperationFilter{ToolID: "cursor"}, 12},
		{"tool id unknown", tsdb.OperationFilter{ToolID: "nope"}, 0},
		{"start inclusive at exact created_at", tsdb.OperationFilter{Start: &pivot}, -1},
		{"end inclusive at exact created_at", tsdb.OperationFilter{End: &pivot}, -1},
		{"start and end at one created_at", tsdb.OperationFilter{Start: &pivot, End: &pivot}, 1},
		{"start and end at a shared created_at", tsdb.OperationFilter{Start: &ops[4].CreatedAt, End: &ops[4].CreatedAt}, 2},
		{"start 1us after", tsdb.OperationFilter{Start: ptr(pivot.Add(time.Microsecond)), End: &later}, -1},
		{"end 1us before", tsdb.OperationFilter{Start: &pivot, End: ptr(later.Add(-time.Microsecond))}, -1},
		{"start after end", tsdb.OperationFilter{Start: &later, End: &pivot}, 0},
		{"all filters", tsdb.OperationFilter{SessionID: &sessions[0], ToolName: api.ToolRead, OperationMode: "full",
			ToolID: "claude-code", Start: ptr(at(0, 0, 0, 0)), End: ptr(at(23, 0, 0, 0))}, -1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n := 0
			for _, op := range ops {
				if matches(op, tc.f) {
					n++
				}
			}
			if tc.want >= 0 && n != tc.want {
				t.Fatalf("test data: brute force finds %d operations, the test expects %d", n, tc.want)
			}
			checkQuery(t, s, ops, tc.f, 5)
		})
	}
	// The inclusive bounds, checked without the brute force.
	for _, f := range []tsdb.OperationFilter{{Start: &pivot, Limit: 1000}, {End: &pivot, Limit: 1000}} {
		page, err := s.QueryOperations(t.Context(), f)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(opIDs(page.Operations), ops[17].ID) {
			t.Errorf("an operation at exactly the bound %s is missing", pivot.Format(time.RFC3339Nano))
		}
	}
}

func testOrder(t *testing.T, s tsdb.Store) {
	g := newIDs(3)
	tie := at(12, 0, 0, 500)
	mkID := func(s string) uuid.UUID { return uuid.MustParse(s) }
	tied := []uuid.UUID{ // given in scrambled order; want descending
		mkID("00000000-0000-4000-8000-00000000000a"),
		mkID("a0000000-0000-4000-8000-000000000000"),
		mkID("00000000-0000-4000-8000-000000000009"),
		mkID("00000000-0000-4000-8000-0000000000ff"),
		mkID("00000000-0000-4000-8000-000000000010"),
	}
	var ops []tsdb.Operation
	for _, id := range tied {
		op := g.mk(opSpec{at: tie, orig: 10, act: 5})
		op.ID = id
		ops = append(ops, op)
	}
	newer := g.mk(opSpec{at: tie.Add(time.Microsecond), orig: 1, act: 1})
	newer.ID = mkID("00000000-0000-4000-8000-000000000001")
	older := g.mk(opSpec{at: tie.Add(-time.Microsecond), orig: 1, act: 1})
	older.ID = mkID("ffffffff-ffff-4fff-bfff-ffffffffffff")
	ops = append(ops, older, newer)
	write(t, s, ops...)
	want := []uuid.UUID{newer.ID, tied[1], tied[3], tied[4], tied[0], tied[2], older.ID}
	for _, limit := range []int{100, 1, 2, 3} {
		got := opIDs(queryAll(t, s, tsdb.OperationFilter{}, limit))
		if !slices.Equal(got, want) {
			t.Errorf("limit %d: order\ngot  %v\nwant %v", limit, got, want)
		}
	}
}

func testPaging(t *testing.T, s tsdb.Store) {
	g := newIDs(4)
	var ops []tsdb.Operation
	for i := range 50 {
		ops = append(ops, g.mk(opSpec{at: at(8, i/3, 0, 0), orig: int64(i), rt: 1})) // triples share a time
	}
	write(t, s, ops...)
	want := slices.Clone(ops)
	newestFirst(want)
	seen := map[uuid.UUID]bool{}
	var got []tsdb.Operation
	for off := 0; off < 50; off += 7 {
		page, err := s.QueryOperations(t.Context(), tsdb.OperationFilter{Limit: 7, Offset: off})
		if err != nil {
			t.Fatal(err)
		}
		if page.Total != 50 {
			t.Errorf("offset %d: Total %d, want 50", off, page.Total)
		}
		if n := min(7, 50-off); len(page.Operations) != n {
			t.Errorf("offset %d: %d operations, want %d", off, len(page.Operations), n)
		}
		for _, op := range page.Operations {
			if seen[op.ID] {
				t.Errorf("offset %d: operation %s already on an earlier page", off, op.ID)
			}
			seen[op.ID] = true
		}
		got = append(got, page.Operations...)
	}
	if !slices.Equal(opIDs(got), opIDs(want)) {
		t.Errorf("pages joined:\ngot  %v\nwant %v", opIDs(got), opIDs(want))
	}
	// Filtered paging too.
	checkQuery(t, s, ops, tsdb.OperationFilter{Start: ptr(at(8, 3, 0, 0)), End: ptr(at(8, 12, 0, 0))}, 4)
}

func testOffsetPastEnd(t *testing.T, s tsdb.Store) {
	g := newIDs(5)
	var ops []tsdb.Operation
	for i := range 5 {
		ops = append(ops, g.mk(opSpec{at: at(9, i, 0, 0), toolID: []string{"a", "b"}[i%2]}))
	}
	write(t, s, ops...)
	for _, tc := range []struct {
		f     tsdb.OperationFilter
		total int64
	}{
		{tsdb.OperationFilter{Limit: 10, Offset: 5}, 5},
		{tsdb.OperationFilter{Limit: 10, Offset: 1000}, 5},
		{tsdb.OperationFilter{Limit: 1, Offset: 3, ToolID: "a"}, 3},
		{tsdb.OperationFilter{Limit: 1, Offset: 0, ToolID: "none"}, 0},
	} {
		page, err := s.QueryOperations(t.Context(), tc.f)
		if err != nil {
			t.Fatal(err)
		}
		if len(page.Operations) != 0 || page.Total != tc.total {
			t.Errorf("%+v: %d operations, Total %d; want 0, %d", tc.f, len(page.Operations), page.Total, tc.total)
		}
	}
}

// testIdenticalTimestamps guards against stores keyed by time and tags
// (InfluxDB overwrites points with identical series and timestamp).
func testIdenticalTimestamps(t *testing.T, s tsdb.Store) {
	g := newIDs(6)
	sess := g.next()
	ts := at(15, 4, 5, 678901)
	var ops []tsdb.Operation
	var want tsdb.Totals
	for i := range 1000 {
		op := g.mk(opSpec{session: sess, tool: api.ToolSearch, mode: "semantic", toolID: "claude-code",
			at: ts, orig: int64(100 + i), act: 50, rt: float64(i) / 4})
		ops = append(ops, op)
		want.Add(totalsOf(op))
	}
	writeBatches(t, s, ops, 250)

	got := queryAll(t, s, tsdb.OperationFilter{}, 100)
	if len(got) != 1000 {
		t.Fatalf("%d operations stored, want 1000", len(got))
	}
	seen := map[uuid.UUID]bool{}
	for _, op := range got {
		seen[op.ID] = true
	}
	for _, op := range ops {
		if !seen[op.ID] {
			t.Fatalf("operation %s lost", op.ID)
		}
	}
	checkQuery(t, s, ops, tsdb.OperationFilter{SessionID: &sess, Start: &ts, End: &ts}, 1000)

	w := tsdb.Window{Start: &ts, End: ts}
	checkBreakdown(t, s, w, []tsdb.ModeTotals{{ToolName: api.ToolSearch, OperationMode: "semantic", Totals: want}})
	checkTrend(t, s, w, tsdb.Hourly, []tsdb.Bucket{{Start: at(15, 0, 0, 0), Totals: want}})
	checkTrend(t, s, tsdb.Window{End: ts.Add(time.Hour)}, tsdb.Daily, []tsdb.Bucket{{Start: base, Totals: want}})

	st, err := s.GetSession(t.Context(), sess)
	if err != nil {
		t.Fatal(err)
	}
	if st.TotalOperations != 1000 || st.TokensSaved != want.TokensPrevented || st.TotalEmbeddings != 1000 {
		t.Errorf("session totals: %d operations, %d saved, %d embeddings; want 1000, %d, 1000",
			st.TotalOperations, st.TokensSaved, st.TotalEmbeddings, want.TokensPrevented)
	}
}
