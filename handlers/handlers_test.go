package handlers_test

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
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.opentelemetry.io/otel/trace"

	"github.com/omnimemory/omnimemory-metrics/client/api"
	"github.com/omnimemory/omnimemory-metrics/exporter"
	"github.com/omnimemory/omnimemory-metrics/handlers"
	"github.com/omnimemory/omnimemory-metrics/tsdb"
	"github.com/omnimemory/omnimemory-metrics/tsdb/sqlite"
	"github.com/omnimemory/omnimemory-metrics/tsdb/storetest"
)

// clock is a settable time source; zero means the real clock.
type clock struct{ t atomic.Pointer[time.Time] }

func (c *clock) now() time.Time {
	if t := c.t.Load(); t != nil {
		return *t
	}
	return time.Now()
}

func (c *clock) set(t time.Time) { c.t.Store(&t) }

// service is the whole HTTP stack on a real SQLite file.
type service struct {
	t     *testing.T
	path  string
	store *sqlite.Store
	svc   *exporter.Service
	reg   *prometheus.Registry
	srv   *httptest.Server
	clock *clock
}

// newStack wires the service layer over store and the HTTP layer over it,
// as main does, at 0.015 USD per 1,000 tokens; o sets the rest (its
// Registerer and Logger are filled in when nil).
func newStack(store tsdb.Store, o exporter.Options, ho handlers.Options) (http.Handler, *exporter.Service) {
	if o.Registerer == nil {
		o.Registerer = prometheus.NewRegistry()
	}
	if ho.Registerer == nil {
		ho.Registerer = o.Registerer
	}
	if ho.Gatherer == nil {
		ho.Gatherer = o.Registerer.(prometheus.Gatherer)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if ho.Logger == nil {
		ho.Logger = o.Logger
	}
	if ho.CORSOrigins == nil {
		ho.CORSOrigins = []string{"*"}
	}
	if o.Pricing == (exporter.Pricing{}) {
		o.Pricing = exporter.Pricing{PerThousandUSD: 0.015}
	}
	svc := exporter.New(store, o)
	return handlers.New(svc, ho), svc
}

type serviceOpts struct {
	path    string
	origins []string
	clock   *clock
	tp      trace.TracerProvider
	token   string
	public  bool
	spend   *storetest.SpendMemory // when set, the store keeps spend points there
	stream  exporter.StreamOptions
	// streamWriteTimeout is handlers.Options.StreamWriteTimeout.
	streamWriteTimeout time.Duration
	// serverTimeout, when set, is the server's ReadTimeout and
	// WriteTimeout.
	serverTimeout time.Duration
}

func newService(t *testing.T, o serviceOpts) *service {
	t.Helper()
	if o.path == "" {
		o.path = filepath.Join(t.TempDir(), "metrics.db")
	}
	if o.origins == nil {
		o.origins = []string{"*"}
	}
	if o.clock == nil {
		o.clock = &clock{}
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	store, err := sqlite.Open(context.Background(), o.path, logger)
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	reg := prometheus.NewRegistry()
	var served tsdb.Store = store
	if o.tp != nil {
		served = tsdb.Traced(store, "sqlite", o.tp)
	}
	if o.spend != nil {
		served = spendingStore{Store: served, SpendMemory: o.spend}
	}
	h, svc := newStack(served, exporter.Options{Registerer: reg, TracerProvider: o.tp, Now: o.clock.now, Logger: logger, Stream: o.stream},
		handlers.Options{CORSOrigins: o.origins, TracerProvider: o.tp, APIToken: o.token, MetricsPublic: o.public,
			StreamWriteTimeout: o.streamWriteTimeout})
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ReadTimeout, srv.Config.WriteTimeout = o.serverTimeout, o.serverTimeout
	srv.Start()
	s := &service{t: t, path: o.path, store: store, svc: svc, reg: reg, srv: srv, clock: o.clock}
	t.Cleanup(s.close)
	return s
}

// close stops the server, drains the writer and closes the store; it may
// run twice.
func (s *service) close() {
	if s.srv == nil {
		return
	}
	s.svc.EndStreams() // as the binary does on shutdown: streams do not keep the server
	s.srv.Close()
	if err := s.svc.Close(context.Background()); err != nil {
		s.t.Errorf("close service: %v", err)
	}
	if err := s.store.Close(); err != nil {
		s.t.Errorf("close store: %v", err)
	}
	s.srv = nil
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("answer is not a JSON object: %v: %s", err, r.body)
	}
	return m
}

func (s *service) do(method, path string, body any, headers ...string) response {
	s.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		data, err := json.Marshal(b)
		if err != nil {
			s.t.Fatal(err)
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, s.srv.URL+path, rd)
	if err != nil {
		s.t.Fatal(err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
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
	return response{status: resp.StatusCode, header: resp.Header, body: data}
}

// doStream sends a request whose answer does not end by itself (a stream,
// a WebSocket) and answers what came of it within d.
func (s *service) doStream(method, path string, d time.Duration, headers ...string) response {
	s.t.Helper()
	req, err := http.NewRequest(method, s.srv.URL+path, nil)
	if err != nil {
		s.t.Fatal(err)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, path, err)
	}
	var body bytes.Buffer
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = io.Copy(&body, io.LimitReader(resp.Body, 1<<20))
	}()
	select {
	case <-done:
	case <-time.After(d):
	}
	resp.Body.Close()
	<-done
	return response{status: resp.StatusCode, header: resp.Header, body: body.Bytes()}
}

func (s *service) mustDo(method, path string, body any, want int) map[string]any {
	s.t.Helper()
	r := s.do(method, path, body)
	if r.status != want {
		s.t.Fatalf("%s %s: status %d, want %d: %s", method, path, r.status, want, r.body)
	}
	return r.json(s.t)
}

const sessionA = "123e4567-e89b-12d3-a456-426614174000"

// op builds a valid operation body with overrides.
func op(fields map[string]any) map[string]any {
	base := map[string]any{
		"session_id":       sessionA,
		"tool_name":        "read",
		"operation_mode":   "overview",
		"parameters":       map[string]any{"compress": true},
		"file_path":        "src/main.py",
		"tokens_original":  5000,
		"tokens_actual":    500,
		"tokens_prevented": 4500,
		"response_time_ms": 123.45,
		"tool_id":          "claude-code",
	}
	for k, v := range fields {
		if v == nil {
			delete(base, k)
			continue
		}
		base[k] = v
	}
	return base
}

// sampleOperations are the five operations of the specification's sample:
// read full/overview/symbol and search semantic/tri_index.
func sampleOperations() []map[string]any {
	mk := func(tool, mode string, orig, actual int, rt float64) map[string]any {
		o := op(map[string]any{"tool_name": tool, "operation_mode": mode, "tokens_original": orig,
			"tokens_actual": actual, "tokens_prevented": orig - actual, "response_time_ms": rt})
		if tool == "search" {
			o["file_path"] = nil
			o["parameters"] = map[string]any{"query": "auth"}
		}
		return o
	}
	return []map[string]any{
		mk("read", "full", 5000, 5000, 150),
		mk("read", "overview", 5000, 500, 110.5),
		mk("read", "symbol", 8000, 800, 95.2),
		mk("search", "semantic", 50000, 5000, 250.3),
		mk("search", "tri_index", 30000, 3000, 180.4),
	}
}

func num(t *testing.T, m map[string]any, path ...string) float64 {
	t.Helper()
	var cur any = m
	for _, p := range path {
		obj, ok := cur.(map[string]any)
		if !ok {
			t.Fatalf("%v: not an object at %q", path, p)
		}
		cur, ok = obj[p]
		if !ok {
			t.Fatalf("%v: missing %q in %v", path, p, obj)
		}
	}
	f, ok := cur.(float64)
	if !ok {
		t.Fatalf("%v: %v is not a number", path, cur)
	}
	return f
}

func TestSampleOperationsGiveTheSpecFiguresInEveryRange(t *testing.T) {
	s := newService(t, serviceOpts{})
	for _, o := range sampleOperations() {
		got := s.mustDo("POST", "/track/tool-operation", o, 200)
		if got["status"] != "success" || got["operation_id"] == "" {
			t.Fatalf("track answer %v", got)
		}
	}
	for _, rng := range []string{"1h", "24h", "7d", "30d", "all"} {
		t.Run(rng, func(t *testing.T) {
			sv := s.mustDo("GET", "/metrics/api-savings?time_range="+rng, nil, 200)
			want := map[string]float64{
				"total_tokens_processed": 98000, "total_tokens_prevented": 83700, "total_operations": 5,
				"api_cost_baseline": 1.47, "api_cost_actual": 0.2145, "total_cost_saved": 1.2555, "savings_percentage": 85.41,
			}
			for k, v := range want {
				if got := num(t, sv, k); got != v {
					t.Errorf("%s = %v, want %v", k, got, v)
				}
			}
			if got := num(t, sv, "breakdown_by_tool", "read", "operations"); got != 3 {
				t.Errorf("read operations = %v", got)
			}
			if got := num(t, sv, "breakdown_by_tool", "read", "tokens_prevented"); got != 11700 {
				t.Errorf("read prevented = %v", got)
			}
			if got := num(t, sv, "breakdown_by_tool", "search", "operations"); got != 2 {
				t.Errorf("search operations = %v", got)
			}
			if got := num(t, sv, "breakdown_by_tool", "search", "tokens_prevented"); got != 72000 {
				t.Errorf("search prevented = %v", got)
			}
			if got := num(t, sv, "breakdown_by_mode", "semantic", "cost_saved"); got != 0.675 {
				t.Errorf("semantic cost_saved = %v", got)
			}
			if sv["time_range"] != rng {
				t.Errorf("time_range = %v", sv["time_range"])
			}
			var sumOps, sumPrevented float64
			for _, b := range sv["trends"].([]any) {
				sumOps += num(t, b.(map[string]any), "operations")
				sumPrevented += num(t, b.(map[string]any), "tokens_prevented")
			}
			if sumOps != 5 || sumPrevented != 83700 {
				t.Errorf("trend buckets sum to %v operations / %v prevented, want 5 / 83700", sumOps, sumPrevented)
			}
			if rng == "all" {
				return
			}
			bd := s.mustDo("GET", "/metrics/tool-breakdown?time_range="+rng, nil, 200)
			checks := map[string]float64{"read.total_operations": 3, "read.total_tokens_prevented": 11700,
				"read.total_tokens_original": 18000, "read.total_tokens_actual": 6300,
				"search.total_operations": 2, "search.total_tokens_prevented": 72000,
				"total_tokens_prevented": 83700, "total_cost_saved": 1.2555,
				"read.by_mode.overview.count": 1, "read.by_mode.overview.tokens_prevented": 4500,
				"read.by_mode.overview.avg_response_time_ms": 110.5,
				"search.avg_response_time_ms":                215.35}
			for k, v := range checks {
				if got := num(t, bd, strings.Split(k, ".")...); got != v {
					t.Errorf("breakdown %s = %v, want %v", k, got, v)
				}
			}
			if bd["time_period"] != rng {
				t.Errorf("time_period = %v", bd["time_period"])
			}
			if n := len(bd["search"].(map[string]any)["by_mode"].(map[string]any)); n != 2 {
				t.Errorf("search by_mode has %d modes, want 2", n)
			}
		})
	}
}

func TestEmptyStoreAnswersZeros(t *testing.T) {
	s := newService(t, serviceOpts{})
	bd := s.mustDo("GET", "/metrics/tool-breakdown", nil, 200)
	for _, tool := range []string{"read", "search"} {
		stats := bd[tool].(map[string]any)
		if stats["total_operations"] != 0.0 || stats["avg_response_time_ms"] != 0.0 || len(stats["by_mode"].(map[string]any)) != 0 {
			t.Errorf("%s on an empty store: %v", tool, stats)
		}
	}
	if bd["time_period"] != "24h" {
		t.Errorf("default time_period = %v", bd["time_period"])
	}
	sv := s.mustDo("GET", "/metrics/api-savings?time_range=all", nil, 200)
	if trends := sv["trends"].([]any); len(trends) != 0 {
		t.Errorf("all-range trends on an empty store = %v, want []", trends)
	}
	if sv["savings_percentage"] != 0.0 {
		t.Errorf("savings_percentage = %v", sv["savings_percentage"])
	}
	sv = s.mustDo("GET", "/metrics/api-savings", nil, 200)
	if sv["time_range"] != "24h" {
		t.Errorf("default time_range = %v", sv["time_range"])
	}
	for _, tool := range []string{"read", "search"} {
		if _, ok := sv["breakdown_by_tool"].(map[string]any)[tool]; !ok {
			t.Errorf("breakdown_by_tool lacks %s", tool)
		}
	}
}

func TestTrendBuckets(t *testing.T) {
	c := &clock{}
	s := newService(t, serviceOpts{clock: c})
	now := time.Date(2025, 1, 14, 12, 30, 0, 0, time.UTC)
	c.set(now)
	post := func(at time.Time, prevented int) {
		s.mustDo("POST", "/track/tool-operation", op(map[string]any{
			"created_at": at.Format(time.RFC3339Nano), "tokens_original": prevented + 10,
			"tokens_actual": 10, "tokens_prevented": prevented}), 200)
	}
	post(now.Add(-24*time.Hour-time.Minute), 1)     // outside 24h
	post(now.Add(-24*time.Hour+time.Minute), 10)    // first, partial bucket
	post(now.Add(-3*time.Hour), 100)                // 09:30
	post(now.Add(-3*time.Hour+10*time.Minute), 100) // 09:40, same bucket
	post(now, 1000)                                 // the last bucket
	post(now.Add(-6*24*time.Hour), 10000)           // inside 7d only

	sv := s.mustDo("GET", "/metrics/api-savings?time_range=24h", nil, 200)
	trends := sv["trends"].([]any)
	if len(trends) != 25 {
		t.Fatalf("24h unaligned: %d buckets, want 25", len(trends))
	}
	first := trends[0].(map[string]any)
	if first["timestamp"] != "2025-01-13T12:00:00Z" || num(t, first, "tokens_prevented") != 10 {
		t.Errorf("first bucket %v", first)
	}
	b0930 := trends[21].(map[string]any)
	if b0930["timestamp"] != "2025-01-14T09:00:00Z" || num(t, b0930, "operations") != 2 || num(t, b0930, "cost_saved") != 0.003 {
		t.Errorf("09:00 bucket %v", b0930)
	}
	last := trends[24].(map[string]any)
	if last["timestamp"] != "2025-01-14T12:00:00Z" || num(t, last, "tokens_prevented") != 1000 {
		t.Errorf("last bucket %v", last)
	}
	if got := num(t, sv, "total_tokens_prevented"); got != 1210 {
		t.Errorf("24h total = %v, want 1210", got)
	}
	if sv["calculated_at"] != "2025-01-14T12:30:00Z" {
		t.Errorf("calculated_at = %v", sv["calculated_at"])
	}

	sv = s.mustDo("GET", "/metrics/api-savings?time_range=7d", nil, 200)
	trends = sv["trends"].([]any)
	if len(trends) != 8 || trends[0].(map[string]any)["timestamp"] != "2025-01-07T00:00:00Z" {
		t.Fatalf("7d: %d buckets starting %v, want 8 from 2025-01-07", len(trends), trends[0])
	}
	if got := num(t, trends[1].(map[string]any), "tokens_prevented"); got != 10000 {
		t.Errorf("7d day 2 = %v", got)
	}
	sv = s.mustDo("GET", "/metrics/api-savings?time_range=30d", nil, 200)
	if n := len(sv["trends"].([]any)); n != 31 {
		t.Errorf("30d: %d buckets, want 31", n)
	}
	sv = s.mustDo("GET", "/metrics/api-savings?time_range=all", nil, 200)
	trends = sv["trends"].([]any)
	if len(trends) != 7 || trends[0].(map[string]any)["timestamp"] != "2025-01-08T00:00:00Z" {
		t.Errorf("all: %d buckets from %v, want 7 from the first operation's day", len(trends), trends[0])
	}

	// On an exact hour, 24h has 24 buckets, and what happened at now still counts.
	c.set(time.Date(2025, 1, 14, 13, 0, 0, 0, time.UTC))
	post(time.Date(2025, 1, 14, 13, 0, 0, 0, time.UTC), 7)
	sv = s.mustDo("GET", "/metrics/api-savings?time_range=24h", nil, 200)
	trends = sv["trends"].([]any)
	if len(trends) != 24 {
		t.Errorf("24h aligned: %d buckets, want 24", len(trends))
	}
	var sum float64
	for _, b := range trends {
		sum += num(t, b.(map[string]any), "tokens_prevented")
	}
	if total := num(t, sv, "total_tokens_prevented"); sum != total {
		t.Errorf("aligned buckets sum to %v, totals say %v", sum, total)
	}
	sv = s.mustDo("GET", "/metrics/api-savings?time_range=1h", nil, 200)
	if n := len(sv["trends"].([]any)); n != 1 {
		t.Errorf("1h aligned: %d buckets, want 1", n)
	}
}

func TestQueryFiltersAndPaging(t *testing.T) {
	s := newService(t, serviceOpts{})
	sessionB := "AAAAAAAA-BBBB-4CCC-8DDD-EEEEEEEEEEEE"
	base := time.Date(2025, 1, 14, 10, 0, 0, 0, time.UTC)
	var ids []string
	for i := 0; i < 12; i++ {
		o := op(map[string]any{"created_at": base.Add(time.Duration(i) * time.Hour).Format(time.RFC3339)})
		if i%3 == 0 {
			o["tool_name"], o["operation_mode"], o["file_path"] = "search", "semantic", nil
		}
		if i%2 == 0 {
			o["session_id"] = sessionB
		}
		if i%4 == 0 {
			o["tool_id"] = "cursor"
		}
		ids = append(ids, s.mustDo("POST", "/track/tool-operation", o, 200)["operation_id"].(string))
	}
	count := func(query string) float64 {
		return num(t, s.mustDo("GET", "/metrics/tool-operations?"+query, nil, 200), "total")
	}
	for query, want := range map[string]float64{
		"": 12,
		"session_id=" + strings.ToLower(sessionB): 6,
		"session_id=" + sessionB:                  6,
		"tool_name=search":                        4,
		"operation_mode=overview":                 8,
		"tool_id=cursor":                          3,
		"start_date=2025-01-14T15:00:00Z":         7,
		"end_date=2025-01-14T15:00:00Z":           6,
		"start_date=2025-01-14T12:00:00%2B02:00&end_date=2025-01-14T12:00:00": 3,
		"start_date=2025-01-14T12:00:00+02:00":                                12,
		"end_date=2025-01-14":                                                 0,
		"start_date=2025-01-15":                                               0,
		"tool_name=read&tool_id=claude-code":                                  6,
	} {
		if got := count(query); got != want {
			t.Errorf("%q: total %v, want %v", query, got, want)
		}
	}
	// A session filter answers the session id in lower case.
	got := s.mustDo("GET", "/metrics/tool-operations?session_id="+sessionB+"&limit=1", nil, 200)
	first := got["operations"].([]any)[0].(map[string]any)
	if first["session_id"] != strings.ToLower(sessionB) {
		t.Errorf("session_id = %v, want lower case", first["session_id"])
	}
	// Paging: newest first, disjoint pages covering everything.
	var seen []string
	for offset := 0; offset < 12; offset += 5 {
		page := s.mustDo("GET", fmt.Sprintf("/metrics/tool-operations?limit=5&offset=%d", offset), nil, 200)
		if page["limit"] != 5.0 || page["offset"] != float64(offset) || page["total"] != 12.0 {
			t.Errorf("page meta %v", page)
		}
		for _, o := range page["operations"].([]any) {
			seen = append(seen, o.(map[string]any)["id"].(string))
		}
	}
	if len(seen) != 12 {
		t.Fatalf("pages held %d operations", len(seen))
	}
	for i := range seen {
		if seen[i] != ids[11-i] {
			t.Fatalf("position %d: %s, want %s (newest first)", i, seen[i], ids[11-i])
		}
	}
	// Every field of an operation, exactly the seed's.
	page := s.mustDo("GET", "/metrics/tool-operations?limit=1&offset=1", nil, 200)
	o := page["operations"].([]any)[0].(map[string]any)
	wantKeys := []string{"id", "session_id", "tool_name", "operation_mode", "parameters", "file_path",
		"tokens_original", "tokens_actual", "tokens_prevented", "response_time_ms", "tool_id", "created_at"}
	if len(o) != len(wantKeys) {
		t.Errorf("operation has %d fields, want %d: %v", len(o), len(wantKeys), o)
	}
	for _, k := range wantKeys {
		if _, ok := o[k]; !ok {
			t.Errorf("operation lacks %s", k)
		}
	}
	if o["created_at"] != "2025-01-14T20:00:00Z" || o["parameters"].(map[string]any)["compress"] != true ||
		o["response_time_ms"] != 123.45 || o["file_path"] != "src/main.py" {
		t.Errorf("operation fields %v", o)
	}
	// A search operation without file_path answers null.
	page = s.mustDo("GET", "/metrics/tool-operations?tool_name=search&limit=1", nil, 200)
	if fp, ok := page["operations"].([]any)[0].(map[string]any)["file_path"]; !ok || fp != nil {
		t.Errorf("absent file_path answered as %v (present %v), want null", fp, ok)
	}
	page = s.mustDo("GET", "/metrics/tool-operations?offset=50", nil, 200)
	if len(page["operations"].([]any)) != 0 || page["total"] != 12.0 {
		t.Errorf("offset past the end: %v", page)
	}
}

func TestQueryParameterErrors(t *testing.T) {
	s := newService(t, serviceOpts{})
	for query, want := range map[string]int{
		"limit=0": 422, "limit=1001": 422, "limit=abc": 422, "offset=-1": 422, "offset=1.5": 422,
		"limit=1000": 200, "limit=1": 200,
		"session_id=nope": 400, "tool_name=write": 400, "operation_mode=deep": 400,
		"start_date=yesterday": 400, "end_date=2025-13-01": 400,
		"limit=0&session_id=nope": 422,
	} {
		r := s.do("GET", "/metrics/tool-operations?"+query, nil)
		if r.status != want {
			t.Errorf("%q: status %d, want %d: %s", query, r.status, want, r.body)
			continue
		}
		if want != 200 {
			assertDetail(t, r)
		}
	}
	for _, path := range []string{"/metrics/tool-breakdown?time_range=all", "/metrics/tool-breakdown?time_range=2h", "/metrics/api-savings?time_range=1w"} {
		r := s.do("GET", path, nil)
		if r.status != 400 {
			t.Errorf("%s: status %d, want 400", path, r.status)
		}
		if d, _ := r.json(t)["detail"].(string); !strings.Contains(d, "1h, 24h, 7d, 30d") {
			t.Errorf("%s: detail %q does not name the allowed values", path, d)
		}
	}
}

// assertDetail checks an error answer is JSON with a non-empty detail: a
// string, or a list of {loc, msg, type}.
func assertDetail(t *testing.T, r response) {
	t.Helper()
	m := r.json(t)
	switch d := m["detail"].(type) {
	case string:
		if d == "" {
			t.Errorf("empty detail: %s", r.body)
		}
	case []any:
		if len(d) == 0 {
			t.Errorf("empty detail list: %s", r.body)
		}
		for _, item := range d {
			e, ok := item.(map[string]any)
			if !ok || e["loc"] == nil || e["msg"] == "" || e["type"] == "" {
				t.Errorf("detail item %v is not {loc, msg, type}", item)
			}
		}
	default:
		t.Errorf("no detail in %s", r.body)
	}
}

func TestTrackRejectionsStoreNothing(t *testing.T) {
	s := newService(t, serviceOpts{})
	newSession := "9b2d6a0e-4a4f-4d7e-9a39-2f0c3a8c9d11"
	cases := []struct {
		name string
		body any
		want int
		loc  string
	}{
		{"session_id not a uuid", op(map[string]any{"session_id": "not-a-uuid"}), 400, ""},
		{"session_id 32 hex digits", op(map[string]any{"session_id": "123e4567e89b12d3a456426614174000"}), 400, ""},
		{"session_id in braces", op(map[string]any{"session_id": "{123e4567-e89b-12d3-a456-426614174000}"}), 400, ""},
		{"session_id missing", op(map[string]any{"session_id": nil}), 422, "session_id"},
		{"session_id null", `{"session_id":null,"tool_name":"read","operation_mode":"full","tokens_original":1,"tokens_actual":1,"response_time_ms":1,"tool_id":"x"}`, 422, "session_id"},
		{"session_id a number", op(map[string]any{"session_id": 5}), 422, "session_id"},
		{"field error before session format", op(map[string]any{"session_id": "bad", "tool_name": "write"}), 422, "tool_name"},
		{"tool_name unknown", op(map[string]any{"tool_name": "write"}), 422, "tool_name"},
		{"operation_mode unknown", op(map[string]any{"operation_mode": "deep"}), 422, "operation_mode"},
		{"parameters a list", op(map[string]any{"parameters": []any{1}}), 422, "parameters"},
		{"parameters a string", op(map[string]any{"parameters": "x"}), 422, "parameters"},
		{"file_path a number", op(map[string]any{"file_path": 3}), 422, "file_path"},
		{"tokens_original a string", op(map[string]any{"tokens_original": "5000"}), 422, "tokens_original"},
		{"tokens_original fractional", op(map[string]any{"tokens_original": 12.5}), 422, "tokens_original"},
		{"tokens_original exponent", `{"session_id":"` + sessionA + `","tool_name":"read","operation_mode":"full","tokens_original":5e3,"tokens_actual":1,"response_time_ms":1,"tool_id":"x"}`, 422, "tokens_original"},
		{"tokens_original negative", op(map[string]any{"tokens_original": -1}), 422, "tokens_original"},
		{"tokens_original past int64", `{"session_id":"` + sessionA + `","tool_name":"read","operation_mode":"full","tokens_original":9223372036854775808,"tokens_actual":1,"response_time_ms":1,"tool_id":"x"}`, 422, "tokens_original"},
		{"tokens_actual missing", op(map[string]any{"tokens_actual": nil}), 422, "tokens_actual"},
		{"tokens_actual a bool", op(map[string]any{"tokens_actual": true}), 422, "tokens_actual"},
		{"tokens_prevented inconsistent", op(map[string]any{"tokens_prevented": 4000}), 422, "tokens_prevented"},
		{"tokens_prevented wrong sign", op(map[string]any{"tokens_original": 100, "tokens_actual": 200, "tokens_prevented": 100}), 422, "tokens_prevented"},
		{"response_time_ms missing", op(map[string]any{"response_time_ms": nil}), 422, "response_time_ms"},
		{"response_time_ms negative", op(map[string]any{"response_time_ms": -1}), 422, "response_time_ms"},
		{"response_time_ms a string", op(map[string]any{"response_time_ms": "12"}), 422, "response_time_ms"},
		{"tool_id missing", op(map[string]any{"tool_id": nil}), 422, "tool_id"},
		{"tool_id empty", op(map[string]any{"tool_id": ""}), 422, "tool_id"},
		{"tool_id too long", op(map[string]any{"tool_id": strings.Repeat("x", 101)}), 422, "tool_id"},
		{"cache_hit a string", op(map[string]any{"cache_hit": "true"}), 422, "cache_hit"},
		{"cache_hit a number", op(map[string]any{"cache_hit": 1}), 422, "cache_hit"},
		{"cache_hit an object", op(map[string]any{"cache_hit": map[string]any{}}), 422, "cache_hit"},
		{"created_at not a time", op(map[string]any{"created_at": "yesterday"}), 422, "created_at"},
		{"created_at without offset", op(map[string]any{"created_at": "2025-01-14T10:00:00"}), 422, "created_at"},
		{"created_at far ahead", op(map[string]any{"created_at": time.Now().Add(10 * time.Minute).Format(time.RFC3339)}), 422, "created_at"},
		{"not json", "{tool_name: read", 422, ""},
		{"a json list", "[1,2]", 422, ""},
		{"json null", "null", 422, ""},
		{"empty body", "", 422, ""},
		{"trailing garbage", `{"a":1} x`, 422, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			body := tc.body
			if m, ok := body.(map[string]any); ok {
				if _, has := m["session_id"]; has && tc.want == 422 && tc.loc != "session_id" {
					m["session_id"] = newSession
				}
			}
			r := s.do("POST", "/track/tool-operation", body)
			if r.status != tc.want {
				t.Fatalf("status %d, want %d: %s", r.status, tc.want, r.body)
			}
			assertDetail(t, r)
			if tc.want == 400 {
				if d := r.json(t)["detail"]; d != "Invalid session_id format: must be a valid UUID" {
					t.Errorf("detail %v", d)
				}
			}
			if tc.loc != "" {
				found := false
				for _, e := range r.json(t)["detail"].([]any) {
					loc := e.(map[string]any)["loc"].([]any)
					if len(loc) == 2 && loc[0] == "body" && loc[1] == tc.loc {
						found = true
					}
				}
				if !found {
					t.Errorf("no error located at body.%s: %s", tc.loc, r.body)
				}
			}
		})
	}
	// Nothing of any rejected request was stored: no operation, no session,
	// no counter.
	if total := num(t, s.mustDo("GET", "/metrics/tool-operations", nil, 200), "total"); total != 0 {
		t.Errorf("rejected requests stored %v operations", total)
	}
	for _, id := range []string{sessionA, newSession} {
		if r := s.do("GET", "/sessions/"+id, nil); r.status != 404 {
			t.Errorf("rejected requests created session %s: %d %s", id, r.status, r.body)
		}
	}
	if n := testutil.CollectAndCount(s.reg, "omnimemory_tool_operations_total"); n != 0 {
		t.Errorf("rejected requests created %d operation series", n)
	}
}

func TestTrackAcceptsWhatClientsSend(t *testing.T) {
	s := newService(t, serviceOpts{})
	cases := map[string]map[string]any{
		"minimal":                   {"tool_name": "search", "operation_mode": "tri_index", "parameters": nil, "file_path": nil, "tokens_prevented": nil},
		"negative prevented (diff)": {"tokens_original": 100, "tokens_actual": 250, "tokens_prevented": -150},
		"clamped prevented":         {"tokens_original": 100, "tokens_actual": 250, "tokens_prevented": 0},
		"upper-case session":        {"session_id": strings.ToUpper(sessionA)},
		"integer response time":     {"response_time_ms": 12},
		"unknown fields ignored":    {"timestamp": "2025-01-14T10:00:00", "extra": map[string]any{"x": 1}},
		"explicit null parameters":  {"parameters": nil},
		"skewed clock":              {"created_at": time.Now().Add(2 * time.Minute).UTC().Format(time.RFC3339)},
		"tool_id of 100 characters": {"tool_id": strings.Repeat("é", 100)},
		"any mode for any tool":     {"tool_name": "read", "operation_mode": "semantic"},
		"largest integer":           {"tokens_original": int64(1<<63 - 1), "tokens_actual": 0, "tokens_prevented": nil},
		"cache hit":                 {"cache_hit": true},
		"cache miss":                {"cache_hit": false},
		"cache_hit null":            {"cache_hit": nil},
	}
	for name, fields := range cases {
		r := s.do("POST", "/track/tool-operation", op(fields))
		if r.status != 200 {
			t.Errorf("%s: status %d: %s", name, r.status, r.body)
		}
	}
	page := s.mustDo("GET", "/metrics/tool-operations?limit=1000", nil, 200)
	if page["total"] != float64(len(cases)) {
		t.Fatalf("stored %v of %d", page["total"], len(cases))
	}
	for _, item := range page["operations"].([]any) {
		o := item.(map[string]any)
		if o["session_id"] != sessionA {
			t.Errorf("session_id stored as %v", o["session_id"])
		}
		if o["parameters"] == nil {
			t.Errorf("parameters stored as null, want {}")
		}
		created, err := time.Parse(time.RFC3339Nano, o["created_at"].(string))
		if err != nil || created.After(time.Now()) {
			t.Errorf("created_at %v is in the future or malformed", o["created_at"])
		}
	}
	got := s.mustDo("GET", "/metrics/tool-operations?tool_name=search", nil, 200)
	o := got["operations"].([]any)[0].(map[string]any)
	if o["tokens_prevented"] != 4500.0 || fmt.Sprint(o["parameters"]) != "map[]" || o["file_path"] != nil {
		t.Errorf("minimal operation stored as %v", o)
	}
	// The negative form is stored as sent; the clamped form as sent too.
	neg := s.mustDo("GET", "/metrics/tool-operations?limit=1000", nil, 200)
	var negatives int
	for _, item := range neg["operations"].([]any) {
		if item.(map[string]any)["tokens_prevented"] == -150.0 {
			negatives++
		}
	}
	if negatives != 1 {
		t.Errorf("%d operations kept tokens_prevented -150, want 1", negatives)
	}
}

// TestCacheHitStoredAndCounted: cache_hit true, false, null or absent, on
// the single and the batch endpoint, is kept with the operation (the export
// answers it), left out of the list's items, and counted by the cache
// counters only when known.
func TestCacheHitStoredAndCounted(t *testing.T) {
	s := newService(t, serviceOpts{})
	want := map[string]string{} // operation id -> cache_hit as exported
	for i, hit := range []any{true, false, nil, "absent", true} {
		fields := map[string]any{"operation_mode": "symbol", "created_at": fmt.Sprintf("2025-01-14T10:00:0%dZ", i)}
		if hit != "absent" {
			fields["cache_hit"] = hit
		}
		if i == 4 {
			fields["tool_id"] = "cursor"
		}
		id := s.mustDo("POST", "/track/tool-operation", op(fields), 200)["operation_id"].(string)
		want[id] = map[any]string{true: "true", false: "false", nil: "null", "absent": "null"}[hit]
	}
	batch := []any{
		op(map[string]any{"tool_name": "search", "operation_mode": "semantic", "cache_hit": false, "created_at": "2025-01-14T11:00:00Z"}),
		op(map[string]any{"tool_name": "search", "operation_mode": "semantic", "created_at": "2025-01-14T11:00:01Z"}),
	}
	ids := s.mustDo("POST", "/track/tool-operations", map[string]any{"operations": batch}, 200)["operation_ids"].([]any)
	want[ids[0].(string)], want[ids[1].(string)] = "false", "null"

	r := s.do("GET", "/metrics/tool-operations/export?format=ndjson", nil)
	lines := strings.Split(strings.TrimSpace(string(r.body)), "\n")
	if r.status != 200 || len(lines) != len(want) {
		t.Fatalf("export: %d, %d lines, want %d: %s", r.status, len(lines), len(want), r.body)
	}
	for _, line := range lines {
		var o struct {
			ID       string          `json:"id"`
			CacheHit json.RawMessage `json:"cache_hit"`
		}
		if err := json.Unmarshal([]byte(line), &o); err != nil {
			t.Fatal(err)
		}
		if string(o.CacheHit) != want[o.ID] {
			t.Errorf("operation %s exported cache_hit %s, want %s", o.ID, o.CacheHit, want[o.ID])
		}
	}
	for _, item := range s.mustDo("GET", "/metrics/tool-operations", nil, 200)["operations"].([]any) {
		if _, has := item.(map[string]any)["cache_hit"]; has {
			t.Fatalf("a list item carries cache_hit: %v", item)
		}
	}

	expected := `
# HELP omnimemory_tool_cache_hits_total Accepted operations the tool answered from its cache (cache_hit true).
# TYPE omnimemory_tool_cache_hits_total counter
omnimemory_tool_cache_hits_total{operation_mode="semantic",tool_id="claude-code",tool_name="search"} 0
omnimemory_tool_cache_hits_total{operation_mode="symbol",tool_id="claude-code",tool_name="read"} 1
omnimemory_tool_cache_hits_total{operation_mode="symbol",tool_id="cursor",tool_name="read"} 1
# HELP omnimemory_tool_cache_lookups_total Accepted operations that said whether the tool answered from its cache (cache_hit true or false).
# TYPE omnimemory_tool_cache_lookups_total counter
omnimemory_tool_cache_lookups_total{operation_mode="semantic",tool_id="claude-code",tool_name="search"} 1
omnimemory_tool_cache_lookups_total{operation_mode="symbol",tool_id="claude-code",tool_name="read"} 2
omnimemory_tool_cache_lookups_total{operation_mode="symbol",tool_id="cursor",tool_name="read"} 1
`
	if err := testutil.GatherAndCompare(s.reg, strings.NewReader(expected),
		"omnimemory_tool_cache_hits_total", "omnimemory_tool_cache_lookups_total"); err != nil {
		t.Error(err)
	}
	// A retry (same operation_id) is counted once.
	again := op(map[string]any{"cache_hit": true, "operation_id": ids[0]})
	again["tool_name"], again["operation_mode"], again["created_at"] = "search", "semantic", "2025-01-14T11:00:00Z"
	s.mustDo("POST", "/track/tool-operation", again, 200)
	if got := testutil.ToFloat64(metricVec(t, s.reg, "omnimemory_tool_cache_lookups_total")); got != 4 {
		t.Errorf("cache lookups after a retry: %v, want 4", got)
	}
}

func TestBodyLimit(t *testing.T) {
	s := newService(t, serviceOpts{})
	big := op(map[string]any{"parameters": map[string]any{"blob": strings.Repeat("x", api.MaxBodyBytes)}})
	for _, path := range []string{"/track/tool-operation", "/sessions/start", "/sessions/get_or_create"} {
		r := s.do("POST", path, big)
		if r.status != 413 {
			t.Errorf("%s: status %d, want 413", path, r.status)
		}
		assertDetail(t, r)
	}
	// Checked first: a body too large is 413 even on a GET.
	r := s.do("GET", "/metrics/tool-operations?limit=0", strings.Repeat("x", api.MaxBodyBytes+1))
	if r.status != 413 {
		t.Errorf("GET with a huge body: status %d, want 413", r.status)
	}
	if total := num(t, s.mustDo("GET", "/metrics/tool-operations", nil, 200), "total"); total != 0 {
		t.Errorf("a rejected body stored %v operations", total)
	}
	deep := strings.Repeat(`{"a":`, 40) + "1" + strings.Repeat("}", 40)
	r = s.do("POST", "/track/tool-operation", strings.Replace(mustJSON(t, op(nil)), `"parameters":{"compress":true}`, `"parameters":`+deep, 1))
	if r.status != 422 {
		t.Errorf("deeply nested parameters: status %d, want 422: %s", r.status, r.body)
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func TestConcurrentPostsAreEachStoredOnce(t *testing.T) {
	s := newService(t, serviceOpts{})
	const n = 400
	ids := make([]string, n)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	sem := make(chan struct{}, 64)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			body := mustJSON(t, op(map[string]any{"tokens_original": 1000 + i, "tokens_actual": 0, "tokens_prevented": nil}))
			resp, err := http.Post(s.srv.URL+"/track/tool-operation", "application/json", strings.NewReader(body))
			if err != nil {
				errs <- err
				return
			}
			defer resp.Body.Close()
			var out map[string]string
			if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != 200 {
				errs <- fmt.Errorf("status %d: %v", resp.StatusCode, err)
				return
			}
			ids[i] = out["operation_id"]
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	stored := map[string]float64{}
	for offset := 0; offset < n; offset += 1000 {
		page := s.mustDo("GET", fmt.Sprintf("/metrics/tool-operations?limit=1000&offset=%d", offset), nil, 200)
		for _, o := range page["operations"].([]any) {
			m := o.(map[string]any)
			if _, dup := stored[m["id"].(string)]; dup {
				t.Fatalf("operation %s stored twice", m["id"])
			}
			stored[m["id"].(string)] = m["tokens_original"].(float64)
		}
	}
	if len(stored) != n {
		t.Fatalf("stored %d operations, want %d", len(stored), n)
	}
	for i, id := range ids {
		if stored[id] != float64(1000+i) {
			t.Errorf("operation %d (%s): tokens_original %v", i, id, stored[id])
		}
	}
	if got := testutil.ToFloat64(metricVec(t, s.reg, "omnimemory_tool_operations_total")); got != n {
		t.Errorf("operations counter = %v, want %d", got, n)
	}
	sess := s.mustDo("GET", "/sessions/"+sessionA, nil, 200)
	if sess["total_operations"] != float64(n) {
		t.Errorf("session total_operations = %v", sess["total_operations"])
	}
}

// metricVec answers a collector that sums the named counter or gauge family
// of reg over its series, for testutil.ToFloat64 (which needs exactly one).
func metricVec(t *testing.T, reg *prometheus.Registry, name string) prometheus.Collector {
	t.Helper()
	return gatherer{reg: reg, name: name}
}

type gatherer struct {
	reg  *prometheus.Registry
	name string
}

func (g gatherer) Describe(chan<- *prometheus.Desc) {}

func (g gatherer) Collect(ch chan<- prometheus.Metric) {
	families, _ := g.reg.Gather()
	for _, f := range families {
		if f.GetName() != g.name {
			continue
		}
		var sum float64
		for _, m := range f.GetMetric() {
			sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
		ch <- prometheus.MustNewConstMetric(prometheus.NewDesc(g.name, "sum", nil, nil), prometheus.CounterValue, sum)
	}
}

func TestMetricsMatchWhatWasAccepted(t *testing.T) {
	s := newService(t, serviceOpts{})
	for _, o := range sampleOperations() {
		s.mustDo("POST", "/track/tool-operation", o, 200)
	}
	s.mustDo("POST", "/track/tool-operation", op(map[string]any{"tokens_original": 100, "tokens_actual": 250, "tokens_prevented": -150, "tool_id": "cursor"}), 200)
	s.do("POST", "/track/tool-operation", op(map[string]any{"tool_name": "bad"}))
	s.do("POST", "/track/tool-operation", op(map[string]any{"session_id": "bad"}))

	expected := `
# HELP omnimemory_tool_tokens_prevented_total Tokens saved against the baseline; an operation that cost more than its baseline adds nothing here.
# TYPE omnimemory_tool_tokens_prevented_total counter
omnimemory_tool_tokens_prevented_total{operation_mode="full",tool_id="claude-code",tool_name="read"} 0
omnimemory_tool_tokens_prevented_total{operation_mode="overview",tool_id="claude-code",tool_name="read"} 4500
omnimemory_tool_tokens_prevented_total{operation_mode="semantic",tool_id="claude-code",tool_name="search"} 45000
omnimemory_tool_tokens_prevented_total{operation_mode="symbol",tool_id="claude-code",tool_name="read"} 7200
omnimemory_tool_tokens_prevented_total{operation_mode="tri_index",tool_id="claude-code",tool_name="search"} 27000
# HELP omnimemory_tool_tokens_overspent_total Tokens by which operations cost more than their baseline.
# TYPE omnimemory_tool_tokens_overspent_total counter
omnimemory_tool_tokens_overspent_total{operation_mode="overview",tool_id="cursor",tool_name="read"} 150
# HELP omnimemory_cost_per_1k_tokens_usd Configured price in US dollars per 1,000 tokens, to turn token counters into dollars.
# TYPE omnimemory_cost_per_1k_tokens_usd gauge
omnimemory_cost_per_1k_tokens_usd 0.015
`
	if err := testutil.GatherAndCompare(s.reg, strings.NewReader(expected),
		"omnimemory_tool_tokens_prevented_total", "omnimemory_tool_tokens_overspent_total", "omnimemory_cost_per_1k_tokens_usd"); err != nil {
		t.Error(err)
	}
	for name, want := range map[string]float64{
		"omnimemory_tool_operations_total":      6,
		"omnimemory_tool_tokens_original_total": 98100,
		"omnimemory_tool_tokens_actual_total":   14550,
	} {
		if got := testutil.ToFloat64(metricVec(t, s.reg, name)); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	problems, err := testutil.GatherAndLint(s.reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint %s: %s", p.Metric, p.Text)
	}
	r := s.do("GET", "/metrics", nil)
	if r.status != 200 || !bytes.Contains(r.body, []byte(`omnimemory_http_requests_total{code="200",method="post",route="/track/tool-operation"} 6`)) {
		t.Errorf("exposition lacks the route-labelled request counter:\n%s", r.body)
	}
	if bytes.Contains(r.body, []byte(sessionA)) || bytes.Contains(r.body, []byte("src/main.py")) {
		t.Error("the exposition carries a session id or a file path")
	}
	r = s.do("GET", "/metrics", nil, "Accept", "application/openmetrics-text; version=1.0.0")
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/openmetrics-text") {
		t.Errorf("OpenMetrics asked, Content-Type %q", ct)
	}
}

func TestRestartOnTheSameFileKeepsEverything(t *testing.T) {
	path := filepath.Join(t.TempDir(), "metrics.db")
	s := newService(t, serviceOpts{path: path})
	for _, o := range sampleOperations() {
		s.mustDo("POST", "/track/tool-operation", o, 200)
	}
	started := s.mustDo("POST", "/sessions/start", map[string]any{"tool_id": "cursor", "process_id": 42}, 200)
	before := s.do("GET", "/metrics/api-savings?time_range=all", nil)
	ops := s.do("GET", "/metrics/tool-operations", nil)
	s.close()

	s2 := newService(t, serviceOpts{path: path})
	after := s2.do("GET", "/metrics/api-savings?time_range=all", nil)
	var b, a map[string]any
	_ = json.Unmarshal(before.body, &b)
	_ = json.Unmarshal(after.body, &a)
	delete(b, "calculated_at")
	delete(a, "calculated_at")
	if mustJSON(t, a) != mustJSON(t, b) {
		t.Errorf("savings changed across a restart:\nbefore %s\nafter  %s", mustJSON(t, b), mustJSON(t, a))
	}
	if ops2 := s2.do("GET", "/metrics/tool-operations", nil); !bytes.Equal(ops.body, ops2.body) {
		t.Errorf("operations changed across a restart")
	}
	got := s2.mustDo("GET", "/sessions/"+started["session_id"].(string), nil, 200)
	if got["tool_id"] != "cursor" || got["process_id"] != 42.0 {
		t.Errorf("session after restart: %v", got)
	}
}

func TestSessions(t *testing.T) {
	s := newService(t, serviceOpts{})
	started := s.mustDo("POST", "/sessions/start", map[string]any{"tool_id": "claude-code", "tool_version": "1.2.3", "process_id": 7, "project_id": "p1", "workspace_path": "/w"}, 200)
	if started["status"] != "started" || started["tool_id"] != "claude-code" || started["tool_version"] != "1.2.3" {
		t.Errorf("start answered %v", started)
	}
	id := started["session_id"].(string)

	// get_or_create: by tool_id + process_id, then by instance id.
	got := s.mustDo("POST", "/sessions/get_or_create", map[string]any{"tool_id": "claude-code", "process_id": 7}, 200)
	if got["status"] != "existing" || got["session_id"] != id || got["message"] == "" {
		t.Errorf("get_or_create by process answered %v, want existing %s", got, id)
	}
	created := s.mustDo("POST", "/sessions/get_or_create", map[string]any{"tool_id": "claude-code", "instance_id": "inst-1"}, 200)
	if created["status"] != "created" || created["session_id"] == id {
		t.Errorf("get_or_create for a new instance answered %v", created)
	}
	again := s.mustDo("POST", "/sessions/get_or_create", map[string]any{"tool_id": "claude-code", "instance_id": "inst-1", "process_id": 99}, 200)
	if again["status"] != "existing" || again["session_id"] != created["session_id"] {
		t.Errorf("get_or_create by instance answered %v", again)
	}
	fallback := s.mustDo("POST", "/sessions/get_or_create", map[string]any{"tool_id": "claude-code", "instance_id": "inst-unknown", "process_id": 7}, 200)
	if fallback["status"] != "existing" || fallback["session_id"] != id {
		t.Errorf("unknown instance with a process id: %v, want the process's session", fallback)
	}

	// Operations count towards the session; a heartbeat is activity.
	for _, o := range sampleOperations() {
		o["session_id"] = id
		s.mustDo("POST", "/track/tool-operation", o, 200)
	}
	hb := s.mustDo("POST", "/sessions/"+id+"/heartbeat", nil, 200)
	if hb["status"] != "active" || hb["session_id"] != id || hb["last_activity"] == "" {
		t.Errorf("heartbeat answered %v", hb)
	}
	sess := s.mustDo("GET", "/sessions/"+id, nil, 200)
	for k, v := range map[string]any{"total_operations": 5.0, "tokens_saved": 83700.0, "total_compressions": 3.0,
		"total_embeddings": 2.0, "tool_version": "1.2.3", "process_id": 7.0, "project_id": "p1", "ended_at": nil, "instance_id": nil} {
		if sess[k] != v {
			t.Errorf("session %s = %v, want %v", k, sess[k], v)
		}
	}
	active := s.mustDo("GET", "/sessions/active?tool_id=claude-code", nil, 200)
	if active["count"] != 2.0 || active["tool_id"] != "claude-code" {
		t.Errorf("active sessions %v", active)
	}
	if all := s.mustDo("GET", "/sessions/active", nil, 200); all["tool_id"] != nil || all["count"] != 2.0 {
		t.Errorf("active without tool_id: %v", all)
	}
	if other := s.mustDo("GET", "/sessions/active?tool_id=cursor", nil, 200); other["count"] != 0.0 {
		t.Errorf("active for another tool: %v", other)
	}

	// End, end again (unchanged), activity never reopens.
	ended := s.mustDo("POST", "/sessions/"+id+"/end", nil, 200)
	summary := ended["summary"].(map[string]any)
	if ended["status"] != "ended" || summary["ended_at"] == nil || summary["tokens_saved"] != 83700.0 {
		t.Errorf("end answered %v", ended)
	}
	again2 := s.mustDo("POST", "/sessions/"+id+"/end", nil, 200)
	if again2["summary"].(map[string]any)["ended_at"] != summary["ended_at"] {
		t.Errorf("ending twice moved ended_at: %v then %v", summary["ended_at"], again2["summary"].(map[string]any)["ended_at"])
	}
	s.mustDo("POST", "/sessions/"+id+"/heartbeat", nil, 200)
	o := sampleOperations()[0]
	o["session_id"] = id
	s.mustDo("POST", "/track/tool-operation", o, 200)
	sess = s.mustDo("GET", "/sessions/"+id, nil, 200)
	if sess["ended_at"] != summary["ended_at"] || sess["total_operations"] != 6.0 {
		t.Errorf("after end: %v", sess)
	}
	if got := s.mustDo("POST", "/sessions/get_or_create", map[string]any{"tool_id": "claude-code", "process_id": 7}, 200); got["status"] != "created" {
		t.Errorf("get_or_create reused an ended session: %v", got)
	}

	// An operation for an unknown session creates it, starting at the operation.
	implicit := "0f0e0d0c-0b0a-4908-8706-050403020100"
	at := time.Now().Add(-time.Minute).UTC().Truncate(time.Second)
	o = sampleOperations()[1]
	o["session_id"], o["tool_id"], o["created_at"] = implicit, "cursor", at.Format(time.RFC3339)
	s.mustDo("POST", "/track/tool-operation", o, 200)
	sess = s.mustDo("GET", "/sessions/"+implicit, nil, 200)
	if sess["tool_id"] != "cursor" || sess["started_at"] != at.Format(time.RFC3339) || sess["process_id"] != nil || sess["total_operations"] != 1.0 {
		t.Errorf("implicit session %v", sess)
	}

	// Errors.
	unknown := "00000000-0000-4000-8000-000000000000"
	for _, c := range []struct {
		method, path string
		want         int
		detail       string
	}{
		{"GET", "/sessions/" + unknown, 404, "Session " + unknown + " not found"},
		{"POST", "/sessions/" + unknown + "/heartbeat", 404, "Session " + unknown + " not found"},
		{"POST", "/sessions/" + unknown + "/end", 404, "Session " + unknown + " not found"},
		{"GET", "/sessions/not-a-uuid", 400, ""},
		{"POST", "/sessions/not-a-uuid/heartbeat", 400, ""},
	} {
		r := s.do(c.method, c.path, nil)
		if r.status != c.want {
			t.Errorf("%s %s: %d, want %d", c.method, c.path, r.status, c.want)
		}
		assertDetail(t, r)
		if c.detail != "" && r.json(t)["detail"] != c.detail {
			t.Errorf("%s %s: detail %v", c.method, c.path, r.json(t)["detail"])
		}
	}
	for _, body := range []any{map[string]any{}, map[string]any{"tool_id": ""}, map[string]any{"tool_id": "x", "process_id": "7"}, "nope"} {
		if r := s.do("POST", "/sessions/start", body); r.status != 422 {
			t.Errorf("start with %v: %d, want 422", body, r.status)
		}
	}
}

func TestOperationalEndpointsAndCORS(t *testing.T) {
	s := newService(t, serviceOpts{origins: []string{"http://localhost:8004"}})
	if got := s.mustDo("GET", "/health", nil, 200); got["status"] != "healthy" {
		t.Errorf("health %v", got)
	}
	s.mustDo("GET", "/ready", nil, 200)
	r := s.do("GET", "/nowhere", nil)
	if r.status != 404 {
		t.Errorf("unknown path: %d", r.status)
	}
	assertDetail(t, r)
	r = s.do("DELETE", "/health", nil)
	if r.status != 405 {
		t.Errorf("wrong method: %d", r.status)
	}
	assertDetail(t, r)

	r = s.do("OPTIONS", "/metrics/api-savings", nil, "Origin", "http://localhost:8004", "Access-Control-Request-Method", "GET")
	if r.status != 204 || r.header.Get("Access-Control-Allow-Origin") != "http://localhost:8004" || r.header.Get("Access-Control-Allow-Methods") == "" {
		t.Errorf("preflight: %d %v", r.status, r.header)
	}
	r = s.do("GET", "/metrics/tool-breakdown", nil, "Origin", "http://localhost:8004")
	if r.header.Get("Access-Control-Allow-Origin") != "http://localhost:8004" {
		t.Errorf("allowed origin got %q", r.header.Get("Access-Control-Allow-Origin"))
	}
	r = s.do("GET", "/metrics/tool-breakdown", nil, "Origin", "http://evil.example")
	if r.status != 200 || r.header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("other origin: %d, allow header %q", r.status, r.header.Get("Access-Control-Allow-Origin"))
	}
	r = s.do("POST", "/track/tool-operation", op(map[string]any{"tool_name": "x"}), "Origin", "http://localhost:8004")
	if r.status != 422 || r.header.Get("Access-Control-Allow-Origin") != "http://localhost:8004" {
		t.Errorf("an error answer lacks the allow header: %d %v", r.status, r.header)
	}

	star := newService(t, serviceOpts{})
	r = star.do("GET", "/health", nil)
	if r.header.Get("Access-Control-Allow-Origin") != "*" {
		t.Errorf("default origins: allow header %q, want *", r.header.Get("Access-Control-Allow-Origin"))
	}
	r = star.do("OPTIONS", "/track/tool-operation", nil, "Origin", "http://x.example", "Access-Control-Request-Method", "POST", "Access-Control-Request-Headers", "content-type")
	if r.status != 204 || r.header.Get("Access-Control-Allow-Headers") != "content-type" {
		t.Errorf("preflight with *: %d %v", r.status, r.header)
	}
}

func TestReadyAnswers503WhenTheStoreIsGone(t *testing.T) {
	s := newService(t, serviceOpts{})
	if err := s.store.Close(); err != nil {
		t.Fatal(err)
	}
	r := s.do("GET", "/ready", nil)
	if r.status != 503 {
		t.Fatalf("ready with a closed store: %d", r.status)
	}
	assertDetail(t, r)
	r = s.do("GET", "/metrics/tool-breakdown", nil)
	if r.status != 503 && r.status != 500 {
		t.Errorf("a read with a closed store: %d", r.status)
	}
	assertDetail(t, r)
	if strings.Contains(string(r.body), "goroutine") {
		t.Errorf("answer carries a stack trace: %s", r.body)
	}
}
