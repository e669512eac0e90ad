package influx_test

import (
	"context"
	"encoding/json"
	"math/rand"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/omnimemory/omnimemory-metrics/internal/testinflux"
	"github.com/omnimemory/omnimemory-metrics/tsdb"
)

// BenchmarkQueries times every query over operations spread over 30 days
// (OMNIMEMORY_INFLUX_SCALE of them, default 200,000; 300 sessions, 3 tool
// ids), e.g.
//
//	go test -run '^$' -bench Queries -benchtime 3x ./tsdb/influx/
func BenchmarkQueries(b *testing.B) {
	n, _ := strconv.Atoi(os.Getenv("OMNIMEMORY_INFLUX_SCALE"))
	if n <= 0 {
		n = 200_000
	}
	cfg := config(b, testinflux.Shared(b))
	cfg.WriteTimeout = time.Minute
	cfg.QueryTimeout = 10 * time.Minute
	s := open(b, cfg)
	ctx := context.Background()
	r := rand.New(rand.NewSource(1))
	end := time.Date(2025, 6, 30, 0, 0, 0, 0, time.UTC)
	span := int64(30 * 24 * time.Hour / time.Microsecond)
	sessions := make([]uuid.UUID, 300)
	for i := range sessions {
		sessions[i] = uuid.New()
	}
	start := time.Now()
	const batch = 5000
	for i := 0; i < n; i += batch {
		ops := make([]tsdb.Operation, 0, batch)
		for j := 0; j < batch && i+j < n; j++ {
			ops = append(ops, tsdb.Operation{
				ID: uuid.New(), SessionID: sessions[r.Intn(len(sessions))], ToolName: tsdb.ToolNames[r.Intn(2)],
				OperationMode: tsdb.OperationModes[r.Intn(6)], Parameters: json.RawMessage(`{"q":"x"}`),
				TokensOriginal: r.Int63n(10000), TokensActual: r.Int63n(3000), TokensPrevented: r.Int63n(7000),
				ResponseTimeMs: float64(r.Intn(4000)) / 8, ToolID: []string{"claude-code", "cursor", "windsurf"}[r.Intn(3)],
				CreatedAt: end.Add(-time.Duration(r.Int63n(span)) * time.Microsecond),
			})
		}
		if err := s.WriteOperations(ctx, ops); err != nil {
			b.Fatal(err)
		}
	}
	b.Logf("wrote %d operations in %v", n, time.Since(start))
	from := end.AddDate(0, 0, -30)
	day := end.AddDate(0, 0, -1)
	for _, q := range []struct {
		name string
		f    func() error
	}{
		{"Breakdown30d", func() error { _, err := s.Breakdown(ctx, tsdb.Window{Start: &from, End: end}); return err }},
		{"Breakdown24h", func() error { _, err := s.Breakdown(ctx, tsdb.Window{Start: &day, End: end}); return err }},
		{"Trend30dDaily", func() error { _, err := s.Trend(ctx, tsdb.Window{Start: &from, End: end}, tsdb.Daily); return err }},
		{"Trend24hHourly", func() error { _, err := s.Trend(ctx, tsdb.Window{Start: &day, End: end}, tsdb.Hourly); return err }},
		{"QueryOperationsFirstPage", func() error {
			_, err := s.QueryOperations(ctx, tsdb.OperationFilter{Limit: 100})
			return err
		}},
		{"QueryOperationsSession", func() error {
			_, err := s.QueryOperations(ctx, tsdb.OperationFilter{SessionID: &sessions[0], Limit: 100})
			return err
		}},
		{"FirstOperationTime", func() error { _, _, err := s.FirstOperationTime(ctx, ""); return err }},
		{"GetSession", func() error { _, err := s.GetSession(ctx, sessions[0]); return err }},
		{"ActiveSessions30d", func() error { _, err := s.ActiveSessions(ctx, "", from); return err }},
	} {
		b.Run(q.name, func(b *testing.B) {
			for b.Loop() {
				if err := q.f(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
