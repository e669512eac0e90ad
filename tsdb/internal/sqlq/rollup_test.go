package sqlq

import (
	"reflect"
	"testing"
	"time"

	"github.com/omnimemory/omnimemory-metrics/tsdb"
	"github.com/omnimemory/omnimemory-metrics/tsdb/storetest"
)

// TestOpRollups: a batch is summed per bucket and key (or per bucket alone),
// cache lookups and hits counting only the operations whose cache_hit is
// known, in (start, tool id, tool name, mode) order whatever the order of
// the batch.
func TestOpRollups(t *testing.T) {
	h := time.Date(2025, 1, 14, 10, 0, 0, 0, time.UTC)
	op := func(at time.Time, toolID, mode string, orig int64, hit *bool) tsdb.Operation {
		return tsdb.Operation{ToolName: "read", OperationMode: mode, ToolID: toolID, CreatedAt: at,
			TokensOriginal: orig, TokensActual: 1, TokensPrevented: orig - 1, ResponseTimeMs: 2, CacheHit: hit}
	}
	ops := []tsdb.Operation{
		op(h.Add(90*time.Minute), "b", "full", 10, ptr(true)),
		op(h.Add(time.Minute), "b", "full", 20, nil),
		op(h.Add(2*time.Minute), "a", "symbol", 30, ptr(false)),
		op(h.Add(3*time.Minute), "b", "full", 40, ptr(true)),
	}
	ops[0].FilePath, ops[1].FilePath, ops[3].FilePath = ptr("b.go"), ptr("a.go"), ptr("a.go")
	row := func(start time.Time, toolID, mode string, n, orig, lookups, hits int64) OpRollup {
		r := OpRollup{Start: start.UnixMicro(), ToolID: toolID, Mode: mode, Cache: tsdb.CacheCounts{Lookups: lookups, Hits: hits},
			Totals: tsdb.Totals{Count: n, TokensOriginal: orig, TokensActual: n, TokensPrevented: orig - n, ResponseTimeSumMs: 2 * float64(n)}}
		if toolID != "" {
			r.ToolName = "read"
		}
		return r
	}
	file := func(r OpRollup, path string) OpRollup { // "": none
		r.FileNull, r.FilePath = path == "", path
		return r
	}
	for _, tc := range []struct {
		name  string
		width int64
		key   RollupKey
		want  []OpRollup
	}{
		{"hourly", tsdb.MicrosPerHour, ByTool, []OpRollup{
			row(h, "a", "symbol", 1, 30, 1, 0), row(h, "b", "full", 2, 60, 1, 1), row(h.Add(time.Hour), "b", "full", 1, 10, 1, 1)}},
		{"daily", tsdb.MicrosPerDay, ByTool, []OpRollup{
			row(h.Truncate(24*time.Hour), "a", "symbol", 1, 30, 1, 0), row(h.Truncate(24*time.Hour), "b", "full", 3, 70, 2, 2)}},
		{"hourly, all keys", tsdb.MicrosPerHour, ByBucket, []OpRollup{
			row(h, "", "", 3, 90, 2, 1), row(h.Add(time.Hour), "", "", 1, 10, 1, 1)}},
		{"daily, by file", tsdb.MicrosPerDay, ByFile, []OpRollup{
			file(row(h.Truncate(24*time.Hour), "", "", 2, 60, 1, 1), "a.go"),
			file(row(h.Truncate(24*time.Hour), "", "", 1, 10, 1, 1), "b.go"),
			file(row(h.Truncate(24*time.Hour), "", "", 1, 30, 1, 0), "")}},
	} {
		if got := OpRollups(ops, tc.width, tc.key); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s:\ngot  %+v\nwant %+v", tc.name, got, tc.want)
		}
	}
}

// BenchmarkOpRollups sums a batch of 5,000 operations in time order over
// 1.8 hours (a 1/400 slice of 30 days, as the benchmark's batches send
// them) into the rows of every rollup a store keeps.
func BenchmarkOpRollups(b *testing.B) {
	ops := storetest.NewScale(1).Live(5000, time.Date(2025, 1, 14, 10, 0, 0, 0, time.UTC), 108*time.Minute)
	for b.Loop() {
		OpRollups(ops, tsdb.MicrosPerHour, ByTool)
		OpRollups(ops, tsdb.MicrosPerDay, ByTool)
		OpRollups(ops, tsdb.MicrosPerHour, ByBucket)
		OpRollups(ops, tsdb.MicrosPerDay, ByFile)
		OpRollups(ops, tsdb.MicrosPerDay, BySession)
	}
	b.ReportMetric(float64(b.N*len(ops))/b.Elapsed().Seconds(), "ops/s")
}
