package handlers

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/omnimemory/omnimemory-metrics/client/api"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/omnimemory/omnimemory-metrics/exporter"
	"github.com/omnimemory/omnimemory-metrics/tsdb"
)

// The fuzz targets feed hostile input to the decoders and, through the real
// router, to the handlers. Their seed corpora live in testdata/fuzz/<target>;
// scripts/test.sh runs each for a bounded time. The real stores are tested
// elsewhere; here a recording store stands in, for speed, so that a run can
// assert that a rejected request stored nothing.

var fuzzNow = time.Date(2025, 1, 14, 12, 0, 0, 0, time.UTC)

const validOp = `{"session_id":"123e4567-e89b-12d3-a456-426614174000","tool_name":"read","operation_mode":"overview",
"parameters":{"compress":true},"file_path":"src/main.py","tokens_original":5000,"tokens_actual":500,
"tokens_prevented":4500,"response_time_ms":123.45,"tool_id":"claude-code","cache_hit":true}`

// checkOperation asserts the invariants of an accepted operation.
func checkOperation(t *testing.T, op tsdb.Operation) {
	t.Helper()
	switch {
	case !api.ValidToolName(op.ToolName), !api.ValidOperationMode(op.OperationMode):
		t.Fatalf("accepted tool %q mode %q", op.ToolName, op.OperationMode)
	case op.TokensOriginal < 0, op.TokensActual < 0, op.ResponseTimeMs < 0:
		t.Fatalf("accepted negative figures: %+v", op)
	case op.TokensPrevented != op.TokensOriginal-op.TokensActual && op.TokensPrevented != max(0, op.TokensOriginal-op.TokensActual):
		t.Fatalf("accepted inconsistent tokens_prevented: %+v", op)
	case op.ToolID == "" || len([]rune(op.ToolID)) > api.MaxToolIDLength:
		t.Fatalf("accepted tool_id %q", op.ToolID)
	case op.CreatedAt.After(fuzzNow), op.CreatedAt.Year() < 1970:
		t.Fatalf("accepted created_at %v", op.CreatedAt)
	}
	var params map[string]any
	if err := json.Unmarshal(op.Parameters, &params); err != nil || params == nil {
		t.Fatalf("accepted parameters %q that are not a JSON object", op.Parameters)
	}
}

// checkRejection asserts that err is one of the contract's answers: a 422
// with located field errors, or a 400 with a detail.
func checkRejection(t *testing.T, err error) {
	t.Helper()
	var ve *validationError
	var he *httpError
	switch {
	case errors.As(err, &ve):
		if len(ve.errs) == 0 {
			t.Fatal("a 422 without field errors")
		}
		for _, e := range ve.errs {
			if len(e.Loc) == 0 || e.Msg == "" || e.Type == "" {
				t.Fatalf("malformed field error %+v", e)
			}
		}
	case errors.As(err, &he):
		if he.status != http.StatusBadRequest || he.detail == "" {
			t.Fatalf("rejection %d %q", he.status, he.detail)
		}
	default:
		t.Fatalf("rejection of an unknown kind: %v", err)
	}
}

func FuzzDecodeOperation(f *testing.F) {
	for _, seed := range []string{
		validOp, `{}`, `null`, `[]`, ` { "a" : [1, {"b": "}\\\""}] , "a":true,"c":-1.5e3 } `, `{"\u0061":1}`, `{"é":1}`, `{"tokens_original":1e400}`, `{"parameters":` + strings.Repeat("[", 100) + `}`,
		strings.Replace(validOp, `"tokens_prevented":4500`, `"tokens_prevented":-4500`, 1),
		strings.Replace(validOp, `"claude-code"`, `"`+strings.Repeat("é", 101)+`"`, 1),
		strings.Replace(validOp, `5000`, `9223372036854775808`, 1),
		strings.Replace(validOp, `}`, `,"created_at":"2025-01-14T12:04:59Z"}`, 1),
		strings.Replace(validOp, `}`, `,"created_at":"1969-12-31T23:59:59Z"}`, 1),
		strings.Replace(validOp, `"cache_hit":true`, `"cache_hit":false`, 1),
		strings.Replace(validOp, `"cache_hit":true`, `"cache_hit":null`, 1),
		strings.Replace(validOp, `"cache_hit":true`, `"cache_hit":"true"`, 1),
		strings.Replace(validOp, `"cache_hit":true`, `"cache_hit":1`, 1),
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		checkSplitBody(t, data)
		o, err := decodeObject(data)
		if err != nil {
			checkRejection(t, err)
			return
		}
		op, err := decodeOperation(o, fuzzNow, "")
		if err != nil {
			checkRejection(t, err)
			return
		}
		checkOperation(t, op)
	})
}

// checkSplitBody fails when splitBody, given data, answers true for data
// that is not valid JSON or not an object, or other members than
// json.Unmarshal finds.
func checkSplitBody(t *testing.T, data []byte) {
	t.Helper()
	var got members
	if !splitBody(data, &got) {
		return
	}
	var want map[string]json.RawMessage
	if err := json.Unmarshal(data, &want); !json.Valid(data) || err != nil || want == nil || !reflect.DeepEqual(got, contractMembers(want)) {
		t.Fatalf("splitBody(%q) = %q; json.Valid %v, json.Unmarshal %q (%v)", data, got, json.Valid(data), want, err)
	}
}

// contractMembers answers the members of a decoded object that are contract
// fields, as splitAt keeps them.
func contractMembers(m map[string]json.RawMessage) members {
	var out members
	for name, v := range m {
		if f, ok := fieldByName[name]; ok {
			out[f] = v
		}
	}
	return out
}

func FuzzDecodeBatch(f *testing.F) {
	for _, seed := range []string{
		`{"operations":[` + validOp + `]}`, `{"operations":[` + validOp + `,` + validOp + `]}`,
		`{"operations":[]}`, `{"operations":[1,"x",null,{}]}`, `{"operations":{}}`,
		`{"operations":[` + strings.Replace(validOp, `"read"`, `"write"`, 1) + `]}`,
		`{"operations":[` + validOp + `,` + strings.Replace(validOp, `"cache_hit":true`, `"cache_hit":"no"`, 1) + `]}`,
		`{"operations":[` + strings.Replace(validOp, `"cache_hit":true`, `"cache_hit":false`, 1) + `]}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		ops, err := decodeBatch(data, fuzzNow, "")
		if err != nil {
			checkRejection(t, err)
			return
		}
		if len(ops) == 0 || len(ops) > api.MaxBatchOperations {
			t.Fatalf("accepted a batch of %d", len(ops))
		}
		for _, op := range ops {
			checkOperation(t, op)
		}
	})
}

func FuzzOperationFilter(f *testing.F) {
	for _, seed := range []string{
		"", "limit=10&offset=5", "limit=0", "limit=abc", "session_id=123e4567-e89b-12d3-a456-426614174000",
		"start_date=2025-01-14&end_date=2025-01-14T10:00:00+02:00", "start_date=2025-01-14T10:00:00 02:00",
		"tool_name=read&operation_mode=tri_index&tool_id=x", "offset=99999999999999999999", "%zz",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, rawQuery string) {
		q, err := url.ParseQuery(rawQuery)
		if err != nil {
			return // the server answers such a query string with 400 before any handler
		}
		fl, err := parseOperationFilter(q)
		if err != nil {
			checkRejection(t, err)
			return
		}
		if fl.Limit < 1 || fl.Limit > 1000 || fl.Offset < 0 {
			t.Fatalf("accepted paging %d/%d", fl.Limit, fl.Offset)
		}
		if fl.ToolName != "" && !api.ValidToolName(fl.ToolName) || fl.OperationMode != "" && !api.ValidOperationMode(fl.OperationMode) {
			t.Fatalf("accepted filter %+v", fl)
		}
	})
}

// FuzzAggregateQuery: whatever the query string, GET /metrics/aggregate's
// parser answers one of the contract's rejections, or a request within the
// endpoint's bounds.
func FuzzAggregateQuery(f *testing.F) {
	for _, seed := range []string{
		"", "group_by=file_path", "group_by=file_path,day,tool_id&order_by=cost_saved&limit=1000",
		"group_by=hour&group_by=day", "group_by=file_path,file_path", "group_by=a,b,c,d", "group_by=,", "group_by=FILE_PATH",
		"group_by=project_id&order_by=sideways", "group_by=day&limit=0", "group_by=day&limit=1001&offset=-1",
		"group_by=session_id&session_id=123e4567-e89b-12d3-a456-426614174000&start_date=2025-01-14&end_date=2025-01-15T10:00:00+02:00",
		"group_by=tool_name&tool_name=write", "group_by=day&start_date=yesterday", "%zz",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, rawQuery string) {
		q, err := url.ParseQuery(rawQuery)
		if err != nil {
			return // the server answers such a query string with 400 before any handler
		}
		req, err := parseAggregateQuery(q)
		if err != nil {
			checkRejection(t, err)
			return
		}
		if len(req.GroupBy) < 1 || len(req.GroupBy) > api.MaxGroupBy || req.Limit < 1 || req.Limit > api.MaxLimit ||
			!slices.Contains(api.AggregateOrders, req.OrderBy) || req.Filter.Limit != 0 || req.Filter.Offset != 0 {
			t.Fatalf("accepted %+v", req)
		}
		for i, d := range req.GroupBy {
			if !slices.Contains(api.Dimensions, string(d)) || slices.Contains(req.GroupBy[:i], d) {
				t.Fatalf("accepted group_by %v", req.GroupBy)
			}
		}
		if fl := req.Filter; fl.ToolName != "" && !api.ValidToolName(fl.ToolName) || fl.OperationMode != "" && !api.ValidOperationMode(fl.OperationMode) {
			t.Fatalf("accepted filter %+v", fl)
		}
	})
}

// FuzzHandlers sends a fuzzed body and query to every write and read route
// of the real router and checks: never a 500, always a JSON detail on an
// error, and nothing stored unless the answer was 200.
func FuzzHandlers(f *testing.F) {
	f.Add(uint8(0), []byte(validOp), "")
	f.Add(uint8(1), []byte(`{"operations":[`+validOp+`]}`), "")
	f.Add(uint8(2), []byte(nil), "limit=5&tool_name=read")
	f.Add(uint8(3), []byte(`{"tool_id":"x","process_id":1}`), "")
	f.Add(uint8(4), []byte(`{"tool_id":"x","instance_id":"i"}`), "")
	f.Add(uint8(5), []byte(nil), "time_range=7d&tool_id=x")
	f.Add(uint8(8), []byte(nil), "group_by=file_path,day&order_by=count&limit=5")
	routes := []struct{ method, path string }{
		{"POST", "/track/tool-operation"}, {"POST", "/track/tool-operations"}, {"GET", "/metrics/tool-operations"},
		{"POST", "/sessions/start"}, {"POST", "/sessions/get_or_create"}, {"GET", "/metrics/api-savings"},
		{"GET", "/metrics/tool-breakdown"}, {"POST", "/sessions/123e4567-e89b-12d3-a456-426614174000/heartbeat"},
		{"GET", "/metrics/aggregate"},
	}
	store := &recordingStore{}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	reg := prometheus.NewRegistry()
	svc := exporter.New(store, exporter.Options{Pricing: exporter.Pricing{PerThousandUSD: 0.015}, Registerer: reg, Logger: logger})
	f.Cleanup(func() { _ = svc.Close(context.Background()) })
	h := New(svc, Options{Gatherer: reg, Registerer: reg, CORSOrigins: []string{"*"}, Logger: logger})
	f.Fuzz(func(t *testing.T, route uint8, body []byte, rawQuery string) {
		rt := routes[int(route)%len(routes)]
		req := httptest.NewRequest(rt.method, rt.path, bytes.NewReader(body))
		req.URL.RawQuery = rawQuery
		rec := httptest.NewRecorder()
		before := store.count()
		h.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("%s %s: %d %s", rt.method, rt.path, rec.Code, rec.Body)
		}
		if rec.Code != http.StatusOK && store.count() != before {
			t.Fatalf("%s %s answered %d but stored something", rt.method, rt.path, rec.Code)
		}
		var answer map[string]any
		if err := json.Unmarshal(rec.Body.Bytes(), &answer); err != nil {
			t.Fatalf("%s %s: answer is not a JSON object: %q", rt.method, rt.path, rec.Body)
		}
		if rec.Code != http.StatusOK && answer["detail"] == nil {
			t.Fatalf("%s %s: %d without a detail", rt.method, rt.path, rec.Code)
		}
	})
}

// recordingStore is an in-memory Store that counts what was written. It
// answers reads with nothing and sessions as not found, except that sessions
// it was asked to create exist.
type recordingStore struct {
	mu       sync.Mutex
	writes   int
	sessions map[uuid.UUID]tsdb.Session
	spend    []tsdb.SpendPoint
}

func (s *recordingStore) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.writes
}

func (s *recordingStore) WriteOperations(_ context.Context, ops []tsdb.Operation) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.writes += len(ops)
	return nil
}

func (s *recordingStore) SpendBreakdown(context.Context, tsdb.Window) ([]tsdb.SpendTotals, error) {
	return []tsdb.SpendTotals{}, nil
}

func (s *recordingStore) SpendTrend(context.Context, tsdb.Window, tsdb.Step) ([]tsdb.SpendBucket, error) {
	return []tsdb.SpendBucket{}, nil
}

func (s *recordingStore) QueryOperations(context.Context, tsdb.OperationFilter) (tsdb.OperationPage, error) {
	return tsdb.OperationPage{}, nil
}

func (s *recordingStore) Breakdown(context.Context, tsdb.Window) ([]tsdb.ModeTotals, error) {
	return []tsdb.ModeTotals{}, nil
}

func (s *recordingStore) Trend(context.Context, tsdb.Window, tsdb.Step) ([]tsdb.Bucket, error) {
	return []tsdb.Bucket{}, nil
}

func (s *recordingStore) Aggregate(context.Context, tsdb.AggregateQuery) (tsdb.AggregateResult, error) {
	return tsdb.AggregateResult{Groups: []tsdb.AggregateGroup{}}, nil
}

func (s *recordingStore) FirstOperationTime(context.Context, string) (time.Time, bool, error) {
	return time.Time{}, false, nil
}

func (s *recordingStore) CreateSession(_ context.Context, sess tsdb.Session) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sessions == nil {
		s.sessions = map[uuid.UUID]tsdb.Session{}
	}
	s.sessions[sess.SessionID] = sess
	s.writes++
	return nil
}

func (s *recordingStore) FindOpenSession(context.Context, tsdb.SessionMatch) (tsdb.Session, error) {
	return tsdb.Session{}, tsdb.ErrNotFound
}

func (s *recordingStore) TouchSession(_ context.Context, id uuid.UUID, _ time.Time) (tsdb.Session, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sess, ok := s.sessions[id]; ok {
		return sess, nil
	}
	return tsdb.Session{}, tsdb.ErrNotFound
}

func (s *recordingStore) EndSession(context.Context, uuid.UUID, time.Time) (tsdb.SessionStats, error) {
	return tsdb.SessionStats{}, tsdb.ErrNotFound
}

func (s *recordingStore) GetSession(context.Context, uuid.UUID) (tsdb.SessionStats, error) {
	return tsdb.SessionStats{}, tsdb.ErrNotFound
}

func (s *recordingStore) ActiveSessions(context.Context, string, time.Time) ([]tsdb.SessionStats, error) {
	return nil, nil
}

func (s *recordingStore) Ping(context.Context) error { return nil }
func (s *recordingStore) Close() error               { return nil }

// FuzzOTLPMetrics feeds hostile bodies to POST /v1/metrics through the
// real router, as protobuf or JSON, plain or gzip: never a 500, an answer
// in the request's content type (a JSON detail or a google.rpc.Status on an
// error), nothing stored unless the answer was 200, and every point stored
// within the bounds of a spend point.
func FuzzOTLPMetrics(f *testing.F) {
	const claude = `{"resourceMetrics":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"claude-code"}}]},` +
		`"scopeMetrics":[{"metrics":[{"name":"claude_code.token.usage","sum":{"aggregationTemporality":2,"dataPoints":[` +
		`{"attributes":[{"key":"type","value":{"stringValue":"input"}},{"key":"model","value":{"stringValue":"m"}}],` +
		`"startTimeUnixNano":"1736856000000000000","timeUnixNano":"1736856060000000000","asInt":"12"}]}},` +
		`{"name":"gen_ai.client.token.usage","histogram":{"aggregationTemporality":1,"dataPoints":[{"attributes":[` +
		`{"key":"gen_ai.token.type","value":{"stringValue":"output"}}],"timeUnixNano":"1736856060000000000","count":"1","sum":7}]}}]}]}]}`
	f.Add(uint8(1), []byte(claude))
	f.Add(uint8(0), []byte{0x0a, 0x02, 0x0a, 0x00})
	f.Add(uint8(1), []byte(`{"resourceMetrics":5}`))
	f.Add(uint8(3), []byte(claude))
	f.Add(uint8(2), []byte{0x0a, 0x00})
	f.Add(uint8(1), []byte(strings.ReplaceAll(claude, `"12"`, `"-12"`)))
	store := &recordingStore{}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	reg := prometheus.NewRegistry()
	svc := exporter.New(store, exporter.Options{Registerer: reg, Logger: logger, Now: func() time.Time { return fuzzNow }})
	f.Cleanup(func() { _ = svc.Close(context.Background()) })
	h := New(svc, Options{Gatherer: reg, Registerer: reg, CORSOrigins: []string{"*"}, Logger: logger})
	f.Fuzz(func(t *testing.T, kind uint8, body []byte) {
		contentType := []string{contentTypeProtobuf, contentTypeJSON}[kind&1]
		gzipped := kind&2 != 0
		if gzipped { // the fuzzed body, compressed (corrupt streams are the unit tests')
			var buf bytes.Buffer
			zw := gzip.NewWriter(&buf)
			_, _ = zw.Write(body)
			_ = zw.Close()
			body = buf.Bytes()
		}
		req := httptest.NewRequest("POST", api.PathOTLPMetrics, bytes.NewReader(body))
		req.Header.Set("Content-Type", contentType)
		if gzipped {
			req.Header.Set("Content-Encoding", "gzip")
		}
		rec := httptest.NewRecorder()
		before := store.spendCount()
		h.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("%d %s", rec.Code, rec.Body)
		}
		if rec.Code != http.StatusOK && store.spendCount() != before {
			t.Fatalf("answered %d but stored something", rec.Code)
		}
		if got := rec.Header().Get("Content-Type"); got != contentType && (got != contentTypeJSON || rec.Code == http.StatusOK) {
			t.Fatalf("answered %d in %q to %s", rec.Code, got, contentType)
		}
		for _, p := range store.spendPoints() {
			if !tsdb.ValidToolID(p.ToolID) || !tsdb.ValidModel(p.Model) || p.CostUSD < 0 || p.CostUSD != p.CostUSD ||
				p.Tokens.Input < 0 || p.Tokens.Output < 0 || p.Tokens.CacheRead < 0 || p.Tokens.CacheCreation < 0 ||
				p.Time.Year() < 1970 || p.Time.After(fuzzNow) {
				t.Fatalf("stored %+v", p)
			}
		}
	})
}

// WriteSpend keeps spend points, so that the recording store takes OTLP
// metrics too.
func (s *recordingStore) WriteSpend(_ context.Context, points []tsdb.SpendPoint) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.spend = append(s.spend, points...)
	return nil
}

func (s *recordingStore) spendCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.spend)
}

func (s *recordingStore) spendPoints() []tsdb.SpendPoint {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]tsdb.SpendPoint(nil), s.spend...)
}
