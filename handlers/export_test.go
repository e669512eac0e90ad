package handlers_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/omnimemory/omnimemory-metrics/client/api"

	"github.com/google/uuid"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/omnimemory/omnimemory-metrics/exporter"
	"github.com/omnimemory/omnimemory-metrics/handlers"
	"github.com/omnimemory/omnimemory-metrics/internal/tracing"
	"github.com/omnimemory/omnimemory-metrics/tsdb"
	"github.com/omnimemory/omnimemory-metrics/tsdb/sqlite"
)

// exportHeader are the fields of an exported operation, in order: those of
// the query endpoint's operation objects, then cache_hit. The CSV header.
var exportHeader = []string{"id", "session_id", "tool_name", "operation_mode", "parameters", "file_path",
	"tokens_original", "tokens_actual", "tokens_prevented", "response_time_ms", "tool_id", "created_at", "cache_hit"}

// cacheHits maps an operation id to its cache_hit as JSON (true, false or
// null).
type cacheHits map[string]string

// exported answers the NDJSON line of the operation whose query endpoint
// object is obj: that object, byte for byte, with cache_hit after its last
// field.
func (h cacheHits) exported(t *testing.T, obj json.RawMessage) json.RawMessage {
	t.Helper()
	var o struct{ ID string }
	if err := json.Unmarshal(obj, &o); err != nil {
		t.Fatal(err)
	}
	hit, ok := h[o.ID]
	if !ok {
		t.Fatalf("operation %s was not seeded", o.ID)
	}
	return json.RawMessage(string(obj[:len(obj)-1]) + `,"cache_hit":` + hit + `}`)
}

// queryObjects pages through GET /metrics/tool-operations with the filters
// of query and answers every operation object as the endpoint sent it,
// oldest first (the endpoint's order reversed).
func (s *service) queryObjects(query string) []json.RawMessage {
	s.t.Helper()
	var all []json.RawMessage
	for offset := 0; ; offset += 1000 {
		r := s.do("GET", fmt.Sprintf("/metrics/tool-operations?%s&limit=1000&offset=%d", query, offset), nil)
		if r.status != 200 {
			s.t.Fatalf("query %q: %d %s", query, r.status, r.body)
		}
		var page struct{ Operations []json.RawMessage }
		if err := json.Unmarshal(r.body, &page); err != nil {
			s.t.Fatal(err)
		}
		all = append(all, page.Operations...)
		if len(page.Operations) < 1000 {
			break
		}
	}
	slices.Reverse(all)
	return all
}

// csvFields answers what each CSV field of an exported operation must read:
// strings as they are, null as an empty field, numbers and the parameters
// object as their JSON text.
func csvFields(t *testing.T, obj json.RawMessage) []string {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(obj, &m); err != nil {
		t.Fatal(err)
	}
	if len(m) != len(exportHeader) {
		t.Fatalf("operation object with %d fields: %s", len(m), obj)
	}
	out := make([]string, len(exportHeader))
	for i, col := range exportHeader {
		raw := m[col]
		switch {
		case string(raw) == "null":
		case raw[0] == '"':
			if err := json.Unmarshal(raw, &out[i]); err != nil {
				t.Fatal(err)
			}
		default:
			out[i] = string(raw)
		}
	}
	return out
}

// seedExportOperations posts operations whose fields need CSV quoting and
// JSON escaping, and writes many more through the store in batches, with
// runs at one identical created_at; cache_hit is true, false or unknown.
// It answers the cache_hit of every operation.
func seedExportOperations(t *testing.T, s *service) cacheHits {
	hits := cacheHits{}
	base := time.Date(2025, 2, 3, 4, 5, 6, 0, time.UTC)
	for i, fields := range []map[string]any{
		{"parameters": map[string]any{"q": "a,b \"quoted\"\nnext line", "html": "<a href=\"x\">&</a>", "n": 1.5e-7}, "file_path": "dir, with comma/file \"x\".go", "cache_hit": true},
		{"parameters": nil, "file_path": nil, "tool_name": "search", "operation_mode": "semantic", "cache_hit": false},
		{"parameters": map[string]any{"unicode": "café 日本語 \u2028"}, "file_path": "", "tokens_original": 10, "tokens_actual": 40, "tokens_prevented": -30},
		{"response_time_ms": 0, "tokens_original": 0, "tokens_actual": 0, "tokens_prevented": nil, "tool_id": "tool, \"quoted\""},
		{"response_time_ms": 1e21, "tokens_original": 9_000_000_000_000_000_000, "tokens_actual": 1, "tokens_prevented": nil, "session_id": "AAAAAAAA-BBBB-4CCC-8DDD-EEEEEEEEEEEE"},
	} {
		fields["created_at"] = base.Add(time.Duration(i) * time.Minute).Format(time.RFC3339Nano)
		id := s.mustDo("POST", "/track/tool-operation", op(fields), 200)["operation_id"].(string)
		hits[id] = "null"
		if hit, ok := fields["cache_hit"]; ok {
			hits[id] = fmt.Sprint(hit)
		}
	}
	var ops []tsdb.Operation
	sessions := []uuid.UUID{uuid.MustParse(sessionA), uuid.MustParse("6f1c1e2a-0000-4000-8000-000000000002")}
	for i := range 2500 {
		at := base.Add(time.Hour + time.Duration(i/5)*time.Second + time.Duration(i%3)*time.Microsecond) // runs of ties
		var file *string
		if i%4 != 0 {
			f := fmt.Sprintf("src/pkg%d/file_%d.go", i%7, i)
			file = &f
		}
		ops = append(ops, tsdb.Operation{
			ID: uuid.Must(uuid.NewRandom()), SessionID: sessions[i%2], ToolName: api.ToolNames[i%2],
			OperationMode: api.OperationModes[i%len(api.OperationModes)], Parameters: json.RawMessage(fmt.Sprintf(`{"i":%d,"s":"x,y"}`, i)),
			FilePath: file, TokensOriginal: int64(1000 + i), TokensActual: int64(i), TokensPrevented: 1000,
			ResponseTimeMs: float64(i) / 8, ToolID: []string{"claude-code", "cursor", "windsurf"}[i%3], CreatedAt: at,
		})
		last := &ops[len(ops)-1]
		hits[last.ID.String()] = "null"
		if i%3 > 0 {
			last.CacheHit = new(i%3 == 1)
			hits[last.ID.String()] = fmt.Sprint(*last.CacheHit)
		}
	}
	for i := 0; i < len(ops); i += 1000 {
		if err := s.store.WriteOperations(context.Background(), ops[i:min(i+1000, len(ops))]); err != nil {
			t.Fatal(err)
		}
	}
	return hits
}

var exportFilters = []string{
	"",
	"session_id=" + sessionA,
	"session_id=AAAAAAAA-BBBB-4CCC-8DDD-EEEEEEEEEEEE",
	"tool_name=search",
	"operation_mode=overview&tool_name=read",
	"tool_id=cursor",
	"tool_id=" + url.QueryEscape(`tool, "quoted"`),
	"start_date=2025-02-03T05:05:07Z&end_date=2025-02-03T05:10:00",
	"start_date=2025-02-03&end_date=2025-02-03T04:07:06Z",
	"start_date=2025-02-04",
	"session_id=" + sessionA + "&tool_id=windsurf&start_date=2025-02-03T05:06:00Z",
	"limit=5&offset=3", // ignored
}

func TestExportCSVEqualsTheQueryAnswer(t *testing.T) {
	s := newService(t, serviceOpts{})
	hits := seedExportOperations(t, s)
	for _, query := range exportFilters {
		for _, format := range []string{"format=csv&", ""} { // csv is the default
			r := s.do("GET", "/metrics/tool-operations/export?"+format+query, nil)
			if r.status != 200 {
				t.Fatalf("export %q: %d %s", query, r.status, r.body)
			}
			if ct := r.header.Get("Content-Type"); ct != "text/csv; charset=utf-8" {
				t.Errorf("Content-Type %q", ct)
			}
			if cd := r.header.Get("Content-Disposition"); cd != `attachment; filename="tool-operations.csv"` {
				t.Errorf("Content-Disposition %q", cd)
			}
			if eh := r.header.Get("Access-Control-Expose-Headers"); !strings.Contains(eh, "Content-Disposition") {
				t.Errorf("Access-Control-Expose-Headers %q: a page of another origin cannot read the file name", eh)
			}
			records, err := csv.NewReader(bytes.NewReader(r.body)).ReadAll()
			if err != nil {
				t.Fatalf("export %q is not CSV: %v", query, err)
			}
			if !slices.Equal(records[0], exportHeader) {
				t.Fatalf("header %v, want %v", records[0], exportHeader)
			}
			want := s.queryObjects(strings.TrimSuffix(query, "limit=5&offset=3"))
			if len(records)-1 != len(want) {
				t.Fatalf("export %q: %d rows, the query endpoint answers %d operations", query, len(records)-1, len(want))
			}
			for i, obj := range want {
				if w := csvFields(t, hits.exported(t, obj)); !slices.Equal(records[i+1], w) {
					t.Fatalf("export %q row %d:\ngot  %q\nwant %q", query, i+1, records[i+1], w)
				}
			}
		}
	}
}

// TestExportNDJSONLinesAreTheQueryObjects: every line is the query
// endpoint's object of the operation, byte for byte, and its cache_hit.
func TestExportNDJSONLinesAreTheQueryObjects(t *testing.T) {
	s := newService(t, serviceOpts{})
	hits := seedExportOperations(t, s)
	for _, query := range exportFilters {
		r := s.do("GET", "/metrics/tool-operations/export?format=ndjson&"+query, nil)
		if r.status != 200 {
			t.Fatalf("export %q: %d %s", query, r.status, r.body)
		}
		if ct := r.header.Get("Content-Type"); ct != "application/x-ndjson" {
			t.Errorf("Content-Type %q", ct)
		}
		if cd := r.header.Get("Content-Disposition"); cd != `attachment; filename="tool-operations.ndjson"` {
			t.Errorf("Content-Disposition %q", cd)
		}
		want := s.queryObjects(strings.TrimSuffix(query, "limit=5&offset=3"))
		if len(want) == 0 {
			if len(r.body) != 0 {
				t.Errorf("export %q with no match: %q, want an empty body", query, r.body)
			}
			continue
		}
		if !bytes.HasSuffix(r.body, []byte("\n")) {
			t.Fatalf("export %q does not end with a line break", query)
		}
		lines := bytes.Split(bytes.TrimSuffix(r.body, []byte("\n")), []byte("\n"))
		if len(lines) != len(want) {
			t.Fatalf("export %q: %d lines, the query endpoint answers %d operations", query, len(lines), len(want))
		}
		for i := range want {
			if w := hits.exported(t, want[i]); !bytes.Equal(lines[i], w) {
				t.Fatalf("export %q line %d:\ngot  %s\nwant %s", query, i+1, lines[i], w)
			}
		}
	}
	// No match: a CSV holds its header alone.
	r := s.do("GET", "/metrics/tool-operations/export?tool_id=nobody", nil)
	if r.status != 200 || string(r.body) != strings.Join(exportHeader, ",")+"\n" {
		t.Errorf("empty CSV export: %d %q", r.status, r.body)
	}
}

func TestExportParameterErrors(t *testing.T) {
	s := newService(t, serviceOpts{})
	for _, query := range []string{
		"format=xml", "format=CSV", "format=json", "format=xml&format=csv",
		"session_id=nope", "tool_name=write", "operation_mode=deep", "start_date=yesterday", "end_date=2025-13-01",
		"format=xml&session_id=nope",
	} {
		r := s.do("GET", "/metrics/tool-operations/export?"+query, nil)
		if r.status != 400 {
			t.Errorf("%q: status %d, want 400: %s", query, r.status, r.body)
			continue
		}
		assertDetail(t, r)
		if strings.HasPrefix(query, "format=") && !strings.HasPrefix(query, "format=csv") {
			if got := r.json(t)["detail"]; got != "Invalid format: must be one of csv, ndjson" {
				t.Errorf("%q: detail %q", query, got)
			}
			continue
		}
		// The query endpoint's own answer, word for word.
		if q := s.do("GET", "/metrics/tool-operations?"+query, nil); q.status != r.status || !bytes.Equal(q.body, r.body) {
			t.Errorf("%q: export answers %d %s, the query endpoint %d %s", query, r.status, r.body, q.status, q.body)
		}
	}
	// Paging parameters are not the export's: ignored, however bad.
	for _, query := range []string{"limit=0", "limit=abc", "offset=-1", "limit=1001&offset=1.5", "format=", "unknown=1"} {
		if r := s.do("GET", "/metrics/tool-operations/export?"+query, nil); r.status != 200 {
			t.Errorf("%q: status %d, want 200: %s", query, r.status, r.body)
		}
	}
	if r := s.do("POST", "/metrics/tool-operations/export", nil); r.status != 405 {
		t.Errorf("POST: %d, want 405", r.status)
	}
}

func TestExportNeedsTheToken(t *testing.T) {
	const token = "export-token"
	s := newService(t, serviceOpts{token: token})
	for _, headers := range [][]string{nil, {"Authorization", "Bearer nope"}} {
		r := s.do("GET", "/metrics/tool-operations/export?format=ndjson", nil, headers...)
		if r.status != 401 || r.header.Get("WWW-Authenticate") == "" {
			t.Errorf("export with token %v: %d %s", headers, r.status, r.body)
		}
		assertDetail(t, r)
	}
	s.mustDo("POST", "/track/tool-operation", op(nil), 401)
	r := s.do("POST", "/track/tool-operation", op(nil), "Authorization", "Bearer "+token)
	if r.status != 200 {
		t.Fatalf("track: %d", r.status)
	}
	r = s.do("GET", "/metrics/tool-operations/export", nil, "Authorization", "Bearer "+token)
	if r.status != 200 || bytes.Count(r.body, []byte("\n")) != 2 {
		t.Errorf("export with the token: %d %q", r.status, r.body)
	}
}

func TestExportSpan(t *testing.T) {
	spans := tracetest.NewInMemoryExporter()
	tp := tracing.NewProvider(sdktrace.NewSimpleSpanProcessor(spans), "test")
	t.Cleanup(func() { _ = tp.Shutdown(t.Context()) })
	s := newService(t, serviceOpts{tp: tp})
	for range 3 {
		s.mustDo("POST", "/track/tool-operation", op(nil), 200)
	}
	if r := s.do("GET", "/metrics/tool-operations/export", nil); r.status != 200 {
		t.Fatal(r.status)
	}
	byName := map[string]tracetest.SpanStub{}
	for _, sp := range spans.GetSpans() {
		byName[sp.Name] = sp
	}
	get, ok := byName["GET /metrics/tool-operations/export"]
	if !ok {
		t.Fatalf("no span for the GET; spans: %v", names(spans.GetSpans()))
	}
	export, ok := byName["store.ExportOperations"]
	if !ok || export.Parent.SpanID() != get.SpanContext.SpanID() {
		t.Fatalf("store.ExportOperations missing or not a child of the GET span")
	}
	for _, a := range export.Attributes {
		if a.Key == "omnimemory.export.operations" && a.Value.AsInt64() != 3 {
			t.Errorf("span says %d operations, want 3", a.Value.AsInt64())
		}
	}
}

// scriptedStore answers exports from a script: hand out operations made
// up on the fly until failAfter (then fail with err) or, with failAfter <
// 0, until the context ends; every other call goes to the SQLite store.
type scriptedStore struct {
	tsdb.Store
	failAfter int
	err       error
	gate      chan struct{} // when set, an export waits for it first
	entered   chan struct{} // an export is waiting at the gate
	pause     time.Duration // a pause after every 1000 operations
	handed    atomic.Int64
	done      chan error // what each export answered
}

func (s *scriptedStore) ExportOperations(ctx context.Context, _ tsdb.OperationFilter, fn func(*tsdb.Operation) error) (err error) {
	defer func() { s.done <- err }()
	if s.gate != nil {
		s.entered <- struct{}{}
		select {
		case <-s.gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	base := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := 0; s.failAfter < 0 || i < s.failAfter; i++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		op := tsdb.Operation{ID: uuid.Must(uuid.NewRandom()), SessionID: uuid.MustParse(sessionA), ToolName: "read",
			OperationMode: "full", Parameters: json.RawMessage(`{"padding":"` + strings.Repeat("x", 200) + `"}`),
			ToolID: "claude-code", CreatedAt: base.Add(time.Duration(i) * time.Millisecond)}
		if err := fn(&op); err != nil {
			return err
		}
		if s.handed.Add(1)%1000 == 0 && s.pause > 0 {
			time.Sleep(s.pause)
		}
	}
	return s.err
}

// newScriptedServer serves the whole stack over store.
func newScriptedServer(t *testing.T, store *scriptedStore) *httptest.Server {
	return newScriptedServerTimeout(t, store, 0)
}

// newScriptedServerTimeout is newScriptedServer with the server's
// WriteTimeout.
func newScriptedServerTimeout(t *testing.T, store *scriptedStore, writeTimeout time.Duration) *httptest.Server {
	t.Helper()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "m.db"), logger)
	if err != nil {
		t.Fatal(err)
	}
	store.Store = db
	store.done = make(chan error, 16)
	h, svc := newStack(store, exporter.Options{Logger: logger}, handlers.Options{})
	srv := httptest.NewUnstartedServer(h)
	srv.Config.WriteTimeout = writeTimeout
	srv.Start()
	t.Cleanup(func() {
		srv.Close()
		_ = svc.Close(context.Background())
		_ = db.Close()
	})
	return srv
}

func TestExportStoreFailureBeforeTheFirstRowIsAnErrorAnswer(t *testing.T) {
	store := &scriptedStore{failAfter: 0, err: fmt.Errorf("%w: disk gone", tsdb.ErrUnavailable)}
	srv := newScriptedServer(t, store)
	resp, err := http.Get(srv.URL + "/metrics/tool-operations/export")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" || !strings.Contains(string(body), "disk gone") {
		t.Errorf("store down before the first row: %d %s", resp.StatusCode, body)
	}
}

// TestExportStoreFailureMidStreamBreaksTheTransfer: once rows went out, a
// failing store must not leave a file that looks complete.
func TestExportStoreFailureMidStreamBreaksTheTransfer(t *testing.T) {
	for _, format := range []string{"csv", "ndjson"} {
		store := &scriptedStore{failAfter: 10_000, err: fmt.Errorf("%w: connection reset", tsdb.ErrUnavailable)}
		srv := newScriptedServer(t, store)
		resp, err := http.Get(srv.URL + "/metrics/tool-operations/export?format=" + format)
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("%s: status %d", format, resp.StatusCode)
		}
		if err == nil {
			t.Fatalf("%s: the body ended cleanly after %d bytes although the store failed", format, len(body))
		}
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Logf("%s: body read failed with %v", format, err)
		}
		if n := bytes.Count(body, []byte("\n")); n > 10_001 {
			t.Errorf("%s: %d lines for 10,000 operations", format, n)
		}
	}
}

// TestExportOutlastsTheServersWriteTimeout: an export that takes longer
// than the server's WriteTimeout (the service sets one) is not cut by it,
// since each flush gives the client a new write window.
func TestExportOutlastsTheServersWriteTimeout(t *testing.T) {
	store := &scriptedStore{failAfter: 12_000, pause: 200 * time.Millisecond}
	srv := newScriptedServerTimeout(t, store, time.Second)
	start := time.Now()
	resp, err := http.Get(srv.URL + "/metrics/tool-operations/export?format=ndjson")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("the export broke after %s (%d bytes): %v", time.Since(start).Round(time.Millisecond), len(body), err)
	}
	if n := bytes.Count(body, []byte("\n")); n != 12_000 || time.Since(start) < 2*time.Second {
		t.Fatalf("%d lines in %s, want 12,000 in more than the 1 s write timeout", n, time.Since(start))
	}
}

// TestExportStopsWhenTheClientLeaves: an endless export ends once the
// client hangs up.
func TestExportStopsWhenTheClientLeaves(t *testing.T) {
	store := &scriptedStore{failAfter: -1}
	srv := newScriptedServer(t, store)
	resp, err := http.Get(srv.URL + "/metrics/tool-operations/export?format=ndjson")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.CopyN(io.Discard, resp.Body, 1<<20); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	select {
	case err := <-store.done:
		if err == nil {
			t.Fatal("the export ended without an error")
		}
		t.Logf("the export stopped after %d operations: %v", store.handed.Load(), err)
	case <-time.After(20 * time.Second):
		t.Fatalf("the export still runs 20 s after the client left (%d operations handed out)", store.handed.Load())
	}
}

// TestExportsAtOnceAreBounded: past the bound, an export is refused with
// 503 and Retry-After rather than queued behind long ones.
func TestExportsAtOnceAreBounded(t *testing.T) {
	store := &scriptedStore{failAfter: 3, gate: make(chan struct{}), entered: make(chan struct{}, 4)}
	srv := newScriptedServer(t, store)
	type answer struct {
		status int
		body   string
	}
	get := func() answer {
		resp, err := http.Get(srv.URL + "/metrics/tool-operations/export")
		if err != nil {
			return answer{status: -1, body: err.Error()}
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return answer{resp.StatusCode, string(b)}
	}
	release := sync.OnceFunc(func() { close(store.gate) })
	defer release() // before the server closes, whatever happens
	held := make(chan answer, 2)
	for range 2 {
		go func() { held <- get() }()
	}
	for range 2 { // both hold a slot, waiting at the gate
		select {
		case <-store.entered:
		case <-time.After(10 * time.Second):
			t.Fatal("the exports did not reach the store")
		}
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Get(srv.URL + "/metrics/tool-operations/export")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	refused := answer{resp.StatusCode, string(b)}
	if resp.StatusCode == 503 && resp.Header.Get("Retry-After") == "" {
		t.Error("503 without Retry-After")
	}
	release()
	if refused.status != 503 || !strings.Contains(refused.body, "Too many exports") {
		t.Fatalf("a third export at once: %d %s", refused.status, refused.body)
	}
	for range 2 {
		if a := <-held; a.status != 200 || strings.Count(a.body, "\n") != 4 {
			t.Errorf("a held export: %d %q", a.status, a.body)
		}
	}
	if a := get(); a.status != 200 {
		t.Errorf("an export after the others ended: %d %s", a.status, a.body)
	}
}

// heapSampler records the peak of the heap's object bytes (live and not
// yet collected) and of the live heap after the last GC while it runs.
type heapSampler struct {
	stop          chan struct{}
	done          chan struct{}
	peak, live    uint64
	base, baseLiv uint64
}

var heapMetrics = []string{"/memory/classes/heap/objects:bytes", "/gc/heap/live:bytes"}

func readHeap() (objects, live uint64) {
	s := []metrics.Sample{{Name: heapMetrics[0]}, {Name: heapMetrics[1]}}
	metrics.Read(s)
	return s[0].Value.Uint64(), s[1].Value.Uint64()
}

func startHeapSampler() *heapSampler {
	runtime.GC()
	runtime.GC()
	h := &heapSampler{stop: make(chan struct{}), done: make(chan struct{})}
	h.base, h.baseLiv = readHeap()
	go func() {
		defer close(h.done)
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for {
			o, l := readHeap()
			h.peak, h.live = max(h.peak, o), max(h.live, l)
			select {
			case <-h.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return h
}

// growth answers how far the heap rose above where it stood at the start.
func (h *heapSampler) growth() (objects, live uint64) {
	close(h.stop)
	<-h.done
	sub := func(a, b uint64) uint64 {
		if a > b {
			return a - b
		}
		return 0
	}
	return sub(h.peak, h.base), sub(h.live, h.baseLiv)
}

// seedBulk writes n operations spread evenly over span from start through
// the store, in batches of 5000.
func seedBulk(tb testing.TB, store tsdb.Store, n int, start time.Time, span time.Duration) {
	tb.Helper()
	ops := make([]tsdb.Operation, 0, 5000)
	session := uuid.MustParse(sessionA)
	for i := range n {
		file := fmt.Sprintf("src/module_%d/file_%d.go", i%50, i)
		ops = append(ops, tsdb.Operation{
			ID: uuid.Must(uuid.NewV7()), SessionID: session, ToolName: api.ToolNames[i%2],
			OperationMode: api.OperationModes[i%len(api.OperationModes)], Parameters: json.RawMessage(`{"compress":true,"level":3}`),
			FilePath: &file, TokensOriginal: 5000, TokensActual: 500, TokensPrevented: 4500, ResponseTimeMs: 12.5,
			ToolID: "claude-code", CreatedAt: start.Add(time.Duration(int64(span) / int64(n) * int64(i))).Truncate(time.Microsecond),
		})
		if len(ops) == cap(ops) || i == n-1 {
			if err := store.WriteOperations(context.Background(), ops); err != nil {
				tb.Fatal(err)
			}
			ops = ops[:0]
		}
	}
}

// streamSlowly reads an export through a client that takes the body in
// 16 KiB reads with a pause every 1 MiB, and answers its lines.
func streamSlowly(t *testing.T, url string) (lines int, bytesRead int64) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("export: %d", resp.StatusCode)
	}
	buf := make([]byte, 16<<10)
	var last byte
	for {
		n, err := resp.Body.Read(buf)
		lines += bytes.Count(buf[:n], []byte("\n"))
		if n > 0 {
			last = buf[n-1]
		}
		if bytesRead/(1<<20) != (bytesRead+int64(n))/(1<<20) {
			time.Sleep(5 * time.Millisecond)
		}
		bytesRead += int64(n)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("reading the export after %d bytes: %v", bytesRead, err)
		}
	}
	if last != '\n' {
		t.Fatal("the export does not end with a whole line")
	}
	return lines, bytesRead
}

// TestExportMemoryDoesNotGrowWithRows streams 25,000 and then 100,000
// operations as CSV (and 25,000 as NDJSON) to a slow client through the
// real handler and SQLite store: the heap's peak rise must not follow the
// number of rows. Holding 100,000 rows, or their CSV (about 21 MB), would
// take over 16 MiB; 25,000 as NDJSON are about 10 MB. (NDJSON runs once
// only: the stream is the same but for the encoder, and the test stays
// within a minute under the race detector.)
func TestExportMemoryDoesNotGrowWithRows(t *testing.T) {
	s := newService(t, serviceOpts{})
	day := time.Date(2025, 5, 1, 0, 0, 0, 0, time.UTC)
	const small, large = 25_000, 100_000
	type figure struct{ objects, live uint64 }
	measure := func(n int, format string) figure {
		h := startHeapSampler()
		start := time.Now()
		lines, size := streamSlowly(t, s.srv.URL+"/metrics/tool-operations/export?format="+format)
		objects, live := h.growth()
		want := n
		if format == "csv" {
			want++ // the header
		}
		if lines != want {
			t.Fatalf("%s export of %d operations: %d lines", format, n, lines)
		}
		t.Logf("%s, %d operations: %.1f MB in %s; heap peak +%.1f MB, live heap peak +%.1f MB",
			format, n, float64(size)/1e6, time.Since(start).Round(time.Millisecond), float64(objects)/1e6, float64(live)/1e6)
		return figure{objects, live}
	}
	seedBulk(t, s.store, small, day, 24*time.Hour)
	smallCSV := measure(small, "csv")
	smallJSON := measure(small, "ndjson")
	seedBulk(t, s.store, large-small, day.AddDate(0, 0, 1), 24*time.Hour)
	largeCSV := measure(large, "csv")

	const ceiling = 16 << 20
	// Four times the rows: the peak rise stays below three times the
	// smaller one's (plus 4 MiB for the collector's timing) and below
	// 16 MiB in all.
	if largeCSV.objects > 3*smallCSV.objects+4<<20 || largeCSV.objects > ceiling {
		t.Errorf("heap peak rose %.1f MB for %d rows, %.1f MB for %d: memory follows the rows",
			float64(largeCSV.objects)/1e6, large, float64(smallCSV.objects)/1e6, small)
	}
	if largeCSV.live > 3*smallCSV.live+4<<20 || largeCSV.live > ceiling {
		t.Errorf("live heap rose %.1f MB for %d rows, %.1f MB for %d: memory follows the rows",
			float64(largeCSV.live)/1e6, large, float64(smallCSV.live)/1e6, small)
	}
	if smallJSON.objects > ceiling/2 || smallJSON.live > ceiling/2 {
		t.Errorf("NDJSON: heap peak rose %.1f MB (live %.1f MB) for %d rows",
			float64(smallJSON.objects)/1e6, float64(smallJSON.live)/1e6, small)
	}
}

// exportServerForBench serves the whole stack over a SQLite store holding n
// operations.
func exportServerForBench(b *testing.B, n int) *httptest.Server {
	b.Helper()
	logger := slog.New(slog.DiscardHandler)
	store, err := sqlite.Open(context.Background(), filepath.Join(b.TempDir(), "m.db"), logger)
	if err != nil {
		b.Fatal(err)
	}
	seedBulk(b, store, n, time.Date(2025, 5, 1, 0, 0, 0, 0, time.UTC), 30*24*time.Hour)
	h, svc := newStack(store, exporter.Options{Logger: logger}, handlers.Options{})
	srv := httptest.NewServer(h)
	b.Cleanup(func() {
		srv.Close()
		_ = svc.Close(context.Background())
		_ = store.Close()
	})
	return srv
}

// BenchmarkExport streams 1,000,000 operations (30 days) from SQLite
// through the HTTP stack to a client that counts lines, and reports rows/s,
// the heap's peak rise during the stream and, on Linux, the process's peak
// resident size during it (client included).
//
//	go test -run '^$' -bench BenchmarkExport -benchtime 3x ./handlers/
func BenchmarkExport(b *testing.B) {
	const n = 1_000_000
	srv := exportServerForBench(b, n)
	for _, format := range []string{"csv", "ndjson"} {
		b.Run(format, func(b *testing.B) {
			var rows int
			h := startHeapSampler()
			debug.FreeOSMemory()
			rssReset := resetPeakRSS()
			b.ResetTimer()
			for b.Loop() {
				resp, err := http.Get(srv.URL + "/metrics/tool-operations/export?format=" + format)
				if err != nil {
					b.Fatal(err)
				}
				rows = 0
				r := bufio.NewReaderSize(resp.Body, 64<<10)
				for {
					line, err := r.ReadSlice('\n')
					if len(line) > 0 && line[len(line)-1] == '\n' {
						rows++
					}
					if err == io.EOF {
						break
					}
					if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
						b.Fatal(err)
					}
				}
				resp.Body.Close()
			}
			b.StopTimer()
			objects, live := h.growth()
			if format == "csv" {
				rows--
			}
			if rows != n {
				b.Fatalf("%d rows, want %d", rows, n)
			}
			b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
			b.ReportMetric(float64(objects)/1e6, "heap-peak-rise-MB")
			b.ReportMetric(float64(live)/1e6, "live-heap-peak-rise-MB")
			if rssReset {
				if kb, ok := peakRSSKiB(); ok {
					b.ReportMetric(float64(kb)/1024, "peak-RSS-MB")
				}
			}
		})
	}
}

// resetPeakRSS resets the process's peak resident size (Linux 4.0 and
// later), so that peakRSSKiB tells the peak from now on.
func resetPeakRSS() bool {
	return os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) == nil
}

// peakRSSKiB answers VmHWM, the peak resident size since the last reset.
func peakRSSKiB() (int64, bool) {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, false
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			var kb int64
			if _, err := fmt.Sscan(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), &kb); err == nil {
				return kb, true
			}
		}
	}
	return 0, false
}
