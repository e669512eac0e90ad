package ui_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/omnimemory/omnimemory-metrics/exporter"
	"github.com/omnimemory/omnimemory-metrics/handlers"
	"github.com/omnimemory/omnimemory-metrics/tsdb"
	"github.com/omnimemory/omnimemory-metrics/tsdb/sqlite"
)

// outageStore is a real store whose reads can be made to fail as an
// unreachable store's do.
type outageStore struct {
	tsdb.Store
	down atomic.Bool
}

func (s *outageStore) fault() error {
	if s.down.Load() {
		return fmt.Errorf("%w: connection refused", tsdb.ErrUnavailable)
	}
	return nil
}

func (s *outageStore) Breakdown(ctx context.Context, w tsdb.Window) ([]tsdb.ModeTotals, error) {
	if err := s.fault(); err != nil {
		return nil, err
	}
	return s.Store.Breakdown(ctx, w)
}

func (s *outageStore) Trend(ctx context.Context, w tsdb.Window, step tsdb.Step) ([]tsdb.Bucket, error) {
	if err := s.fault(); err != nil {
		return nil, err
	}
	return s.Store.Trend(ctx, w, step)
}

// SpendBreakdown and SpendTrend read the spend of the SQLite store under
// the outage switch.
func (s *outageStore) SpendBreakdown(ctx context.Context, w tsdb.Window) ([]tsdb.SpendTotals, error) {
	if err := s.fault(); err != nil {
		return nil, err
	}
	return s.Store.SpendBreakdown(ctx, w)
}

func (s *outageStore) SpendTrend(ctx context.Context, w tsdb.Window, step tsdb.Step) ([]tsdb.SpendBucket, error) {
	if err := s.fault(); err != nil {
		return nil, err
	}
	return s.Store.SpendTrend(ctx, w, step)
}

// service is the whole HTTP stack, page included, on a real SQLite file.
type service struct {
	t     *testing.T
	url   string
	token string
	store *outageStore
}

func newService(t *testing.T, token string) *service {
	t.Helper()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "metrics.db"), logger)
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	store := &outageStore{Store: db}
	reg := prometheus.NewRegistry()
	svc := exporter.New(store, exporter.Options{Pricing: exporter.Pricing{PerThousandUSD: 0.015}, Registerer: reg, Logger: logger})
	srv := httptest.NewServer(handlers.New(svc, handlers.Options{
		Gatherer: reg, Registerer: reg, CORSOrigins: []string{"*"}, Logger: logger, APIToken: token,
	}))
	t.Cleanup(func() {
		svc.EndStreams() // as the binary does on shutdown: the page's stream does not keep the server
		srv.Close()
		if err := svc.Close(context.Background()); err != nil {
			t.Errorf("close service: %v", err)
		}
		if err := db.Close(); err != nil {
			t.Errorf("close store: %v", err)
		}
	})
	return &service{t: t, url: srv.URL, token: token, store: store}
}

// request answers the status, headers and body of one request; headers
// are name/value pairs. The API token, when configured, is sent unless
// headers set Authorization.
func (s *service) request(method, path string, body []byte, headers ...string) (int, http.Header, []byte) {
	s.t.Helper()
	req, err := http.NewRequest(method, s.url+path, bytes.NewReader(body))
	if err != nil {
		s.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if s.token != "" {
		req.Header.Set("Authorization", "Bearer "+s.token)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		s.t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, data
}

// getJSON answers the decoded JSON object of GET path, numbers kept as
// json.Number so that they are formatted from the exact text the API sent.
func (s *service) getJSON(path string) map[string]any {
	s.t.Helper()
	status, _, data := s.request(http.MethodGet, path, nil)
	if status != http.StatusOK {
		s.t.Fatalf("GET %s: %d %s", path, status, data)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		s.t.Fatalf("GET %s: %v: %s", path, err, data)
	}
	return m
}

// seedOp is one operation posted by track.
type seedOp struct {
	toolID, tool, mode string
	original, actual   int64
	prevented          *int64
	responseMs         float64
	ago                time.Duration
}

// track posts op as a client does.
func (s *service) track(op seedOp) {
	s.t.Helper()
	body := map[string]any{
		"session_id": uuid.NewString(), "tool_name": op.tool, "operation_mode": op.mode,
		"tokens_original": op.original, "tokens_actual": op.actual, "response_time_ms": op.responseMs,
		"tool_id": op.toolID, "created_at": time.Now().Add(-op.ago).UTC().Format(time.RFC3339Nano),
	}
	if op.prevented != nil {
		body["tokens_prevented"] = *op.prevented
	}
	data, err := json.Marshal(body)
	if err != nil {
		s.t.Fatal(err)
	}
	if status, _, answer := s.request(http.MethodPost, "/track/tool-operation", data); status != http.StatusOK {
		s.t.Fatalf("track %+v: %d %s", op, status, answer)
	}
}

// seed posts operations over three clients, both tools, five modes and
// every range (1h, 24h, 7d, 30d and older), with figures that make
// fractional costs and one negative saving.
func (s *service) seed() {
	s.t.Helper()
	neg := int64(-150)
	for _, op := range []seedOp{
		{"claude-code", "read", "full", 12345, 2345, nil, 41.5, 20 * time.Minute},
		{"claude-code", "search", "semantic", 5000, 500, nil, 120, 3 * time.Hour},
		{"claude-code", "read", "overview", 98765, 4321, nil, 12.25, 50 * time.Hour},
		{"claude-code", "search", "tri_index", 777, 123, nil, 300, 20 * 24 * time.Hour},
		{"claude-code", "read", "symbol", 4000000, 1000, nil, 9, 60 * 24 * time.Hour},
		{"cursor", "read", "full", 3000, 1200, nil, 33, 10 * time.Minute},
		{"cursor", "read", "references", 1500, 100, nil, 27.7, 5 * time.Hour},
		{"cursor", "search", "semantic", 100, 250, &neg, 80, 6 * 24 * time.Hour},
		{"cursor", "read", "full", 20000, 7000, nil, 15, 6*24*time.Hour + time.Hour},
		{"codex", "search", "tri_index", 64000, 3200, nil, 210.4, 40 * time.Minute},
		{"codex", "read", "overview", 250000, 12500, nil, 18, 25 * 24 * time.Hour},
		{"codex", "read", "full", 7, 6, nil, 1, 45 * 24 * time.Hour},
	} {
		s.track(op)
	}
	// What the tools reported spending, over the ranges too.
	now := time.Now().UTC()
	var points []tsdb.SpendPoint
	for _, p := range []struct {
		tool, model string
		cost        float64
		tokens      tsdb.Tokens
		ago         time.Duration
	}{
		{"claude-code", "claude-sonnet-4", 0.4125, tsdb.Tokens{Input: 12000, Output: 2500, CacheRead: 80000, CacheCreation: 1500}, 15 * time.Minute},
		{"claude-code", "claude-haiku", 0.00003, tsdb.Tokens{Input: 20}, 2 * time.Hour},
		{"cursor", "", 1.75, tsdb.Tokens{Input: 90000, Output: 4000}, 3 * 24 * time.Hour},
		{"codex", "gpt-5", 12.5, tsdb.Tokens{Input: 1000000, Output: 50000}, 40 * 24 * time.Hour},
	} {
		points = append(points, tsdb.SpendPoint{ID: uuid.New(), ToolID: p.tool, Model: p.model,
			Time: now.Add(-p.ago).Truncate(time.Microsecond), CostUSD: p.cost, Tokens: p.tokens})
	}
	if err := s.store.WriteSpend(context.Background(), points); err != nil {
		s.t.Fatal(err)
	}
}
