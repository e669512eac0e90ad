package sqlite

import (
	"context"
	"fmt"
	"math/rand"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/omnimemory/omnimemory-metrics/tsdb"
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
// rollups and session upserts included; ops/s is the figure to read.
func BenchmarkWriteOperations(b *testing.B) {
	for _, bc := range []struct {
		size int
		v7   bool
	}{{1, false}, {100, false}, {1000, false}, {1000, true}} {
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
			gen := func() []tsdb.Operation {
				ops := genOps(r, size, day0, time.Microsecond)
				for j := range ops {
					ops[j].CreatedAt = next
					next = next.Add(time.Millisecond)
					if bc.v7 {
						ops[j].ID = uuid.Must(uuid.NewV7())
					}
				}
				return ops
			}
			for b.Loop() {
				b.StopTimer()
				batch := gen()
				b.StartTimer()
				if err := s.WriteOperations(ctx, batch); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*size)/b.Elapsed().Seconds(), "ops/s")
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
	filtered := tsdb.OperationFilter{Limit: 100, ToolName: tsdb.ToolRead, Start: &start, End: &end}
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
				tsdb.ToolRead, start.UnixMicro(), end.UnixMicro()).Scan(&n); err != nil {
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
