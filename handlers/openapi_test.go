package handlers_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/omnimemory/omnimemory-metrics/client/api"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
	"github.com/gorilla/mux"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/omnimemory/omnimemory-metrics/exporter"
	"github.com/omnimemory/omnimemory-metrics/handlers"
	"github.com/omnimemory/omnimemory-metrics/tsdb"
	"github.com/omnimemory/omnimemory-metrics/tsdb/storetest"
)

func init() {
	// The document's text bodies are checked as strings (the JSON ones are
	// decoded and checked against their schemas).
	for _, ct := range []string{"text/html", "text/css", "text/javascript", "image/svg+xml",
		"application/openmetrics-text", "application/x-ndjson", "multipart/byteranges", "application/x-protobuf", "text/event-stream"} {
		openapi3filter.RegisterBodyDecoder(ct, openapi3filter.PlainBodyDecoder)
	}
}

// loadDocument fetches the document the service serves, checks that it is
// the embedded one, loads and validates it, and answers it with a router
// over it.
func loadDocument(t *testing.T, s *service) (*openapi3.T, routers.Router) {
	t.Helper()
	r := s.do("GET", "/openapi.json", nil)
	if r.status != 200 || r.header.Get("Content-Type") != "application/json" {
		t.Fatalf("GET /openapi.json: %d %s", r.status, r.header.Get("Content-Type"))
	}
	if !bytes.Equal(r.body, handlers.OpenAPIDocument) {
		t.Fatal("GET /openapi.json does not answer the embedded document")
	}
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(r.body)
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	if err := doc.Validate(loader.Context); err != nil {
		t.Fatalf("the document is not valid OpenAPI: %v", err)
	}
	if !doc.IsOpenAPI31OrLater() {
		t.Fatalf("openapi %s, want 3.1", doc.OpenAPI)
	}
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		t.Fatalf("router: %v", err)
	}
	return doc, router
}

// bearerAuth stands for the service's token check when requests are checked
// against the document: the scheme is satisfied by any bearer token.
func bearerAuth(_ context.Context, in *openapi3filter.AuthenticationInput) error {
	if in.SecurityScheme.Type == "apiKey" && in.SecurityScheme.In == "query" && in.SecurityScheme.Name == "access_token" {
		if in.RequestValidationInput.Request.URL.Query().Get("access_token") == "" {
			return errors.New("no access_token")
		}
		return nil
	}
	if in.SecurityScheme.Type != "http" || !strings.EqualFold(in.SecurityScheme.Scheme, "bearer") {
		return fmt.Errorf("unexpected security scheme %q", in.SecuritySchemeName)
	}
	scheme, token, ok := strings.Cut(in.RequestValidationInput.Request.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(token) == "" {
		return errors.New("no bearer token")
	}
	return nil
}

// apiCase is one real request and what it must get.
type apiCase struct {
	name    string
	svc     *service
	method  string
	path    string
	body    any // nil, a string, or a value sent as JSON
	headers []string
	status  []int // the status it must get (one of them)
	// invalid: the request breaks the document, and the document says why
	// the service refuses it. Requests the service refuses for a reason the
	// document can only describe in words (an inconsistent tokens_prevented,
	// compare=previous with time_range=all, a body over the limit) are
	// valid for the document.
	invalid bool
	check   func(t *testing.T, r response)
	// stream: the answer does not end by itself; what came within
	// streamCut is checked.
	stream bool
}

// streamCut is how long a stream's answer is read.
const streamCut = 300 * time.Millisecond

// contractChecker sends cases and checks each request and each answer
// against the document.
type contractChecker struct {
	doc    *openapi3.T
	router routers.Router
	// seen records the statuses answered per operation ("GET /path").
	seen map[string]map[int]bool
}

func (c *contractChecker) run(t *testing.T, tc apiCase) {
	t.Helper()
	var data []byte
	switch b := tc.body.(type) {
	case nil:
	case string:
		data = []byte(b)
	default:
		var err error
		if data, err = json.Marshal(b); err != nil {
			t.Fatal(err)
		}
	}
	headers := tc.headers
	if tc.body != nil {
		headers = append([]string{"Content-Type", "application/json"}, headers...)
	}
	var sent any
	if data != nil {
		sent = data
	}
	var r response
	if tc.stream {
		r = tc.svc.doStream(tc.method, tc.path, streamCut, headers...)
	} else {
		r = tc.svc.do(tc.method, tc.path, sent, headers...)
	}
	if !slices.Contains(tc.status, r.status) {
		t.Errorf("%s: %s %s answered %d, want %v: %.300s", tc.name, tc.method, tc.path, r.status, tc.status, r.body)
		return
	}
	if tc.check != nil {
		tc.check(t, r)
	}

	var body io.Reader
	if data != nil {
		body = bytes.NewReader(data)
	}
	req, err := http.NewRequest(tc.method, tc.svc.srv.URL+tc.path, body)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	route, params, err := c.router.FindRoute(req)
	if err != nil {
		c.checkUnrouted(t, tc, r, err)
		return
	}
	key := route.Method + " " + route.Path
	if c.seen[key] == nil {
		c.seen[key] = map[int]bool{}
	}
	c.seen[key][r.status] = true
	in := &openapi3filter.RequestValidationInput{
		Request: req, PathParams: params, Route: route,
		Options: &openapi3filter.Options{AuthenticationFunc: bearerAuth, MultiError: true},
	}
	reqErr := openapi3filter.ValidateRequest(context.Background(), in)
	switch {
	case tc.invalid && reqErr == nil:
		t.Errorf("%s: the document accepts %s %s, which the service refuses with %d", tc.name, tc.method, tc.path, r.status)
	case !tc.invalid && reqErr != nil:
		t.Errorf("%s: the document refuses %s %s: %v", tc.name, tc.method, tc.path, reqErr)
	}
	out := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in, Status: r.status, Header: r.header,
		Options: &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true},
	}
	out.SetBodyBytes(r.body)
	if err := openapi3filter.ValidateResponse(context.Background(), out); err != nil {
		t.Errorf("%s: the answer of %s %s (%d) breaks the document: %v\n%.500s", tc.name, tc.method, tc.path, r.status, err, r.body)
	}
}

// checkUnrouted checks an answer to a request the document has no
// operation for: a 404 for an unknown path, a 405 for another method, each
// with the document's shared answer.
func (c *contractChecker) checkUnrouted(t *testing.T, tc apiCase, r response, routeErr error) {
	t.Helper()
	var name string
	switch {
	case r.status == 404 && errors.Is(routeErr, routers.ErrPathNotFound):
		name = "NotFound"
	case r.status == 405 && errors.Is(routeErr, routers.ErrMethodNotAllowed):
		name = "MethodNotAllowed"
	default:
		t.Errorf("%s: %s %s answered %d but the document says %v", tc.name, tc.method, tc.path, r.status, routeErr)
		return
	}
	ref := c.doc.Components.Responses[name]
	if ref == nil || ref.Value == nil {
		t.Fatalf("the document has no %s response", name)
	}
	mt := ref.Value.Content.Get(r.header.Get("Content-Type"))
	if mt == nil {
		t.Errorf("%s: %s answered %s, not a type of the %s response", tc.name, tc.path, r.header.Get("Content-Type"), name)
		return
	}
	var v any
	if err := json.Unmarshal(r.body, &v); err != nil {
		t.Errorf("%s: %v", tc.name, err)
		return
	}
	if err := mt.Schema.Value.VisitJSON(v, openapi3.EnableJSONSchema2020()); err != nil {
		t.Errorf("%s: the %d answer breaks the %s response: %v", tc.name, r.status, name, err)
	}
}

// TestOpenAPIDocumentDescribesEveryRoute sends requests of every kind to
// every route of a service on SQLite (successes and every error the service
// can be made to answer) and checks each request and each answer against
// the document it serves at /openapi.json.
func TestOpenAPIDocumentDescribesEveryRoute(t *testing.T) {
	const token = "s3cret-token"
	s := newService(t, serviceOpts{})
	guarded := newService(t, serviceOpts{token: token})
	closing := newService(t, serviceOpts{}) // its writer is closed: POSTs answer 503
	if err := closing.svc.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	gone := newService(t, serviceOpts{}) // its store is closed: 503 (or 500)
	if err := gone.store.Close(); err != nil {
		t.Fatal(err)
	}
	spender := newService(t, serviceOpts{spend: &storetest.SpendMemory{}})                            // keeps spend points
	spendDown := newService(t, serviceOpts{spend: &storetest.SpendMemory{Fail: tsdb.ErrUnavailable}}) // its spend writes fail: 503
	doc, router := loadDocument(t, s)
	c := &contractChecker{doc: doc, router: router, seen: map[string]map[int]bool{}}

	for _, o := range sampleOperations() {
		s.mustDo("POST", "/track/tool-operation", o, 200)
	}
	ended := s.mustDo("POST", "/sessions/start", map[string]any{"tool_id": "cursor"}, 200)["session_id"].(string)
	s.mustDo("POST", "/sessions/"+ended+"/end", nil, 200)
	const unknown = "9b2d6a0e-4a4f-4d7e-9a39-2f0c3a8c9d11"
	bearer := []string{"Authorization", "Bearer " + token}
	big := op(map[string]any{"parameters": map[string]any{"blob": strings.Repeat("x", api.MaxBodyBytes)}})
	hugeBatch := map[string]any{"operations": []any{op(map[string]any{"parameters": map[string]any{"blob": strings.Repeat("x", api.MaxBatchBodyBytes)}})}}
	ok, badRequest, unauthorized, notFound, tooLarge, invalid, unavailable := []int{200}, []int{400}, []int{401}, []int{404}, []int{413}, []int{422}, []int{503}
	storeFault := []int{500, 503}
	since := url.QueryEscape(time.Now().Add(-time.Hour).UTC().Format("2006-01-02T15:04:05+00:00"))
	detailIs := func(want string) func(*testing.T, response) {
		return func(t *testing.T, r response) {
			t.Helper()
			if d := r.json(t)["detail"]; d != want {
				t.Errorf("detail %q, want %q", d, want)
			}
		}
	}
	hasHeader := func(name, want string) func(*testing.T, response) {
		return func(t *testing.T, r response) {
			t.Helper()
			if got := r.header.Get(name); got != want {
				t.Errorf("%s: %q, want %q", name, got, want)
			}
		}
	}

	startsWith := func(prefix string) func(*testing.T, response) {
		return func(t *testing.T, r response) {
			t.Helper()
			if !strings.HasPrefix(string(r.body), prefix) {
				t.Errorf("answer %.200q does not begin with %q", r.body, prefix)
			}
		}
	}
	contains := func(part string) func(*testing.T, response) {
		return func(t *testing.T, r response) {
			t.Helper()
			if !strings.Contains(string(r.body), part) {
				t.Errorf("answer %.300q does not hold %q", r.body, part)
			}
		}
	}
	switching := []int{http.StatusSwitchingProtocols}
	wsHandshake := []string{"Connection", "Upgrade", "Upgrade", "websocket", "Sec-WebSocket-Version", "13", "Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="}

	otlpBody := marshal(t, claudeRequest(1200, 0.25))
	protobuf := []string{"Content-Type", protobufType}
	cases := []apiCase{
		// POST /track/tool-operation
		{name: "track", svc: s, method: "POST", path: "/track/tool-operation", body: op(nil), status: ok},
		{name: "track minimal", svc: s, method: "POST", path: "/track/tool-operation", status: ok,
			body: op(map[string]any{"parameters": nil, "file_path": nil, "tokens_prevented": nil, "created_at": time.Now().UTC().Format(time.RFC3339Nano)})},
		{name: "track with nulls", svc: s, method: "POST", path: "/track/tool-operation", status: ok,
			body: `{"session_id":"` + sessionA + `","tool_name":"search","operation_mode":"semantic","parameters":null,"file_path":null,"tokens_original":10,"tokens_actual":20,"tokens_prevented":-10,"response_time_ms":3,"tool_id":"x","created_at":null,"operation_id":null,"timestamp":"2025-01-14T10:00:00"}`},
		{name: "track keyed", svc: s, method: "POST", path: "/track/tool-operation", body: op(nil), headers: []string{"Idempotency-Key", "key-1"}, status: ok},
		{name: "track replayed", svc: s, method: "POST", path: "/track/tool-operation", body: op(nil), headers: []string{"Idempotency-Key", "key-1"}, status: ok,
			check: hasHeader("Idempotent-Replayed", "true")},
		{name: "track bad session", svc: s, method: "POST", path: "/track/tool-operation", body: op(map[string]any{"session_id": "not-a-uuid"}), status: badRequest, invalid: true,
			check: detailIs("Invalid session_id format: must be a valid UUID")},
		{name: "track bad fields", svc: s, method: "POST", path: "/track/tool-operation", status: invalid, invalid: true,
			body: op(map[string]any{"tool_name": "write", "operation_mode": "deep", "tokens_original": "5", "response_time_ms": -1, "tool_id": ""})},
		{name: "track missing fields", svc: s, method: "POST", path: "/track/tool-operation", body: map[string]any{"tool_name": "read"}, status: invalid, invalid: true},
		{name: "track inconsistent prevented", svc: s, method: "POST", path: "/track/tool-operation", body: op(map[string]any{"tokens_prevented": 4000}), status: invalid},
		{name: "track future", svc: s, method: "POST", path: "/track/tool-operation", body: op(map[string]any{"created_at": time.Now().Add(time.Hour).Format(time.RFC3339)}), status: invalid},
		{name: "track not json", svc: s, method: "POST", path: "/track/tool-operation", body: "{tool_name: read", status: invalid, invalid: true},
		{name: "track null", svc: s, method: "POST", path: "/track/tool-operation", body: "null", status: invalid, invalid: true},
		{name: "track bad key", svc: s, method: "POST", path: "/track/tool-operation", body: op(nil), headers: []string{"Idempotency-Key", "a key"}, status: invalid, invalid: true},
		{name: "track too large", svc: s, method: "POST", path: "/track/tool-operation", body: big, status: tooLarge},
		{name: "track without token", svc: guarded, method: "POST", path: "/track/tool-operation", body: op(nil), status: unauthorized,
			check: hasHeader("WWW-Authenticate", `Bearer realm="omnimemory-metrics"`)},
		{name: "track wrong token", svc: guarded, method: "POST", path: "/track/tool-operation", body: op(nil), headers: []string{"Authorization", "Bearer nope"}, status: unauthorized},
		{name: "track with token", svc: guarded, method: "POST", path: "/track/tool-operation", body: op(nil), headers: bearer, status: ok},
		{name: "track shutting down", svc: closing, method: "POST", path: "/track/tool-operation", body: op(nil), status: unavailable},

		// POST /track/tool-operations
		{name: "batch", svc: s, method: "POST", path: "/track/tool-operations", body: map[string]any{"operations": sampleOperations()}, status: ok},
		{name: "batch keyed", svc: s, method: "POST", path: "/track/tool-operations", body: map[string]any{"operations": []any{op(nil), op(nil)}}, headers: []string{"Idempotency-Key", "batch-1"}, status: ok},
		{name: "batch replayed", svc: s, method: "POST", path: "/track/tool-operations", body: map[string]any{"operations": []any{op(nil), op(nil)}}, headers: []string{"Idempotency-Key", "batch-1"}, status: ok,
			check: hasHeader("Idempotent-Replayed", "true")},
		{name: "batch bad items", svc: s, method: "POST", path: "/track/tool-operations", status: invalid, invalid: true,
			body: map[string]any{"operations": []any{op(nil), op(map[string]any{"tool_name": "write"}), op(map[string]any{"session_id": "nope"}), "x"}}},
		{name: "batch empty", svc: s, method: "POST", path: "/track/tool-operations", body: map[string]any{"operations": []any{}}, status: invalid, invalid: true},
		{name: "batch missing", svc: s, method: "POST", path: "/track/tool-operations", body: map[string]any{}, status: invalid, invalid: true},
		{name: "batch too large", svc: s, method: "POST", path: "/track/tool-operations", body: hugeBatch, status: tooLarge},
		{name: "batch without token", svc: guarded, method: "POST", path: "/track/tool-operations", body: map[string]any{"operations": []any{op(nil)}}, status: unauthorized},
		{name: "batch shutting down", svc: closing, method: "POST", path: "/track/tool-operations", body: map[string]any{"operations": []any{op(nil)}}, status: unavailable},

		// POST /v1/metrics
		{name: "otlp protobuf", svc: spender, method: "POST", path: "/v1/metrics", body: string(otlpBody), headers: protobuf, status: ok},
		{name: "otlp gzip", svc: spender, method: "POST", path: "/v1/metrics", body: string(gzipped(t, otlpBody)), headers: append(protobuf, "Content-Encoding", "gzip"), status: ok},
		{name: "otlp json with a rejected point", svc: spender, method: "POST", path: "/v1/metrics", body: otlpJSONBody(), status: ok},
		{name: "otlp bad protobuf", svc: spender, method: "POST", path: "/v1/metrics", body: "\xff\xff", headers: protobuf, status: badRequest},
		{name: "otlp bad json", svc: spender, method: "POST", path: "/v1/metrics", body: `{"resourceMetrics":5}`, status: badRequest, invalid: true},
		{name: "otlp gzip bomb", svc: spender, method: "POST", path: "/v1/metrics", body: string(gzipped(t, make([]byte, api.MaxOTLPBodyBytes+1))),
			headers: append(protobuf, "Content-Encoding", "gzip"), status: tooLarge},
		{name: "otlp too large", svc: spender, method: "POST", path: "/v1/metrics", body: strings.Repeat("x", api.MaxOTLPBodyBytes+1), headers: protobuf, status: tooLarge},
		{name: "otlp text", svc: spender, method: "POST", path: "/v1/metrics", body: "x", headers: []string{"Content-Type", "text/plain"}, status: []int{415}, invalid: true},
		{name: "otlp without token", svc: guarded, method: "POST", path: "/v1/metrics", body: string(otlpBody), headers: protobuf, status: unauthorized},
		{name: "otlp store down", svc: spendDown, method: "POST", path: "/v1/metrics", body: string(otlpBody), headers: protobuf, status: unavailable},

		// GET /metrics/tool-operations
		{name: "query", svc: s, method: "GET", path: "/metrics/tool-operations", status: ok},
		{name: "query filtered", svc: s, method: "GET", status: ok,
			path: "/metrics/tool-operations?session_id=" + strings.ToUpper(sessionA) + "&tool_name=read&operation_mode=overview&tool_id=claude-code&start_date=2025-01-14&end_date=2099-01-01T00:00:00Z&limit=2&offset=1"},
		{name: "query offset date", svc: s, method: "GET", path: "/metrics/tool-operations?start_date=" + since + "&end_date=2099-01-01T10:30", status: ok},
		{name: "query bad limit", svc: s, method: "GET", path: "/metrics/tool-operations?limit=0", status: invalid, invalid: true},
		{name: "query limit not a number", svc: s, method: "GET", path: "/metrics/tool-operations?limit=abc&offset=-1", status: invalid, invalid: true},
		{name: "query bad session", svc: s, method: "GET", path: "/metrics/tool-operations?session_id=nope", status: badRequest, invalid: true},
		{name: "query bad tool", svc: s, method: "GET", path: "/metrics/tool-operations?tool_name=write", status: badRequest, invalid: true},
		{name: "query bad date", svc: s, method: "GET", path: "/metrics/tool-operations?start_date=yesterday", status: badRequest, invalid: true},
		{name: "query impossible date", svc: s, method: "GET", path: "/metrics/tool-operations?end_date=2025-13-01", status: badRequest},
		{name: "query with a huge body", svc: s, method: "GET", path: "/metrics/tool-operations", body: strings.Repeat("x", api.MaxBodyBytes+1), status: tooLarge},
		{name: "query without token", svc: guarded, method: "GET", path: "/metrics/tool-operations", status: unauthorized},
		{name: "query store gone", svc: gone, method: "GET", path: "/metrics/tool-operations", status: storeFault},

		// GET /metrics/tool-operations/export
		{name: "export csv", svc: s, method: "GET", path: "/metrics/tool-operations/export?format=csv&tool_name=read", status: ok, check: checkCSVExport},
		{name: "export default", svc: s, method: "GET", path: "/metrics/tool-operations/export", status: ok, check: checkCSVExport},
		{name: "export ndjson", svc: s, method: "GET", path: "/metrics/tool-operations/export?format=ndjson&session_id=" + sessionA + "&start_date=2025-01-14", status: ok,
			check: func(t *testing.T, r response) { checkNDJSONExport(t, doc, r) }},
		{name: "export bad format", svc: s, method: "GET", path: "/metrics/tool-operations/export?format=xml", status: badRequest, invalid: true,
			check: detailIs("Invalid format: must be one of csv, ndjson")},
		{name: "export bad filter", svc: s, method: "GET", path: "/metrics/tool-operations/export?format=ndjson&operation_mode=deep", status: badRequest, invalid: true},
		{name: "export without token", svc: guarded, method: "GET", path: "/metrics/tool-operations/export?format=csv", status: unauthorized},
		{name: "export store gone", svc: gone, method: "GET", path: "/metrics/tool-operations/export?format=csv", status: storeFault},

		// GET /metrics/tool-breakdown
		{name: "breakdown", svc: s, method: "GET", path: "/metrics/tool-breakdown", status: ok},
		{name: "breakdown 7d of a tool", svc: s, method: "GET", path: "/metrics/tool-breakdown?time_range=7d&tool_id=claude-code", status: ok},
		{name: "breakdown all", svc: s, method: "GET", path: "/metrics/tool-breakdown?time_range=all", status: badRequest, invalid: true},
		{name: "breakdown without token", svc: guarded, method: "GET", path: "/metrics/tool-breakdown", status: unauthorized},
		{name: "breakdown store gone", svc: gone, method: "GET", path: "/metrics/tool-breakdown", status: storeFault},

		// GET /metrics/spend
		{name: "spend", svc: s, method: "GET", path: "/metrics/spend", status: ok},
		{name: "spend all of a tool", svc: s, method: "GET", path: "/metrics/spend?time_range=all&tool_id=claude-code", status: ok},
		{name: "spend bad range", svc: s, method: "GET", path: "/metrics/spend?time_range=1w", status: badRequest, invalid: true},
		{name: "spend without token", svc: guarded, method: "GET", path: "/metrics/spend", status: unauthorized},
		{name: "spend store gone", svc: gone, method: "GET", path: "/metrics/spend", status: storeFault},

		// GET /metrics/aggregate
		{name: "aggregate by file", svc: s, method: "GET", path: "/metrics/aggregate?group_by=file_path", status: ok},
		{name: "aggregate by project, day and mode of a tool", svc: s, method: "GET",
			path: "/metrics/aggregate?group_by=project_id,day,operation_mode&order_by=cost_saved&limit=5&tool_name=read&start_date=2025-01-14", status: ok},
		{name: "aggregate by hour of a session", svc: s, method: "GET", path: "/metrics/aggregate?group_by=hour&order_by=avg_response_time_ms&session_id=" + sessionA, status: ok},
		{name: "aggregate without group_by", svc: s, method: "GET", path: "/metrics/aggregate", status: invalid, invalid: true},
		{name: "aggregate unknown dimension", svc: s, method: "GET", path: "/metrics/aggregate?group_by=model", status: badRequest, invalid: true,
			check: detailIs(`Invalid group_by: "model" is not one of file_path, tool_id, session_id, project_id, tool_name, operation_mode, hour, day`)},
		{name: "aggregate four dimensions", svc: s, method: "GET", path: "/metrics/aggregate?group_by=hour,day,tool_id,file_path", status: badRequest, invalid: true},
		{name: "aggregate a dimension twice", svc: s, method: "GET", path: "/metrics/aggregate?group_by=day,day", status: badRequest,
			check: detailIs("Invalid group_by: day is named twice")},
		{name: "aggregate bad order", svc: s, method: "GET", path: "/metrics/aggregate?group_by=day&order_by=id", status: badRequest, invalid: true},
		{name: "aggregate limit too large", svc: s, method: "GET", path: "/metrics/aggregate?group_by=day&limit=1001", status: invalid, invalid: true},
		{name: "aggregate bad date", svc: s, method: "GET", path: "/metrics/aggregate?group_by=day&end_date=soon", status: badRequest, invalid: true},
		{name: "aggregate without token", svc: guarded, method: "GET", path: "/metrics/aggregate?group_by=day", status: unauthorized},
		{name: "aggregate store gone", svc: gone, method: "GET", path: "/metrics/aggregate?group_by=day", status: storeFault},

		// GET /metrics/api-savings
		{name: "savings", svc: s, method: "GET", path: "/metrics/api-savings", status: ok},
		{name: "savings all", svc: s, method: "GET", path: "/metrics/api-savings?time_range=all", status: ok},
		{name: "savings compared", svc: s, method: "GET", path: "/metrics/api-savings?time_range=24h&compare=previous", status: ok},
		{name: "savings compared of a tool", svc: s, method: "GET", path: "/metrics/api-savings?time_range=7d&compare=previous&tool_id=claude-code", status: ok},
		{name: "savings compared empty", svc: guarded, method: "GET", path: "/metrics/api-savings?time_range=1h&compare=previous", headers: bearer, status: ok},
		{name: "savings compare all", svc: s, method: "GET", path: "/metrics/api-savings?time_range=all&compare=previous", status: badRequest,
			check: detailIs("compare=previous needs a bounded time_range: one of 1h, 24h, 7d, 30d")},
		{name: "savings bad compare", svc: s, method: "GET", path: "/metrics/api-savings?compare=next", status: badRequest, invalid: true,
			check: detailIs("Invalid compare: must be previous")},
		{name: "savings bad range", svc: s, method: "GET", path: "/metrics/api-savings?time_range=1w", status: badRequest, invalid: true},
		{name: "savings without token", svc: guarded, method: "GET", path: "/metrics/api-savings", status: unauthorized},
		{name: "savings store gone", svc: gone, method: "GET", path: "/metrics/api-savings?compare=previous", status: storeFault},

		// GET /stream/operations
		{name: "stream", svc: s, method: "GET", path: "/stream/operations", status: ok, stream: true, check: startsWith("retry: 3000\n")},
		{name: "stream filtered and resumed", svc: s, method: "GET", status: ok, stream: true, headers: []string{"Last-Event-ID", unknown},
			path:  "/stream/operations?session_id=" + strings.ToUpper(sessionA) + "&tool_name=read&operation_mode=overview&tool_id=claude-code",
			check: contains("event: reset\ndata: {\"reason\":\"last_event_id_unknown\"")},
		{name: "stream resumed by parameter", svc: s, method: "GET", path: "/stream/operations?last_event_id=" + unknown, status: ok, stream: true,
			check: contains("event: reset\n")},
		{name: "stream bad filter", svc: s, method: "GET", path: "/stream/operations?tool_name=write", status: badRequest, invalid: true},
		{name: "stream bad Last-Event-ID", svc: s, method: "GET", path: "/stream/operations", headers: []string{"Last-Event-ID", "7"}, status: badRequest, invalid: true},
		{name: "stream window", svc: s, method: "GET", path: "/stream/operations?start_date=2025-01-14", status: badRequest},
		{name: "stream without token", svc: guarded, method: "GET", path: "/stream/operations", status: unauthorized},
		{name: "stream with access_token", svc: guarded, method: "GET", path: "/stream/operations?access_token=" + token, status: ok, stream: true},
		{name: "stream with token", svc: guarded, method: "GET", path: "/stream/operations", headers: bearer, status: ok, stream: true},
		{name: "stream shutting down", svc: closing, method: "GET", path: "/stream/operations", status: unavailable},

		// GET /ws/operations
		{name: "websocket", svc: s, method: "GET", path: "/ws/operations", headers: wsHandshake, status: switching, stream: true},
		{name: "websocket filtered and resumed", svc: s, method: "GET", headers: wsHandshake, status: switching, stream: true,
			path: "/ws/operations?tool_name=search&tool_id=cursor&last_event_id=" + unknown, check: contains(`{"event":"reset","data":{"reason":"last_event_id_unknown"`)},
		{name: "websocket not upgraded", svc: s, method: "GET", path: "/ws/operations", status: []int{426}, invalid: true, check: hasHeader("Upgrade", "websocket")},
		{name: "websocket bad filter", svc: s, method: "GET", path: "/ws/operations?operation_mode=deep", headers: wsHandshake, status: badRequest, invalid: true},
		{name: "websocket without token", svc: guarded, method: "GET", path: "/ws/operations", headers: wsHandshake, status: unauthorized},
		{name: "websocket with access_token", svc: guarded, method: "GET", path: "/ws/operations?access_token=" + token, headers: wsHandshake, status: switching, stream: true},
		{name: "websocket shutting down", svc: closing, method: "GET", path: "/ws/operations", headers: wsHandshake, status: unavailable},

		// Sessions
		{name: "start", svc: s, method: "POST", path: "/sessions/start", status: ok,
			body: map[string]any{"tool_id": "claude-code", "tool_version": "1.2", "process_id": 42, "project_id": "p", "workspace_path": "/w", "instance_id": "ignored"}},
		{name: "start minimal", svc: s, method: "POST", path: "/sessions/start", body: map[string]any{"tool_id": "claude-code"}, status: ok},
		{name: "start without tool", svc: s, method: "POST", path: "/sessions/start", body: map[string]any{"tool_version": "1"}, status: invalid, invalid: true},
		{name: "start bad fields", svc: s, method: "POST", path: "/sessions/start", body: map[string]any{"tool_id": "", "process_id": "12"}, status: invalid, invalid: true},
		{name: "start too large", svc: s, method: "POST", path: "/sessions/start", body: big, status: tooLarge},
		{name: "start without token", svc: guarded, method: "POST", path: "/sessions/start", body: map[string]any{"tool_id": "x"}, status: unauthorized},
		{name: "start store gone", svc: gone, method: "POST", path: "/sessions/start", body: map[string]any{"tool_id": "x"}, status: storeFault},
		{name: "get_or_create created", svc: s, method: "POST", path: "/sessions/get_or_create", body: map[string]any{"tool_id": "cursor", "instance_id": "i-1"}, status: ok},
		{name: "get_or_create existing", svc: s, method: "POST", path: "/sessions/get_or_create", body: map[string]any{"tool_id": "cursor", "instance_id": "i-1"}, status: ok},
		{name: "get_or_create invalid", svc: s, method: "POST", path: "/sessions/get_or_create", body: "[]", status: invalid, invalid: true},
		{name: "get_or_create without token", svc: guarded, method: "POST", path: "/sessions/get_or_create", body: map[string]any{"tool_id": "x"}, status: unauthorized},
		{name: "active", svc: s, method: "GET", path: "/sessions/active", status: ok},
		{name: "active of a tool", svc: s, method: "GET", path: "/sessions/active?tool_id=claude-code", status: ok},
		{name: "active without token", svc: guarded, method: "GET", path: "/sessions/active", status: unauthorized},
		{name: "active store gone", svc: gone, method: "GET", path: "/sessions/active", status: storeFault},
		{name: "heartbeat", svc: s, method: "POST", path: "/sessions/" + sessionA + "/heartbeat", status: ok},
		{name: "heartbeat ended", svc: s, method: "POST", path: "/sessions/" + ended + "/heartbeat", status: ok},
		{name: "heartbeat unknown", svc: s, method: "POST", path: "/sessions/" + unknown + "/heartbeat", status: notFound,
			check: detailIs("Session " + unknown + " not found")},
		{name: "heartbeat malformed", svc: s, method: "POST", path: "/sessions/nope/heartbeat", status: badRequest, invalid: true},
		{name: "heartbeat without token", svc: guarded, method: "POST", path: "/sessions/" + sessionA + "/heartbeat", status: unauthorized},
		{name: "get", svc: s, method: "GET", path: "/sessions/" + strings.ToUpper(sessionA), status: ok},
		{name: "get ended", svc: s, method: "GET", path: "/sessions/" + ended, status: ok},
		{name: "get unknown", svc: s, method: "GET", path: "/sessions/" + unknown, status: notFound},
		{name: "get malformed", svc: s, method: "GET", path: "/sessions/123", status: badRequest, invalid: true},
		{name: "get without token", svc: guarded, method: "GET", path: "/sessions/" + sessionA, status: unauthorized},
		{name: "get store gone", svc: gone, method: "GET", path: "/sessions/" + sessionA, status: storeFault},
		{name: "end", svc: s, method: "POST", path: "/sessions/" + sessionA + "/end", status: ok},
		{name: "end again", svc: s, method: "POST", path: "/sessions/" + sessionA + "/end", status: ok},
		{name: "end unknown", svc: s, method: "POST", path: "/sessions/" + unknown + "/end", status: notFound},
		{name: "end malformed", svc: s, method: "POST", path: "/sessions/x/end", status: badRequest, invalid: true},
		{name: "end without token", svc: guarded, method: "POST", path: "/sessions/" + sessionA + "/end", status: unauthorized},

		// Operational
		{name: "health", svc: s, method: "GET", path: "/health", status: ok},
		{name: "health public", svc: guarded, method: "GET", path: "/health", status: ok},
		{name: "ready", svc: s, method: "GET", path: "/ready", status: ok},
		{name: "ready public", svc: guarded, method: "GET", path: "/ready", status: ok},
		{name: "ready store gone", svc: gone, method: "GET", path: "/ready", status: unavailable},
		{name: "metrics", svc: s, method: "GET", path: "/metrics", status: ok},
		{name: "metrics openmetrics", svc: s, method: "GET", path: "/metrics", headers: []string{"Accept", "application/openmetrics-text; version=1.0.0"}, status: ok,
			check: func(t *testing.T, r response) {
				if !strings.HasPrefix(r.header.Get("Content-Type"), "application/openmetrics-text") {
					t.Errorf("OpenMetrics asked, %s answered", r.header.Get("Content-Type"))
				}
			}},
		{name: "metrics protobuf", svc: s, method: "GET", path: "/metrics", headers: []string{"Accept", "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited"}, status: ok},
		{name: "metrics without token", svc: guarded, method: "GET", path: "/metrics", status: unauthorized},
		{name: "metrics with token", svc: guarded, method: "GET", path: "/metrics", headers: bearer, status: ok},
		{name: "openapi", svc: s, method: "GET", path: "/openapi.json", status: ok},
		{name: "openapi public", svc: guarded, method: "GET", path: "/openapi.json", status: ok},
		{name: "openapi with a huge body", svc: s, method: "GET", path: "/openapi.json", body: strings.Repeat("x", api.MaxBodyBytes+1), status: tooLarge},

		// The page
		{name: "page", svc: s, method: "GET", path: "/", status: ok},
		{name: "page public", svc: guarded, method: "GET", path: "/", status: ok},
		{name: "page range", svc: s, method: "GET", path: "/", headers: []string{"Range", "bytes=0-9"}, status: []int{206}},
		{name: "page bad range", svc: s, method: "GET", path: "/", headers: []string{"Range", "bytes=99999999-"}, status: []int{416}},
		{name: "script", svc: s, method: "GET", path: "/ui/app.js", status: ok},
		{name: "style", svc: guarded, method: "GET", path: "/ui/style.css", status: ok},
		{name: "icon", svc: s, method: "GET", path: "/ui/favicon.svg", status: ok},
		{name: "unknown asset", svc: s, method: "GET", path: "/ui/nope.js", status: notFound},

		// No route
		{name: "unknown path", svc: s, method: "GET", path: "/nowhere", status: notFound},
		{name: "wrong method", svc: s, method: "DELETE", path: "/health", status: []int{405}},
		{name: "wrong method on a session", svc: s, method: "PUT", path: "/sessions/" + sessionA, status: []int{405}},
	}
	for _, tc := range cases {
		c.run(t, tc)
	}
	// A 304 of the page: revalidation with the ETag it answered.
	if etag := s.do("GET", "/", nil).header.Get("ETag"); etag != "" {
		c.run(t, apiCase{name: "page unchanged", svc: s, method: "GET", path: "/", headers: []string{"If-None-Match", etag}, status: []int{304}})
	}

	// Every operation of the document was exercised, with a success.
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			key := method + " " + path
			statuses := c.seen[key]
			if !statuses[200] && !statuses[http.StatusSwitchingProtocols] {
				t.Errorf("%s: no successful request checked", key)
			}
			var untried []string
			for code := range item.GetOperation(method).Responses.Map() {
				var n int
				if _, err := fmt.Sscan(code, &n); err == nil && !statuses[n] {
					untried = append(untried, code)
				}
			}
			sort.Strings(untried)
			if len(untried) > 0 {
				t.Logf("%s: documented answers not provoked here: %v", key, untried)
			}
		}
	}
}

// exportColumns are the CSV export's header, as the document describes it.
var exportColumns = "id,session_id,tool_name,operation_mode,parameters,file_path,tokens_original,tokens_actual,tokens_prevented,response_time_ms,tool_id,created_at,cache_hit"

func checkCSVExport(t *testing.T, r response) {
	t.Helper()
	if ct := r.header.Get("Content-Type"); ct != "text/csv; charset=utf-8" {
		t.Errorf("CSV export answered %s", ct)
	}
	if !strings.HasPrefix(r.header.Get("Content-Disposition"), "attachment") {
		t.Errorf("CSV export: Content-Disposition %q", r.header.Get("Content-Disposition"))
	}
	header, _, _ := strings.Cut(string(r.body), "\n")
	if strings.TrimRight(header, "\r") != exportColumns {
		t.Errorf("CSV header %q, want %q", header, exportColumns)
	}
	if n := strings.Count(string(r.body), "\n"); n < 2 {
		t.Errorf("CSV export has %d lines, want a header and operations", n)
	}
}

// checkNDJSONExport checks every line of an NDJSON export against the
// document's ExportedOperation.
func checkNDJSONExport(t *testing.T, doc *openapi3.T, r response) {
	t.Helper()
	if ct := r.header.Get("Content-Type"); ct != "application/x-ndjson" {
		t.Errorf("NDJSON export answered %s", ct)
	}
	if !strings.HasPrefix(r.header.Get("Content-Disposition"), "attachment") {
		t.Errorf("NDJSON export: Content-Disposition %q", r.header.Get("Content-Disposition"))
	}
	schema := doc.Components.Schemas["ExportedOperation"].Value
	sc := bufio.NewScanner(bytes.NewReader(r.body))
	sc.Buffer(nil, api.MaxBatchBodyBytes)
	lines := 0
	var last time.Time
	for sc.Scan() {
		lines++
		var v any
		if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
			t.Fatalf("NDJSON line %d: %v", lines, err)
		}
		if err := schema.VisitJSON(v, openapi3.EnableJSONSchema2020(), openapi3.VisitAsResponse()); err != nil {
			t.Errorf("NDJSON line %d breaks ExportedOperation: %v", lines, err)
		}
		created, _ := time.Parse(time.RFC3339Nano, v.(map[string]any)["created_at"].(string))
		if created.Before(last) {
			t.Errorf("NDJSON line %d is older than the one before", lines)
		}
		last = created
	}
	if lines == 0 {
		t.Error("NDJSON export is empty")
	}
}

// TestOpenAPIDocumentNamesExactlyTheRoutes walks the router New builds: every
// route it serves is an operation of the document, and every operation of
// the document a route it serves.
func TestOpenAPIDocumentNamesExactlyTheRoutes(t *testing.T) {
	reg := prometheus.NewRegistry()
	served := map[string]bool{}
	err := handlers.Router(nil, handlers.Options{Gatherer: reg, Registerer: reg}).Walk(func(route *mux.Route, _ *mux.Router, _ []*mux.Route) error {
		path, err := route.GetPathTemplate()
		if err != nil {
			return err
		}
		if re, err := route.GetPathRegexp(); err != nil || !strings.HasSuffix(re, "$") {
			return fmt.Errorf("route %s: a path prefix cannot be described exactly", path)
		}
		methods, err := route.GetMethods()
		if err != nil {
			return fmt.Errorf("route %s: %w (every route is for given methods)", path, err)
		}
		for _, m := range methods {
			served[m+" "+path] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(handlers.OpenAPIDocument)
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			documented[method+" "+path] = true
		}
	}
	for k := range served {
		if !documented[k] {
			t.Errorf("%s is served but not in the document", k)
		}
	}
	for k := range documented {
		if !served[k] {
			t.Errorf("%s is in the document but not served", k)
		}
	}
}

// TestOpenAPIDocumentEnumsAndBoundsMatchTheCode checks the values the
// document lists against the code's own lists.
func TestOpenAPIDocumentEnumsAndBoundsMatchTheCode(t *testing.T) {
	doc, err := openapi3.NewLoader().LoadFromData(handlers.OpenAPIDocument)
	if err != nil {
		t.Fatal(err)
	}
	enum := func(s *openapi3.Schema) []string {
		out := make([]string, len(s.Enum))
		for i, v := range s.Enum {
			out[i] = fmt.Sprint(v)
		}
		return out
	}
	names := func(ranges []exporter.TimeRange) []string {
		out := make([]string, len(ranges))
		for i, r := range ranges {
			out[i] = string(r.Name)
		}
		return out
	}
	param := func(name string) *openapi3.Schema { return doc.Components.Parameters[name].Value.Schema.Value }
	prop := func(schema, name string) *openapi3.Schema {
		return doc.Components.Schemas[schema].Value.Properties[name].Value
	}
	for _, c := range []struct {
		what      string
		got, want []string
	}{
		{"OperationRequest.tool_name", enum(prop("OperationRequest", "tool_name")), api.ToolNames},
		{"OperationRequest.operation_mode", enum(prop("OperationRequest", "operation_mode")), api.OperationModes},
		{"Operation.tool_name", enum(prop("Operation", "tool_name")), api.ToolNames},
		{"Operation.operation_mode", enum(prop("Operation", "operation_mode")), api.OperationModes},
		{"tool_name filter", enum(param("FilterToolName")), api.ToolNames},
		{"operation_mode filter", enum(param("FilterOperationMode")), api.OperationModes},
		{"breakdown time_range", enum(param("BreakdownTimeRange")), names(exporter.BreakdownRanges)},
		{"savings time_range", enum(param("SavingsTimeRange")), names(exporter.SavingsRanges)},
		{"APISavings.time_range", enum(prop("APISavings", "time_range")), names(exporter.SavingsRanges)},
		{"ToolBreakdown.time_period", enum(prop("ToolBreakdown", "time_period")), names(exporter.BreakdownRanges)},
		{"aggregate order_by", enum(param("OrderBy")), api.AggregateOrders},
		{"Aggregate.group_by", enum(prop("Aggregate", "group_by").Items.Value), api.Dimensions},
	} {
		if !slices.Equal(c.got, c.want) {
			t.Errorf("%s: the document lists %v, the code %v", c.what, c.got, c.want)
		}
	}
	if got := prop("BatchRequest", "operations").MaxItems; got == nil || *got != api.MaxBatchOperations {
		t.Errorf("BatchRequest.operations maxItems %v, want %d", got, api.MaxBatchOperations)
	}
	if got := prop("Aggregate", "group_by").MaxItems; got == nil || *got != api.MaxGroupBy {
		t.Errorf("Aggregate.group_by maxItems %v, want %d", got, api.MaxGroupBy)
	}
	// group_by's pattern: one to MaxGroupBy of the dimensions.
	dim := "(" + strings.Join(api.Dimensions, "|") + ")"
	if got, want := param("GroupBy").Pattern, fmt.Sprintf("^%s(,%s){0,%d}$", dim, dim, api.MaxGroupBy-1); got != want {
		t.Errorf("group_by pattern %s, want %s", got, want)
	}
}
