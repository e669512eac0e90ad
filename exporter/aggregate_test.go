package exporter_test

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/omnimemory/omnimemory-metrics/client/api"
	"github.com/omnimemory/omnimemory-metrics/exporter"
	"github.com/omnimemory/omnimemory-metrics/tsdb"
	"github.com/omnimemory/omnimemory-metrics/tsdb/sqlite"
)

// TestAggregateCostOrder: order_by=cost_saved ranks as tokens_prevented,
// and at a price of 0, where every cost is 0, by the key alone.
func TestAggregateCostOrder(t *testing.T) {
	at := time.Date(2025, 1, 14, 10, 0, 0, 0, time.UTC)
	ops := []tsdb.Operation{
		operation(at, "claude-code", api.ToolRead, api.ModeFull, 100, 90),   // prevents 10
		operation(at, "windsurf", api.ToolRead, api.ModeFull, 1000, 0),      // prevents 1000
		operation(at, "cursor", api.ToolSearch, api.ModeSemantic, 500, 100), // prevents 400
	}
	store, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "m.db"), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	if err := store.WriteOperations(context.Background(), ops); err != nil {
		t.Fatal(err)
	}
	req := exporter.AggregateRequest{GroupBy: []tsdb.Dimension{tsdb.DimToolID}, OrderBy: api.OrderCostSaved, Limit: 10}
	for _, tc := range []struct {
		price float64
		want  []string
		costs []float64
	}{
		{0.015, []string{"windsurf", "cursor", "claude-code"}, []float64{0.015, 0.006, 0.00015}},
		{0, []string{"claude-code", "cursor", "windsurf"}, []float64{0, 0, 0}},
	} {
		rep := exporter.NewReporter(store, exporter.Pricing{PerThousandUSD: tc.price}, nil)
		got, err := rep.Aggregate(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		for i, g := range got.Groups {
			if *g.Key[api.DimToolID] != tc.want[i] || g.CostSaved != tc.costs[i] {
				t.Errorf("price %v: group %d is %s at %v, want %s at %v", tc.price, i, *g.Key[api.DimToolID], g.CostSaved, tc.want[i], tc.costs[i])
			}
		}
	}
}

// TestParseGroupBy: one to three distinct dimensions, comma-separated,
// exactly as named.
func TestParseGroupBy(t *testing.T) {
	for in, ok := range map[string]bool{
		"file_path": true, "hour,day,project_id": true, "session_id,tool_id": true,
		"": false, "file_path,": false, "FILE_PATH": false, "day, hour": false, "day,day": false, "hour,day,tool_id,tool_name": false, "model": false,
	} {
		dims, err := exporter.ParseGroupBy(in)
		if (err == nil) != ok || ok && len(dims) == 0 {
			t.Errorf("ParseGroupBy(%q) = %v, %v; want ok %v", in, dims, err, ok)
		}
	}
}
