package sqlite

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/omnimemory/omnimemory-metrics/client/api"

	"github.com/google/uuid"

	"github.com/omnimemory/omnimemory-metrics/tsdb"
	"github.com/omnimemory/omnimemory-metrics/tsdb/storetest"
)

func openBench(b *testing.B) *Store {
	b.Helper()
	s, err := Open(context.Background(), filepath.Join(b.TempDir(), "metrics.db"), nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s
}

// BenchmarkWriteOperations measures durable (synchronous=FULL) batch inserts,
// rollups and session upserts included; ops/s is the figure to read, and
// cpu-us/op the process's CPU per operation (without the fsync waits,
// which vary with the disk's other work). batch=16 is the commit of
// single-operation ingest at 32 connections, over 50 sessions, as
// omnimemory-load sends it.
func BenchmarkWriteOperations(b *testing.B) {
	for _, bc := range []struct {
		size     int
		v7       bool
		sessions int // drawn from this many (0: eight new ones per batch)
	}{{1, false, 0}, {16, true, 50}, {100, false, 0}, {1000, false, 0}, {1000, true, 0}, {5000, false, 0}, {5000, true, 0}} {
		size := bc.size
		name := fmt.Sprintf("batch=%d", size)
		if bc.v7 {
			name += "/uuidv7"
		}
		b.Run(name, func(b *testing.B) {
			s := openBench(b)
			r := rand.New(rand.NewSource(1))
			ctx := context.Background()
			// Operations arrive roughly in time order (created_at is "now"),
			// 1 ms apart; ids are random (UUID v4), the worst case for the
			// primary-key index. Generation is outside the timer.
			next := day0
			pool := make([]uuid.UUID, bc.sessions)
			for i := range pool {
				pool[i] = uuid.New()
			}
			gen := func() []tsdb.Operation {
				ops := genOps(r, size, day0, time.Microsecond)
				for j := range ops {
					ops[j].CreatedAt = next
					next = next.Add(time.Millisecond)
					if bc.v7 {
						ops[j].ID = uuid.Must(uuid.NewV7())
					}
					if len(pool) > 0 {
						ops[j].SessionID = pool[r.Intn(len(pool))]
					}
				}
				return ops
			}
			var cpu time.Duration
			for b.Loop() {
				b.StopTimer()
				batch := gen()
				b.StartTimer()
				start := processCPU()
				if err := s.WriteOperations(ctx, batch); err != nil {
					b.Fatal(err)
				}
				cpu += processCPU() - start
			}
			b.ReportMetric(float64(b.N*size)/b.Elapsed().Seconds(), "ops/s")
			b.ReportMetric(float64(cpu.Microseconds())/float64(b.N*size), "cpu-us/op")
		})
	}
}

// BenchmarkBreakdown30d compares a 30-day breakdown and trends over 200,000
// operations answered by the store (rollups for whole hours, raw rows for the
// partial edges) with a plain GROUP BY over the raw rows of the same window.
func BenchmarkBreakdown30d(b *testing.B) {
	s := openBench(b)
	ctx := context.Background()
	r := rand.New(rand.NewSource(2))
	const total = 200_000
	for i := 0; i < total; i += 5000 {
		if err := s.WriteOperations(ctx, genOps(r, 5000, day0, 30*24*time.Hour)); err != nil {
			b.Fatal(err)
		}
	}
	start := day0.Add(17*time.Minute + 23*time.Second + 123456*time.Microsecond)
	end := day0.Add(30*24*time.Hour - 54*time.Minute)
	w := tsdb.Window{Start: &start, End: end}

	b.Run("store", func(b *testing.B) {
		for b.Loop() {
			if _, err := s.Breakdown(ctx, w); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("store_tool_id", func(b *testing.B) {
		w := w
		w.ToolID = "cursor"
		for b.Loop() {
			if _, err := s.Breakdown(ctx, w); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("store_trend_hourly", func(b *testing.B) {
		for b.Loop() {
			if _, err := s.Trend(ctx, w, tsdb.Hourly); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("store_trend_daily", func(b *testing.B) {
		for b.Loop() {
			if _, err := s.Trend(ctx, w, tsdb.Daily); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("list_first_page", func(b *testing.B) {
		for b.Loop() {
			page, err := s.QueryOperations(ctx, tsdb.OperationFilter{Limit: 100})
			if err != nil {
				b.Fatal(err)
			}
			if page.Total != total {
				b.Fatalf("Total %d", page.Total)
			}
		}
	})
	b.Run("list_first_page_raw_count", func(b *testing.B) {
		for b.Loop() {
			var n int64
			if err := s.reader.QueryRowContext(ctx, `SELECT count(*) FROM tool_operations`).Scan(&n); err != nil {
				b.Fatal(err)
			}
			rows, err := s.reader.QueryContext(ctx, `SELECT `+opColumnList+` FROM tool_operations
				ORDER BY created_at DESC, id DESC LIMIT 100`)
			if err != nil {
				b.Fatal(err)
			}
			for rows.Next() {
				if _, err := scanOperation(rows); err != nil {
					b.Fatal(err)
				}
			}
			rows.Close()
		}
	})
	filtered := tsdb.OperationFilter{Limit: 100, ToolName: api.ToolRead, Start: &start, End: &end}
	b.Run("list_filtered", func(b *testing.B) {
		for b.Loop() {
			if _, err := s.QueryOperations(ctx, filtered); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("list_filtered_raw_count", func(b *testing.B) {
		for b.Loop() {
			var n int64
			if err := s.reader.QueryRowContext(ctx, `SELECT count(*) FROM tool_operations
				WHERE tool_name = ? AND created_at >= ? AND created_at <= ?`,
				api.ToolRead, start.UnixMicro(), end.UnixMicro()).Scan(&n); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("raw_group_by", func(b *testing.B) {
		for b.Loop() {
			rows, err := s.reader.QueryContext(ctx, `SELECT tool_name, operation_mode, count(*),
				sum(tokens_original), sum(tokens_actual), sum(tokens_prevented), sum(response_time_ms)
				FROM tool_operations WHERE created_at >= ? AND created_at <= ?
				GROUP BY tool_name, operation_mode`, start.UnixMicro(), end.UnixMicro())
			if err != nil {
				b.Fatal(err)
			}
			n := 0
			for rows.Next() {
				n++
			}
			if err := rows.Err(); err != nil {
				b.Fatal(err)
			}
			rows.Close()
			if n == 0 {
				b.Fatal("no rows")
			}
		}
	})
}

// BenchmarkAggregatesAtScale seeds OMNIMEMORY_SQLITE_SCALE operations
// (default 2,000,000; skipped with -short) over 30 days in time order,
// through WriteOperations batches of 5000 as the service writes them, then
// times every aggregate the API asks for over windows of 1h, 24h, 7d, 30d
// and no lower bound, each ending at a different instant of the last hour,
// and the groupings of GET /metrics/aggregate (storetest.BenchAggregates),
// and reports p50 and p95 in milliseconds, e.g.
//
//	go test -run '^$' -bench AggregatesAtScale -benchtime 40x ./tsdb/sqlite/
//	go test -run '^$' -bench 'AggregatesAtScale/AggregateFilePath' -benchtime 20x ./tsdb/sqlite/
func BenchmarkAggregatesAtScale(b *testing.B) {
	if testing.Short() {
		b.Skip("seeds millions of operations")
	}
	n := storetest.ScaleSize("OMNIMEMORY_SQLITE_SCALE")
	// OMNIMEMORY_SQLITE_ORDER=scattered: every batch spreads over the whole
	// 30 days (as omnimemory-load seeds), so rows of one hour are far apart
	// in the table; otherwise batches arrive in time order, as live traffic.
	scattered := os.Getenv("OMNIMEMORY_SQLITE_ORDER") == "scattered"
	s := openBench(b)
	ctx := context.Background()
	scale := storetest.NewScale(3)
	const batch = 5000
	span := 30 * 24 * time.Hour
	end := day0.Add(span)
	start := time.Now()
	if scattered {
		for i := 0; i < n; i += batch {
			if err := s.WriteOperations(ctx, scale.Live(min(batch, n-i), day0, span)); err != nil {
				b.Fatal(err)
			}
		}
	} else {
		scale.Seed(b, s, n, day0, span)
	}
	b.Logf("seeded %d operations in %v (%.0f ops/s)", n, time.Since(start), float64(n)/time.Since(start).Seconds())

	// now: a different instant of the data's last hour on every call.
	now := func(i int) time.Time {
		return end.Add(-time.Duration(int64(i)*7919%3600_000_000) * time.Microsecond)
	}
	for _, rg := range []struct {
		name string
		d    time.Duration // 0: no lower bound
	}{{"1h", time.Hour}, {"24h", 24 * time.Hour}, {"7d", 7 * 24 * time.Hour}, {"30d", 30 * 24 * time.Hour}, {"all", 0}} {
		window := func(i int, toolID string) tsdb.Window {
			w := tsdb.Window{ToolID: toolID, End: now(i)}
			if rg.d > 0 {
				w.Start = ptr(w.End.Add(-rg.d))
			}
			return w
		}
		for _, q := range []struct {
			name string
			f    func(i int) error
		}{
			{"Breakdown", func(i int) error { _, err := s.Breakdown(ctx, window(i, "")); return err }},
			{"BreakdownToolID", func(i int) error { _, err := s.Breakdown(ctx, window(i, "cursor")); return err }},
			{"TrendHourly", func(i int) error { _, err := s.Trend(ctx, window(i, ""), tsdb.Hourly); return err }},
			{"TrendDaily", func(i int) error { _, err := s.Trend(ctx, window(i, ""), tsdb.Daily); return err }},
			{"ListFirstPage", func(i int) error {
				w := window(i, "")
				_, err := s.QueryOperations(ctx, tsdb.OperationFilter{Start: w.Start, End: &w.End, Limit: 100})
				return err
			}},
		} {
			b.Run(q.name+"/"+rg.name, func(b *testing.B) { storetest.TimeCalls(b, q.f) })
		}
	}
	storetest.BenchAggregates(b, s, end)
	for _, id := range []string{"", "cursor"} {
		b.Run("FirstOperationTime/"+id, func(b *testing.B) {
			storetest.TimeCalls(b, func(int) error { _, _, err := s.FirstOperationTime(ctx, id); return err })
		})
	}
	// The process's resident memory: the store's page caches, at most
	// writerCacheKiB + readers × readerCacheKiB, are in it.
	if status, err := os.ReadFile("/proc/self/status"); err == nil {
		for _, line := range strings.Split(string(status), "\n") {
			if strings.HasPrefix(line, "VmRSS:") || strings.HasPrefix(line, "VmHWM:") {
				b.Log(strings.Join(strings.Fields(line), " "))
			}
		}
	}
}

// fillExpired writes n operations over the 100 hours before day0, in
// batches of 5,000: a backlog for retention to delete. inOrder: as live
// ingest writes them, in created_at order with time-ordered (v7) ids, so
// that neighbours in time share pages; else in random order with random
// ids (as an import of old data may), the worst case.
func fillExpired(b *testing.B, s *Store, r *rand.Rand, n int, inOrder bool) {
	b.Helper()
	start := day0.Add(-100 * time.Hour)
	step := 100 * time.Hour / time.Duration(n)
	for i := 0; i < n; i += 5000 {
		ops := genOps(r, min(5000, n-i), start, 100*time.Hour)
		if inOrder {
			for j := range ops {
				ops[j].CreatedAt = start.Add(time.Duration(i+j) * step).Truncate(time.Microsecond)
				ops[j].ID = uuid.Must(uuid.NewV7())
			}
		}
		if err := s.WriteOperations(context.Background(), ops); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkExpireBatch measures one ExpireBefore call that deletes a batch
// of 1,000 operations (and their index entries) from a backlog, in its
// own durable transaction; ms per batch is the time ingest may wait
// behind one. The backlog holds 100 batches: run it with -benchtime=60x.
func BenchmarkExpireBatch(b *testing.B) {
	for _, inOrder := range []bool{true, false} {
		b.Run(fmt.Sprintf("arrival_order=%v", inOrder), func(b *testing.B) {
			s := openBench(b)
			r := rand.New(rand.NewSource(2))
			const backlog = 100_000
			fillExpired(b, s, r, backlog, inOrder)
			storetest.TimeCalls(b, func(i int) error {
				if i > 0 && i%(backlog/1000) == 0 {
					return errors.New("the backlog is used up: run with a smaller -benchtime")
				}
				_, err := s.ExpireBefore(context.Background(), day0, 1000)
				return err
			})
			b.ReportMetric(float64(b.N*1000)/b.Elapsed().Seconds(), "rows/s")
		})
	}
}

// BenchmarkWriteWhileExpiring measures commits of 10 operations, the size
// of a group commit under moderate load, alone and while retention deletes
// a backlog (in arrival order) in batches of 1,000 with its default pause
// of 100 ms between them: the p95 shows what a commit waits behind a
// batch.
func BenchmarkWriteWhileExpiring(b *testing.B) {
	for _, expiring := range []bool{false, true} {
		b.Run(fmt.Sprintf("expiring=%v", expiring), func(b *testing.B) {
			s := openBench(b)
			r := rand.New(rand.NewSource(3))
			fillExpired(b, s, r, 200_000, true)
			stop, done := make(chan struct{}), make(chan struct{})
			go func() {
				defer close(done)
				for expiring {
					if _, err := s.ExpireBefore(context.Background(), day0, 1000); err != nil {
						b.Error(err)
						return
					}
					select {
					case <-stop:
						return
					case <-time.After(100 * time.Millisecond):
					}
				}
			}()
			next := day0
			storetest.TimeCalls(b, func(int) error {
				ops := genOps(r, 10, next, time.Millisecond)
				next = next.Add(time.Millisecond)
				return s.WriteOperations(context.Background(), ops)
			})
			close(stop)
			<-done
		})
	}
}
