package influx_test

import (
	"context"
	"encoding/json"
	"math/rand"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/omnimemory/omnimemory-metrics/client/api"

	"github.com/google/uuid"

	"github.com/omnimemory/omnimemory-metrics/internal/realtools"
	"github.com/omnimemory/omnimemory-metrics/tsdb"
	"github.com/omnimemory/omnimemory-metrics/tsdb/influx"
)

// BenchmarkQueries times every query over operations spread over 30 days
// (OMNIMEMORY_INFLUX_SCALE of them, default 200,000; 300 sessions, 3 tool
// ids) and spend points spread over the same days
// (OMNIMEMORY_INFLUX_SPEND_SCALE, default 100,000; the same sessions and
// tool ids, 3 models), e.g.
//
//	go test -run '^$' -bench Queries -benchtime 3x ./tsdb/influx/
//	go test -run '^$' -bench 'Queries/Spend' -benchtime 3x ./tsdb/influx/
func BenchmarkQueries(b *testing.B) {
	n, _ := strconv.Atoi(os.Getenv("OMNIMEMORY_INFLUX_SCALE"))
	if n <= 0 {
		n = 200_000
	}
	nSpend, _ := strconv.Atoi(os.Getenv("OMNIMEMORY_INFLUX_SPEND_SCALE"))
	if nSpend <= 0 {
		nSpend = 100_000
	}
	cfg := config(b, realtools.SharedInfluxd(b))
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
				ID: uuid.New(), SessionID: sessions[r.Intn(len(sessions))], ToolName: api.ToolNames[r.Intn(2)],
				OperationMode: api.OperationModes[r.Intn(6)], Parameters: json.RawMessage(`{"q":"x"}`),
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
	start = time.Now()
	for i := 0; i < nSpend; i += batch {
		points := make([]tsdb.SpendPoint, 0, batch)
		for j := 0; j < batch && i+j < nSpend; j++ {
			points = append(points, tsdb.SpendPoint{
				ID: uuid.New(), SessionID: &sessions[r.Intn(len(sessions))],
				ToolID: []string{"claude-code", "cursor", "windsurf"}[r.Intn(3)],
				Model:  []string{"claude-sonnet-4", "claude-opus-4", "gpt-5"}[r.Intn(3)],
				Time:   end.Add(-time.Duration(r.Int63n(span)) * time.Microsecond), CostUSD: float64(r.Intn(1000)) / 1000,
				Tokens: tsdb.Tokens{Input: r.Int63n(20000), Output: r.Int63n(2000), CacheRead: r.Int63n(50000), CacheCreation: r.Int63n(5000)},
			})
		}
		if err := s.WriteSpend(ctx, points); err != nil {
			b.Fatal(err)
		}
	}
	b.Logf("wrote %d spend points in %v", nSpend, time.Since(start))
	// The same database through a store without the hourly cache, and
	// through fresh stores (a cold cache) for the first call.
	ncfg := cfg
	ncfg.OutboxDir = b.TempDir() + "/uncached"
	ncfg.CacheMaxRows = -1
	nc := open(b, ncfg)
	fresh := func() *influx.Store {
		c := cfg
		c.OutboxDir = b.TempDir() + "/cold"
		st, err := influx.Open(ctx, c, nil)
		if err != nil {
			b.Fatal(err)
		}
		return st
	}
	from := end.AddDate(0, 0, -30)
	day := end.AddDate(0, 0, -1)
	for _, q := range []struct {
		name   string
		cached bool // compare cold and warm cache with no cache
		f      func(s *influx.Store) error
	}{
		{"Breakdown30d", true, func(s *influx.Store) error {
			_, err := s.Breakdown(ctx, tsdb.Window{Start: &from, End: end})
			return err
		}},
		{"Breakdown24h", true, func(s *influx.Store) error {
			_, err := s.Breakdown(ctx, tsdb.Window{Start: &day, End: end})
			return err
		}},
		{"BreakdownAll", true, func(s *influx.Store) error { _, err := s.Breakdown(ctx, tsdb.Window{End: end}); return err }},
		{"Trend30dDaily", true, func(s *influx.Store) error {
			_, err := s.Trend(ctx, tsdb.Window{Start: &from, End: end}, tsdb.Daily)
			return err
		}},
		{"Trend30dHourly", true, func(s *influx.Store) error {
			_, err := s.Trend(ctx, tsdb.Window{Start: &from, End: end}, tsdb.Hourly)
			return err
		}},
		{"Trend24hHourly", true, func(s *influx.Store) error {
			_, err := s.Trend(ctx, tsdb.Window{Start: &day, End: end}, tsdb.Hourly)
			return err
		}},
		{"QueryOperationsFirstPage", true, func(s *influx.Store) error {
			_, err := s.QueryOperations(ctx, tsdb.OperationFilter{Limit: 100})
			return err
		}},
		{"QueryOperationsFirstPage30dRead", true, func(s *influx.Store) error {
			_, err := s.QueryOperations(ctx, tsdb.OperationFilter{Start: &from, End: &end, ToolName: api.ToolRead, Limit: 100})
			return err
		}},
		{"SpendBreakdown30d", true, func(s *influx.Store) error {
			_, err := s.SpendBreakdown(ctx, tsdb.Window{Start: &from, End: end})
			return err
		}},
		{"SpendTrend30dDaily", true, func(s *influx.Store) error {
			_, err := s.SpendTrend(ctx, tsdb.Window{Start: &from, End: end}, tsdb.Daily)
			return err
		}},
		{"QueryOperationsSession", false, func(s *influx.Store) error {
			_, err := s.QueryOperations(ctx, tsdb.OperationFilter{SessionID: &sessions[0], Limit: 100})
			return err
		}},
		{"FirstOperationTime", true, func(s *influx.Store) error { _, _, err := s.FirstOperationTime(ctx, ""); return err }},
		{"GetSession", false, func(s *influx.Store) error { _, err := s.GetSession(ctx, sessions[0]); return err }},
		{"ActiveSessions30d", false, func(s *influx.Store) error { _, err := s.ActiveSessions(ctx, "", from); return err }},
	} {
		b.Run(q.name+"/uncached", func(b *testing.B) {
			for b.Loop() {
				if err := q.f(nc); err != nil {
					b.Fatal(err)
				}
			}
		})
		if !q.cached {
			continue
		}
		b.Run(q.name+"/cold", func(b *testing.B) {
			for b.Loop() {
				b.StopTimer()
				st := fresh()
				b.StartTimer()
				if err := q.f(st); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				st.Close()
				b.StartTimer()
			}
		})
		if err := q.f(s); err != nil { // fills the cache
			b.Fatal(err)
		}
		b.Run(q.name+"/warm", func(b *testing.B) {
			for b.Loop() {
				if err := q.f(s); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
