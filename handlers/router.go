// Package handlers is the HTTP face of omnimemory-metrics and nothing else:
// gorilla/mux routes, request decoding and validation with the contract's
// error shapes, the service layer called through small interfaces, JSON
// answers, one place that maps errors to statuses, CORS, bearer tokens,
// body limits and per-route instrumentation.
package handlers

import (
	"context"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/gorilla/mux"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	colmetricpb "go.opentelemetry.io/proto/otlp/collector/metrics/v1"

	"github.com/omnimemory/omnimemory-metrics/client/api"
	"github.com/omnimemory/omnimemory-metrics/exporter"
	"github.com/omnimemory/omnimemory-metrics/internal/metricname"
	"github.com/omnimemory/omnimemory-metrics/tsdb"
	"github.com/omnimemory/omnimemory-metrics/ui"
)

// The parts of the service layer the routes call, each as small as its
// routes need (*exporter.Service has them all).
type (
	// Ingester stores operations: POST /track/tool-operation(s).
	Ingester interface {
		Track(ctx context.Context, ops ...tsdb.Operation) error
	}
	// SpendIngester takes the AI tools' own OTLP metrics: POST /v1/metrics.
	SpendIngester interface {
		TrackSpend(ctx context.Context, req *colmetricpb.ExportMetricsServiceRequest) (exporter.SpendResult, error)
	}
	// OperationReader lists and exports operations: GET
	// /metrics/tool-operations(/export).
	OperationReader interface {
		QueryOperations(ctx context.Context, f tsdb.OperationFilter) (tsdb.OperationPage, error)
		ExportOperations(ctx context.Context, f tsdb.OperationFilter, fn func(*tsdb.Operation) error) error
	}
	// Reports answers the aggregate endpoints.
	Reports interface {
		ToolBreakdown(ctx context.Context, r exporter.TimeRange, toolID string) (api.ToolBreakdown, error)
		APISavings(ctx context.Context, r exporter.TimeRange, toolID string) (api.APISavings, error)
		CompareAPISavings(ctx context.Context, r exporter.TimeRange, toolID string) (api.APISavings, error)
		Spend(ctx context.Context, r exporter.TimeRange, toolID string) (api.Spend, error)
		Aggregate(ctx context.Context, req exporter.AggregateRequest) (api.Aggregate, error)
	}
	// SessionKeeper keeps sessions: /sessions/...
	SessionKeeper interface {
		StartSession(ctx context.Context, req exporter.SessionRequest) (tsdb.Session, error)
		GetOrCreateSession(ctx context.Context, req exporter.SessionRequest) (tsdb.Session, bool, error)
		Heartbeat(ctx context.Context, id uuid.UUID) (tsdb.Session, error)
		EndSession(ctx context.Context, id uuid.UUID) (tsdb.SessionStats, error)
		GetSession(ctx context.Context, id uuid.UUID) (tsdb.SessionStats, error)
		ActiveSessions(ctx context.Context, toolID string) ([]tsdb.SessionStats, error)
	}
	// Streamer subscribes to the live stream of operations: GET
	// /stream/operations and /ws/operations.
	Streamer interface {
		Subscribe(f exporter.StreamFilter, after *uuid.UUID) (*exporter.Subscription, error)
	}
	// Readiness tells whether the service can serve: GET /ready.
	Readiness interface {
		Ready(ctx context.Context) error
	}
	// Clock is the service's clock, which operations' created_at is checked
	// against while they are decoded.
	Clock interface {
		Now() time.Time
	}
	// Service is every part together: what New serves.
	Service interface {
		Ingester
		SpendIngester
		OperationReader
		Reports
		SessionKeeper
		Streamer
		Readiness
		Clock
	}
)

// Options are how the HTTP layer serves.
type Options struct {
	// Gatherer is exposed at /metrics; Registerer takes the HTTP metrics.
	Gatherer   prometheus.Gatherer
	Registerer prometheus.Registerer
	// CORSOrigins are the origins a browser may call from; "*" allows all.
	CORSOrigins []string
	Logger      *slog.Logger
	// TracerProvider makes a span for every request (no-op when nil).
	TracerProvider trace.TracerProvider
	// APIToken, when set, is required as "Authorization: Bearer <token>" on
	// every endpoint but /health, /ready, CORS preflight and the documents
	// without data (/openapi.json, the page at / and its assets under /ui/),
	// and on /metrics unless MetricsPublic.
	// GET /stream/operations and /ws/operations, which a browser opens
	// without headers, take the token as the query parameter access_token
	// too.
	APIToken      string
	MetricsPublic bool
	// StreamWriteTimeout is how long a stream's client has to take each
	// write before it is dropped as too slow (default 10s).
	StreamWriteTimeout time.Duration
}

// New answers the service's HTTP handler: every route of the contract behind
// tracing, panic recovery, CORS, the body limit and the bearer token.
func New(svc Service, o Options) http.Handler {
	if o.TracerProvider == nil {
		o.TracerProvider = noop.NewTracerProvider()
	}
	logger := o.Logger.With("component", "http")
	h := newRouter(svc, o, logger)
	chain := recoverer(logger, cors(newOriginPolicy(o.CORSOrigins), limitBody(requireToken(o.APIToken, o.MetricsPublic, h))))
	if _, off := o.TracerProvider.(noop.TracerProvider); off {
		return propagated(chain)
	}
	return otelhttp.NewHandler(chain, "http.request", otelhttp.WithTracerProvider(o.TracerProvider))
}

// propagated stands for the tracing middleware when tracing is off: no span
// is made, but the caller's propagated trace context still reaches the
// request's context (as the no-op tracer would keep it), so exemplars carry
// the caller's trace id as before, for none of the middleware's cost.
func propagated(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := otel.GetTextMapPropagator().Extract(r.Context(), propagation.HeaderCarrier(r.Header))
		if ctx != r.Context() {
			r = r.WithContext(ctx)
		}
		h.ServeHTTP(w, r)
	})
}

// newRouter answers the router of every route, each instrumented by its
// template.
func newRouter(svc Service, o Options, logger *slog.Logger) *mux.Router {
	inst := newInstrumentation(o.Registerer)
	r := mux.NewRouter()
	handle := func(method, path string, h http.Handler) {
		r.Handle(path, inst.wrap(path, h, true)).Methods(method)
	}
	ingest := ingestRoutes{svc: svc, clock: svc}
	ops := operationRoutes{svc: svc, logger: logger}
	reports := reportRoutes{svc: svc}
	sessions := sessionRoutes{svc: svc}
	if o.StreamWriteTimeout <= 0 {
		o.StreamWriteTimeout = defaultStreamWriteTimeout
	}
	streams := streamRoutes{svc: svc, logger: logger, writeTimeout: o.StreamWriteTimeout, origins: newOriginPolicy(o.CORSOrigins)}
	for _, rt := range []struct {
		method, path string
		e            endpoint
	}{
		{http.MethodPost, api.PathTrackOperation, ingest.trackOperation},
		{http.MethodPost, api.PathTrackOperations, ingest.trackOperations},
		{http.MethodGet, api.PathOperations, ops.query},
		{http.MethodGet, api.PathOperationsExport, ops.export},
		{http.MethodGet, api.PathToolBreakdown, reports.toolBreakdown},
		{http.MethodGet, api.PathAPISavings, reports.apiSavings},
		{http.MethodGet, api.PathSpend, reports.spend},
		{http.MethodGet, api.PathAggregate, reports.aggregate},
		{http.MethodPost, api.PathSessionStart, sessions.start},
		{http.MethodPost, api.PathSessionGetOrCreate, sessions.getOrCreate},
		{http.MethodGet, api.PathSessionsActive, sessions.active},
		{http.MethodPost, api.PathSessionHeartbeat, sessions.heartbeat},
		{http.MethodPost, api.PathSessionEnd, sessions.end},
		{http.MethodGet, api.PathSession, sessions.get},
		{http.MethodGet, api.PathHealth, health},
		{http.MethodGet, api.PathReady, ready(svc)},
	} {
		handle(rt.method, rt.path, serve(logger, rt.e))
	}
	// A stream lasts as long as its subscriber: it is counted, but its
	// duration would only blur the latency of the requests that answer.
	for _, rt := range []struct {
		path string
		e    endpoint
	}{{api.PathStreamOperations, streams.events}, {api.PathWSOperations, streams.websocket}} {
		r.Handle(rt.path, inst.wrap(rt.path, serve(logger, rt.e), false)).Methods(http.MethodGet)
	}
	handle(http.MethodPost, api.PathOTLPMetrics, http.HandlerFunc(otlpRoutes{svc: svc, logger: logger}.metrics))
	handle(http.MethodGet, api.PathOpenAPI, http.HandlerFunc(openAPI))
	page := ui.New() // the built-in page; any other path under /ui/ is a 404
	handle(http.MethodGet, "/", page)
	handle(http.MethodGet, ui.AssetPrefix+"{asset}", page)
	handle(http.MethodGet, api.PathMetrics, promhttp.HandlerFor(o.Gatherer, promhttp.HandlerOpts{
		EnableOpenMetrics: true,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelError),
		Timeout:           10 * time.Second,
	}))
	r.NotFoundHandler = inst.wrap("unmatched", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		writeDetail(w, http.StatusNotFound, "Not Found", 0)
	}), true)
	r.MethodNotAllowedHandler = inst.wrap("unmatched", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		writeDetail(w, http.StatusMethodNotAllowed, "Method Not Allowed", 0)
	}), true)
	return r
}

// health serves GET /health: the process serves.
func health(http.ResponseWriter, *http.Request) (any, error) {
	return api.Health{Status: api.StatusHealthy}, nil
}

// ready serves GET /ready: 200 when the store answers, else 503.
func ready(svc Readiness) endpoint {
	return func(_ http.ResponseWriter, r *http.Request) (any, error) {
		if err := svc.Ready(r.Context()); err != nil {
			return nil, &httpError{status: http.StatusServiceUnavailable, detail: "Store not ready: " + err.Error(), retryAfter: retryAfterStore}
		}
		return api.Ready{Status: api.StatusReady}, nil
	}
}

// recoverer turns a panic into a 500 with a detail and no stack trace in the
// answer; the stack goes to the log.
func recoverer(logger *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				logger.Error("panic serving request", "path", r.URL.Path, "panic", v)
				writeDetail(w, http.StatusInternalServerError, "Internal server error", 0)
			}
		}()
		next.ServeHTTP(w, r)
	})
}

// cors answers preflight requests with 204 and adds
// Access-Control-Allow-Origin to every answer for an allowed origin. Another
// origin gets no allow header (the browser blocks it); the request is
// otherwise served as usual.
func cors(origins originPolicy, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		origin := r.Header.Get("Origin")
		switch {
		case origins.all:
			h.Set("Access-Control-Allow-Origin", "*")
		case origin != "" && origins.allows(origin):
			h.Set("Access-Control-Allow-Origin", origin)
			h.Add("Vary", "Origin")
		default:
			h.Add("Vary", "Origin")
		}
		if r.Method != http.MethodOptions {
			if h.Get("Access-Control-Allow-Origin") != "" {
				h.Set("Access-Control-Expose-Headers", "Retry-After")
			}
			next.ServeHTTP(w, r)
			return
		}
		if h.Get("Access-Control-Allow-Origin") != "" {
			h.Set("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
			reqHeaders := r.Header.Get("Access-Control-Request-Headers")
			if reqHeaders == "" {
				reqHeaders = "Content-Type, Authorization, " + api.HeaderIdempotencyKey
			}
			h.Set("Access-Control-Allow-Headers", reqHeaders)
			h.Set("Access-Control-Max-Age", "600")
		}
		w.WriteHeader(http.StatusNoContent)
	})
}

// originPolicy is the origins a browser may call from
// (OMNIMEMORY_CORS_ORIGINS): CORS answers, and the WebSocket's origin
// check.
type originPolicy struct {
	all     bool
	allowed map[string]bool
}

func newOriginPolicy(origins []string) originPolicy {
	p := originPolicy{allowed: map[string]bool{}}
	for _, o := range origins {
		o = strings.TrimRight(strings.TrimSpace(o), "/")
		if o == "*" {
			p.all = true
		} else if o != "" {
			p.allowed[o] = true
		}
	}
	return p
}

// allows reports whether a page of origin may call.
func (p originPolicy) allows(origin string) bool { return p.all || p.allowed[origin] }

// instrumentation counts requests and times them by route template, never
// by raw path.
type instrumentation struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

func newInstrumentation(reg prometheus.Registerer) *instrumentation {
	f := promauto.With(reg)
	return &instrumentation{
		requests: f.NewCounterVec(prometheus.CounterOpts{
			Name: metricname.HTTPRequestsTotal,
			Help: "HTTP requests answered, by route template, method and status code.",
		}, []string{"route", "method", "code"}),
		duration: f.NewHistogramVec(prometheus.HistogramOpts{
			Name:                        metricname.HTTPRequestDurationSeconds,
			Help:                        "Time to answer HTTP requests, by route template and method.",
			Buckets:                     []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10},
			NativeHistogramBucketFactor: 1.1,
		}, []string{"route", "method"}),
	}
}

// wrap counts h's requests under route (and, when timed, their duration),
// names the request's span after the route, and attaches the trace id to
// the observations as an exemplar. The labels are promhttp's
// (InstrumentHandlerCounter and InstrumentHandlerDuration); the series are
// bound to them once per method and code rather than looked up for every
// request.
func (i *instrumentation) wrap(route string, h http.Handler, timed bool) http.Handler {
	requests := exporter.NewBound(func(k routeCode) prometheus.Counter {
		return i.requests.WithLabelValues(route, k.method, codeLabel(k.status))
	})
	duration := exporter.NewBound(func(method string) prometheus.Observer {
		return i.duration.WithLabelValues(route, method)
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		if span := trace.SpanFromContext(r.Context()); span.IsRecording() {
			span.SetName(r.Method + " " + route)
			span.SetAttributes(attribute.String("http.route", route))
		}
		sw := &statusWriter{ResponseWriter: w}
		h.ServeHTTP(sw, r)
		method := methodLabel(r.Method)
		exemplar := traceExemplar(r.Context())
		if timed {
			exporter.ObserveWithExemplar(duration.Of(method), time.Since(start).Seconds(), exemplar)
		}
		exporter.AddWithExemplar(requests.Of(routeCode{method, sw.status}), 1, exemplar)
	})
}

// routeCode is a request's method label and status code: methods and codes
// are few (promhttp's labels bound them).
type routeCode struct {
	method string
	status int
}

// methodLabel answers the method label of a request's method, as promhttp
// gives it.
func methodLabel(m string) string {
	switch m {
	case "GET", "get":
		return "get"
	case "PUT", "put":
		return "put"
	case "HEAD", "head":
		return "head"
	case "POST", "post":
		return "post"
	case "DELETE", "delete":
		return "delete"
	case "CONNECT", "connect":
		return "connect"
	case "OPTIONS", "options":
		return "options"
	case "NOTIFY", "notify":
		return "notify"
	case "TRACE", "trace":
		return "trace"
	case "PATCH", "patch":
		return "patch"
	}
	return "unknown"
}

// codeLabel answers the code label of an answer's status, as promhttp gives
// it: 0 (nothing written, or a hijacked connection) counts as 200.
func codeLabel(status int) string {
	switch {
	case status == 0:
		return "200"
	case status >= 100 && status <= 599:
		return strconv.Itoa(status)
	}
	return "unknown"
}

// statusWriter records the status an answer was given. Unwrap lets
// http.ResponseController (flushes, deadlines, full duplex, the
// WebSocket's hijack) reach the server's writer beneath.
type statusWriter struct {
	http.ResponseWriter
	status      int
	wroteHeader bool
}

func (w *statusWriter) WriteHeader(code int) {
	w.status, w.wroteHeader = code, true
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// traceExemplar answers the exemplar labels of a sampled request's trace.
func traceExemplar(ctx context.Context) prometheus.Labels {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsSampled() {
		return nil
	}
	return prometheus.Labels{"trace_id": sc.TraceID().String()}
}
