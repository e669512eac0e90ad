package influx_test

import (
	"context"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/omnimemory/omnimemory-metrics/internal/realtools"
	"github.com/omnimemory/omnimemory-metrics/tsdb"
)

// BenchmarkWriteOperations measures batches of 5,000 operations written by
// 4 goroutines into a real InfluxDB 1.8 through the store: line-protocol
// encoding, the fsynced outbox append, and the drainer's delivery, each
// call returning once InfluxDB took its batch (as the service's batch
// endpoint does). ops/s is the figure; -cpuprofile shows this side's cost
// (influxd's own runs in its process).
func BenchmarkWriteOperations(b *testing.B) {
	srv := realtools.SharedInfluxd(b)
	s := open(b, config(b, srv))
	const size, writers = 5000, 4
	session := uuid.New()
	var seq atomic.Int64
	base := time.Now().Add(-24 * time.Hour)
	batch := func() []tsdb.Operation {
		n := seq.Add(1)
		ops := make([]tsdb.Operation, size)
		for i := range ops {
			at := base.Add(time.Duration(n*size+int64(i)) * time.Millisecond)
			ops[i] = tsdb.Operation{
				ID: uuid.New(), SessionID: session, ToolName: "read", OperationMode: "symbol",
				TokensOriginal: 5000, TokensActual: 500, TokensPrevented: 4500, ResponseTimeMs: 12.5,
				ToolID: "claude-code", CreatedAt: at,
			}
		}
		return ops
	}
	b.SetParallelism(max(1, writers/runtime.GOMAXPROCS(0)))
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := s.WriteOperations(context.Background(), batch()); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N*size)/b.Elapsed().Seconds(), "ops/s")
}
