package postgres_test

import (
	"context"
	"fmt"
	"slices"
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
// batch=N draws random ids (as a client may send); ordered=N draws
// time-ordered ones, as the service does for an operation sent without
// one (exporter.OperationID).
func BenchmarkWriteOperations(b *testing.B) {
	for _, bc := range []struct {
		name    string
		size    int
		ordered bool
	}{{"batch", 1, false}, {"batch", 100, false}, {"batch", 5000, false}, {"ordered", 5000, true}} {
		size := bc.size
		b.Run(fmt.Sprintf("%s=%d", bc.name, size), func(b *testing.B) {
			s := open(b, postgres.Config{URL: newDatabase(b)})
			ctx := context.Background()
			sessions := []uuid.UUID{uuid.New(), uuid.New(), uuid.New()}
			next := time.Now().UTC().Add(-24 * time.Hour)
			for b.Loop() {
				b.StopTimer()
				ops := make([]tsdb.Operation, size)
				for i := range ops {
					ops[i] = mkOp(sessions[i%len(sessions)], next, int64(1000+i))
					if bc.ordered {
						ops[i].ID = uuid.Must(uuid.NewV7())
					}
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
	// A batch of 5,000 retried whole: every id is stored already, so the
	// write first guessed wrong (all new) and then claims the ids.
	b.Run("retry=5000", func(b *testing.B) {
		s := open(b, postgres.Config{URL: newDatabase(b)})
		ctx := context.Background()
		sessions := []uuid.UUID{uuid.New(), uuid.New(), uuid.New()}
		at := time.Now().UTC().Add(-24 * time.Hour)
		ops := make([]tsdb.Operation, 5000)
		for i := range ops {
			ops[i] = mkOp(sessions[i%len(sessions)], at.Add(time.Duration(i)*time.Millisecond), int64(1000+i))
		}
		if err := s.WriteOperations(ctx, ops); err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			if err := s.WriteOperations(ctx, ops); err != nil {
				b.Fatal(err)
			}
		}
		if !ops[0].Duplicate {
			b.Fatal("a retried operation is not marked Duplicate")
		}
		b.ReportMetric(float64(b.N*len(ops))/b.Elapsed().Seconds(), "ops/s")
	})
}

// BenchmarkExpireBatch measures one ExpireBefore call on a backlog of
// 100,000 operations written in arrival order (time-ordered ids): "delete"
// deletes 1,000 operations and their ids from a month that is not wholly
// expired; "walk" deletes the ids of 1,000 rows of a month wholly expired,
// whose partition is dropped at the end instead of deleted row by row. The
// backlog holds 100 batches: run it with -benchtime=60x.
func BenchmarkExpireBatch(b *testing.B) {
	for _, bc := range []struct {
		name          string
		start, cutoff time.Time
	}{
		{"delete", time.Date(2025, 1, 15, 0, 0, 0, 0, time.UTC), time.Date(2025, 1, 25, 0, 0, 0, 0, time.UTC)},
		{"walk", time.Date(2024, 12, 15, 0, 0, 0, 0, time.UTC), time.Date(2025, 1, 25, 0, 0, 0, 0, time.UTC)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			s := open(b, postgres.Config{URL: newDatabase(b)})
			ctx := context.Background()
			sessions := []uuid.UUID{uuid.New(), uuid.New(), uuid.New()}
			const backlog = 100_000
			for i := 0; i < backlog; i += 5000 {
				ops := make([]tsdb.Operation, 5000)
				for j := range ops {
					ops[j] = mkOp(sessions[j%3], bc.start.Add(time.Duration(i+j)*5*time.Second), 1000)
					ops[j].ID = uuid.Must(uuid.NewV7())
				}
				if err := s.WriteOperations(ctx, ops); err != nil {
					b.Fatal(err)
				}
			}
			var took []time.Duration
			for b.Loop() {
				t0 := time.Now()
				ex, err := s.ExpireBefore(ctx, bc.cutoff, 1000)
				if err != nil {
					b.Fatal(err)
				}
				took = append(took, time.Since(t0))
				if !ex.More {
					b.Fatal("the backlog is used up: run with a smaller -benchtime")
				}
			}
			slices.Sort(took)
			b.ReportMetric(float64(took[len(took)/2])/1e6, "p50-ms")
			b.ReportMetric(float64(took[len(took)*95/100])/1e6, "p95-ms")
			b.ReportMetric(float64(b.N*1000)/b.Elapsed().Seconds(), "rows/s")
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
