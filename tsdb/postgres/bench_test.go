package postgres_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/omnimemory/omnimemory-metrics/tsdb"
	"github.com/omnimemory/omnimemory-metrics/tsdb/postgres"
)

// BenchmarkWriteOperations measures batch writes into the store on the
// tests' server (ids claimed, rollups and sessions upserted, in one
// transaction); ops/s is the figure to read. The tests' server runs with
// fsync off, so this measures the store's and pgx's work, not the disk.
func BenchmarkWriteOperations(b *testing.B) {
	for _, size := range []int{1, 100, 5000} {
		b.Run(fmt.Sprintf("batch=%d", size), func(b *testing.B) {
			s := open(b, postgres.Config{URL: newDatabase(b)})
			ctx := context.Background()
			sessions := []uuid.UUID{uuid.New(), uuid.New(), uuid.New()}
			next := time.Now().UTC().Add(-24 * time.Hour)
			for b.Loop() {
				b.StopTimer()
				ops := make([]tsdb.Operation, size)
				for i := range ops {
					ops[i] = mkOp(sessions[i%len(sessions)], next, int64(1000+i))
					next = next.Add(time.Millisecond)
				}
				b.StartTimer()
				if err := s.WriteOperations(ctx, ops); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*size)/b.Elapsed().Seconds(), "ops/s")
		})
	}
}
