package sqlite

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/omnimemory/omnimemory-metrics/client/api"

	"github.com/google/uuid"

	"github.com/omnimemory/omnimemory-metrics/tsdb"
)

func openExportStore(tb testing.TB) *Store {
	tb.Helper()
	s, err := Open(context.Background(), filepath.Join(tb.TempDir(), "metrics.db"), nil)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

// seedExport writes n operations over two sessions, all tools and modes and
// three tool ids, spread evenly over span from start, in batches of 5000.
func seedExport(tb testing.TB, s *Store, n int, start time.Time, span time.Duration) {
	tb.Helper()
	sessions := []uuid.UUID{uuid.New(), uuid.New()}
	ops := make([]tsdb.Operation, 0, 5000)
	for i := range n {
		file := fmt.Sprintf("src/module_%d/file_%d.go", i%50, i)
		ops = append(ops, tsdb.Operation{
			ID: uuid.Must(uuid.NewV7()), SessionID: sessions[i%2], ToolName: api.ToolNames[i%2],
			OperationMode: api.OperationModes[i%len(api.OperationModes)], Parameters: json.RawMessage(`{"compress":true}`),
			FilePath: &file, TokensOriginal: 5000, TokensActual: 500, TokensPrevented: 4500, ResponseTimeMs: 12.5,
			ToolID: []string{"claude-code", "cursor", "windsurf"}[i%3], CreatedAt: start.Add(time.Duration(int64(span) / int64(n) * int64(i))).Truncate(time.Microsecond),
		})
		if len(ops) == cap(ops) || i == n-1 {
			if err := s.WriteOperations(context.Background(), ops); err != nil {
				tb.Fatal(err)
			}
			ops = ops[:0]
		}
	}
}

// TestExportPlanWalksAnIndexInOrder: for every kind of filter, the export
// query reads an index already in (created_at, id) order, the one the
// filter names, and SQLite neither sorts (no temporary b-tree, which would
// hold every match) nor reads the table in another order; also once the
// planner has statistics (ANALYZE).
func TestExportPlanWalksAnIndexInOrder(t *testing.T) {
	s := openExportStore(t)
	base := time.Date(2025, 1, 14, 0, 0, 0, 0, time.UTC)
	seedExport(t, s, 3000, base, 48*time.Hour)
	session := uuid.New()
	start, end := base.Add(time.Hour), base.Add(30*time.Hour)
	cases := []struct {
		name  string
		f     tsdb.OperationFilter
		index string
	}{
		{"none", tsdb.OperationFilter{}, "idx_ops_time"},
		{"time range", tsdb.OperationFilter{Start: &start, End: &end}, "idx_ops_time"},
		{"tool name", tsdb.OperationFilter{ToolName: api.ToolSearch}, "idx_ops_time"},
		{"tool name and mode", tsdb.OperationFilter{ToolName: api.ToolRead, OperationMode: "full", Start: &start}, "idx_ops_time"},
		{"mode", tsdb.OperationFilter{OperationMode: "symbol"}, "idx_ops_time"},
		{"session", tsdb.OperationFilter{SessionID: &session}, "idx_ops_session_time"},
		{"session and the rest", tsdb.OperationFilter{SessionID: &session, ToolName: api.ToolRead, OperationMode: "full",
			ToolID: "cursor", Start: &start, End: &end}, "idx_ops_session_time"},
		{"tool id", tsdb.OperationFilter{ToolID: "cursor"}, "idx_ops_toolid_time"},
		{"tool id, mode and range", tsdb.OperationFilter{ToolID: "cursor", OperationMode: "full", Start: &start, End: &end}, "idx_ops_toolid_time"},
	}
	check := func(t *testing.T) {
		for _, tc := range cases {
			q, args := exportSQL(tc.f)
			plan := queryPlan(t, s.reader, q, args...)
			text := strings.Join(plan, "; ")
			t.Logf("%s: %s", tc.name, text)
			if len(plan) != 1 || !strings.Contains(text, "USING INDEX "+tc.index) || strings.Contains(text, "TEMP B-TREE") {
				t.Errorf("%s: plan %q, want one step: SEARCH or SCAN tool_operations USING INDEX %s, no temporary b-tree", tc.name, text, tc.index)
			}
		}
	}
	t.Run("fresh", check)
	if _, err := s.writer.ExecContext(t.Context(), "ANALYZE"); err != nil {
		t.Fatal(err)
	}
	t.Run("analyzed", check)
}

// BenchmarkExportOperations reads 1,000,000 operations (30 days) through
// ExportOperations and reports rows/s and the heap's peak rise.
//
//	go test -run '^$' -bench BenchmarkExportOperations -benchtime 3x ./tsdb/sqlite/
func BenchmarkExportOperations(b *testing.B) {
	const n = 1_000_000
	s := openExportStore(b)
	seedExport(b, s, n, time.Date(2025, 5, 1, 0, 0, 0, 0, time.UTC), 30*24*time.Hour)
	for _, bc := range []struct {
		name string
		f    tsdb.OperationFilter
	}{{"all", tsdb.OperationFilter{}}, {"tool_id", tsdb.OperationFilter{ToolID: "cursor"}}} {
		b.Run(bc.name, func(b *testing.B) {
			var rows int
			b.ReportAllocs()
			for b.Loop() {
				rows = 0
				if err := s.ExportOperations(b.Context(), bc.f, func(*tsdb.Operation) error {
					rows++
					return nil
				}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(rows)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
		})
	}
}
