package postgres_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/omnimemory/omnimemory-metrics/tsdb"
	"github.com/omnimemory/omnimemory-metrics/tsdb/postgres"
	"github.com/omnimemory/omnimemory-metrics/tsdb/storetest"
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

// BenchmarkAggregateAtScale seeds OMNIMEMORY_POSTGRES_SCALE operations
// (default 2,000,000; skipped with -short) over 30 days in time order, in
// WriteOperations batches of 5000 as the service writes them, on the tests'
// server, then times the groupings of GET /metrics/aggregate
// (storetest.BenchAggregates) and reports p50 and p95 in milliseconds, e.g.
//
//	go test -run '^$' -bench 'AggregateAtScale/AggregateFilePath' -benchtime 20x ./tsdb/postgres/
func BenchmarkAggregateAtScale(b *testing.B) {
	if testing.Short() {
		b.Skip("seeds millions of operations")
	}
	n := storetest.ScaleSize("OMNIMEMORY_POSTGRES_SCALE")
	s := open(b, postgres.Config{URL: newDatabase(b)})
	span := 30 * 24 * time.Hour
	from := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	start := time.Now()
	storetest.NewScale(3).Seed(b, s, n, from, span)
	b.Logf("seeded %d operations in %v (%.0f ops/s)", n, time.Since(start), float64(n)/time.Since(start).Seconds())
	storetest.BenchAggregates(b, s, from.Add(span))
}
