package influx_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/omnimemory/omnimemory-metrics/client/api"

	"github.com/google/uuid"

	"github.com/omnimemory/omnimemory-metrics/internal/realtools"
	"github.com/omnimemory/omnimemory-metrics/tsdb"
	"github.com/omnimemory/omnimemory-metrics/tsdb/influx"
	"github.com/omnimemory/omnimemory-metrics/tsdb/storetest"
)

// TestExportConformanceInSmallPages runs the suite's export cases with
// pages of 100 points, so that every case crosses many page boundaries, and
// ties at one created_at outnumber a page: with InfluxQL (the path of 1.x)
// and with Flux alone (of 2.x).
func TestExportConformanceInSmallPages(t *testing.T) {
	srv := realtools.SharedInfluxd(t)
	for _, c := range []struct {
		name string
		open func(testing.TB, influx.Config) *influx.Store
	}{{"InfluxQL", open}, {"Flux", openFluxOnly}} {
		t.Run(c.name, func(t *testing.T) {
			storetest.RunExport(t, func(t *testing.T) tsdb.Store {
				cfg := config(t, srv)
				cfg.ExportPageSize = 100
				return c.open(t, cfg)
			})
		})
	}
}

// queryLog keeps the store's "flux query" debug records (which query, how
// many rows it answered, how long it took) and the operations of every
// page an export read.
type queryLog struct {
	mu    sync.Mutex
	rows  map[string][]int64
	took  map[string]time.Duration
	pages []int64 // operations per page read
}

func (l *queryLog) Enabled(context.Context, slog.Level) bool { return true }
func (l *queryLog) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *queryLog) WithGroup(string) slog.Handler            { return l }
func (l *queryLog) Handle(_ context.Context, r slog.Record) error {
	if r.Message == "export page" {
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "operations" {
				l.mu.Lock()
				l.pages = append(l.pages, a.Value.Int64())
				l.mu.Unlock()
			}
			return true
		})
		return nil
	}
	if r.Message != "flux query" && r.Message != "influxql query" {
		return nil
	}
	var name string
	var rows int64
	var took time.Duration
	r.Attrs(func(a slog.Attr) bool {
		switch a.Key {
		case "query":
			name = a.Value.String()
		case "rows", "points":
			rows = a.Value.Int64()
		case "took":
			took = a.Value.Duration()
		}
		return true
	})
	l.mu.Lock()
	defer l.mu.Unlock()
	l.rows[name] = append(l.rows[name], rows)
	if l.took == nil {
		l.took = map[string]time.Duration{}
	}
	l.took[name] += took
	return nil
}

// TestExportReadsBoundedPages exports 5,400 operations (a dense burst of
// more than the 16 pages one InfluxQL query reads, a spread-out stretch,
// 400 at one created_at) in pages of 200 points: every page holds at most
// 200 operations, and the operations come out complete and in order; with
// InfluxQL (the path of 1.x) and with Flux alone (of 2.x).
func TestExportReadsBoundedPages(t *testing.T) {
	srv := realtools.SharedInfluxd(t)
	for _, c := range []struct {
		name string
		open func(context.Context, influx.Config, *slog.Logger) (*influx.Store, error)
	}{{"InfluxQL", influx.Open}, {"Flux", influx.OpenAlwaysFlux}} {
		t.Run(c.name, func(t *testing.T) {
			cfg := config(t, srv)
			cfg.ExportPageSize = 200
			log := &queryLog{rows: map[string][]int64{}}
			s, err := c.open(context.Background(), cfg, slog.New(log))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			exportInBoundedPages(t, s, log)
		})
	}
}

// exportInBoundedPages is the case of TestExportReadsBoundedPages on s,
// whose debug records go to log.
func exportInBoundedPages(t *testing.T, s *influx.Store, log *queryLog) {

	base := time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC)
	session := uuid.MustParse("5b1f5a70-0000-4000-8000-000000000001")
	var ops []tsdb.Operation
	add := func(at time.Time, i int) {
		ops = append(ops, tsdb.Operation{
			ID: uuid.Must(uuid.NewRandom()), SessionID: session, ToolName: api.ToolNames[i%2], OperationMode: "full",
			Parameters: []byte(fmt.Sprintf(`{"n":%d}`, i)), TokensOriginal: int64(i), ToolID: "claude-code",
			TokensPrevented: int64(i), ResponseTimeMs: 1, CreatedAt: at,
		})
	}
	for i := range 4000 { // a burst: 10 µs apart
		add(base.Add(time.Duration(i)*10*time.Microsecond), i)
	}
	for i := range 1000 { // spread over 10 days
		add(base.Add(time.Hour+time.Duration(i)*15*time.Minute), i)
	}
	tie := base.Add(36 * time.Hour).Add(777 * time.Microsecond)
	for i := range 400 {
		add(tie, i)
	}
	for i := 0; i < len(ops); i += 1000 {
		if err := s.WriteOperations(t.Context(), ops[i:min(i+1000, len(ops))]); err != nil {
			t.Fatal(err)
		}
	}

	var got []uuid.UUID
	var last tsdb.Operation
	err := s.ExportOperations(t.Context(), tsdb.OperationFilter{}, func(op *tsdb.Operation) error {
		if len(got) > 0 && (op.CreatedAt.Before(last.CreatedAt) ||
			op.CreatedAt.Equal(last.CreatedAt) && op.ID.String() <= last.ID.String()) {
			t.Fatalf("operation %d (%s at %s) out of order after %s at %s", len(got), op.ID, op.CreatedAt, last.ID, last.CreatedAt)
		}
		last = *op
		got = append(got, op.ID)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(ops) {
		t.Fatalf("exported %d operations, want %d", len(got), len(ops))
	}
	seen := map[uuid.UUID]bool{}
	for _, id := range got {
		seen[id] = true
	}
	for _, op := range ops {
		if !seen[op.ID] {
			t.Fatalf("operation %s missing from the export", op.ID)
		}
	}

	log.mu.Lock()
	defer log.mu.Unlock()
	byID := len(log.rows["export page by id"])
	if len(log.pages) < len(ops)/200 || byID < 2 {
		t.Errorf("%d pages (%d by id) for %d operations in pages of 200", len(log.pages), byID, len(ops))
	}
	for _, n := range log.pages {
		if n > 200 {
			t.Errorf("a page held %d operations, more than a page (200)", n)
		}
	}
	t.Logf("%d pages (%d by id), %d count queries; operations per page: %v",
		len(log.pages), byID, len(log.rows["export count"]), log.pages)
}

// BenchmarkExportOperations exports operations spread over 30 days
// (OMNIMEMORY_INFLUX_SCALE of them, default 200,000; 300 sessions, 3 tool
// ids: about 10,000 series) in pages of the default size (or
// OMNIMEMORY_EXPORT_PAGE), with InfluxQL (the path of 1.x) and with Flux
// alone (of 2.x) over the same points, and reports rows/s and the queries
// each took, e.g.
//
//	go test -run '^$' -bench ExportOperations -benchtime 1x ./tsdb/influx/
func BenchmarkExportOperations(b *testing.B) {
	n, _ := strconv.Atoi(os.Getenv("OMNIMEMORY_INFLUX_SCALE"))
	if n <= 0 {
		n = 200_000
	}
	cfg := config(b, realtools.SharedInfluxd(b))
	cfg.WriteTimeout = time.Minute
	if p, _ := strconv.Atoi(os.Getenv("OMNIMEMORY_EXPORT_PAGE")); p > 0 {
		cfg.ExportPageSize = p
	}
	s := open(b, cfg) // its writes return once InfluxDB holds them (WriteTimeout)
	r := rand.New(rand.NewSource(1))
	end := time.Date(2025, 6, 30, 0, 0, 0, 0, time.UTC)
	span := int64(30 * 24 * time.Hour / time.Microsecond)
	sessions := make([]uuid.UUID, 300)
	for i := range sessions {
		sessions[i] = uuid.New()
	}
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
		if err := s.WriteOperations(context.Background(), ops); err != nil {
			b.Fatal(err)
		}
	}
	for _, c := range []struct {
		name string
		open func(context.Context, influx.Config, *slog.Logger) (*influx.Store, error)
	}{{"InfluxQL", influx.Open}, {"Flux", influx.OpenAlwaysFlux}} {
		b.Run(c.name, func(b *testing.B) {
			rcfg := cfg // the same points, read by a store of its own
			rcfg.OutboxDir = b.TempDir() + "/outbox"
			log := &queryLog{rows: map[string][]int64{}}
			r, err := c.open(context.Background(), rcfg, slog.New(log))
			if err != nil {
				b.Fatal(err)
			}
			defer r.Close()
			var rows int
			for b.Loop() {
				rows = 0
				if err := r.ExportOperations(b.Context(), tsdb.OperationFilter{}, func(*tsdb.Operation) error {
					rows++
					return nil
				}); err != nil {
					b.Fatal(err)
				}
			}
			if rows != n {
				b.Fatalf("exported %d operations, want %d", rows, n)
			}
			b.ReportMetric(float64(rows)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
			log.mu.Lock()
			defer log.mu.Unlock()
			var largest int64
			for _, v := range log.pages {
				largest = max(largest, v)
			}
			b.ReportMetric(float64(len(log.pages))/float64(b.N), "pages/op")
			b.ReportMetric(float64(largest), "largest-page-ops")
			b.Logf("time per kind of query: %v", log.took)
		})
	}
}

// TestListDeepPagesAndTies: lists of operations agree with the export's
// order (reversed) on both sides of the depth InfluxQL lists to (10,000
// matches: deeper pages are read with Flux), across a run of 50
// operations at one created_at that straddles it, with the hourly cache
// cold (the total counted by InfluxDB) and warm.
func TestListDeepPagesAndTies(t *testing.T) {
	s := open(t, config(t, realtools.SharedInfluxd(t)))
	base := time.Date(2025, 4, 1, 0, 0, 0, 0, time.UTC)
	session := uuid.MustParse("5b1f5a70-0000-4000-8000-000000000002")
	const n = 10100
	ops := make([]tsdb.Operation, n)
	for i := range ops {
		at := i
		if at >= 95 && at < 145 {
			at = 95 // newest-first positions 9,955-10,004
		}
		ops[i] = tsdb.Operation{ID: uuid.Must(uuid.NewRandom()), SessionID: session, ToolName: api.ToolNames[i%2],
			OperationMode: "full", Parameters: []byte(`{}`), ToolID: "claude-code", TokensOriginal: int64(i),
			CreatedAt: base.Add(time.Duration(at) * 30 * time.Second)} // over 85 hours: a cold first list
	}
	for i := 0; i < n; i += 5000 {
		if err := s.WriteOperations(t.Context(), ops[i:min(i+5000, n)]); err != nil {
			t.Fatal(err)
		}
	}
	var newest []uuid.UUID // the export's order, reversed
	if err := s.ExportOperations(t.Context(), tsdb.OperationFilter{}, func(op *tsdb.Operation) error {
		newest = append(newest, op.ID)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	slices.Reverse(newest)
	if len(newest) != n {
		t.Fatalf("exported %d operations, want %d", len(newest), n)
	}
	end := base.Add(85 * time.Hour) // the last operation's hour ends
	pages := func(cache string) {
		t.Helper()
		for _, pg := range []struct{ offset, limit int }{{9950, 50}, {9940, 60}, {9990, 20}, {10050, 100}} {
			page, err := s.QueryOperations(t.Context(), tsdb.OperationFilter{Offset: pg.offset, Limit: pg.limit, Start: &base, End: &end})
			if err != nil {
				t.Fatal(err)
			}
			if page.Total != n {
				t.Errorf("%s cache, offset %d: total %d, want %d", cache, pg.offset, page.Total, n)
			}
			want := newest[pg.offset:min(pg.offset+pg.limit, n)]
			got := make([]uuid.UUID, len(page.Operations))
			for i, op := range page.Operations {
				got[i] = op.ID
			}
			if !slices.Equal(got, want) {
				t.Errorf("%s cache, offset %d, limit %d: the list differs from the export's order reversed\n got %v\nwant %v", cache, pg.offset, pg.limit, got, want)
			}
		}
	}
	// Counted by InfluxDB while the cache lacks the window's 85 hours
	// (InfluxQL at any depth), then from the cache once its background read
	// has landed (no other answer asks for them).
	pages("cold")
	for deadline := time.Now().Add(time.Minute); s.Stats().CacheHours < 85; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the cache holds %d hours a minute after the cold lists, want the window's 85", s.Stats().CacheHours)
		}
	}
	pages("warm")
}
