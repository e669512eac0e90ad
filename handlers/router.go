package handlers

import (
	"context"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/mux"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/omnimemory/omnimemory-metrics/exporter"
	"github.com/omnimemory/omnimemory-metrics/tsdb"
	"github.com/omnimemory/omnimemory-metrics/ui"
)

// Options are what the HTTP layer serves from.
type Options struct {
	Store    tsdb.Store
	Tracker  *exporter.Tracker
	Reporter *exporter.Reporter
	// Gatherer is exposed at /metrics; Registerer takes the HTTP metrics.
	Gatherer   prometheus.Gatherer
	Registerer prometheus.Registerer
	// CORSOrigins are the origins a browser may call from; "*" allows all.
	CORSOrigins []string
	Logger      *slog.Logger
	// Now is the clock (time.Now when nil).
	Now func() time.Time
	// ReadyTimeout bounds the store check of /ready (default 2s).
	ReadyTimeout time.Duration
	// TracerProvider makes a span for every request (no-op when nil).
	TracerProvider trace.TracerProvider
	// APIToken, when set, is required as "Authorization: Bearer <token>" on
	// every endpoint but /health, /ready, CORS preflight and the documents
	// without data (/openapi.json, the page at / and its assets under /ui/),
	// and on /metrics unless MetricsPublic.
	APIToken      string
	MetricsPublic bool
}

type api struct {
	store     tsdb.Store
	tracker   *exporter.Tracker
	reporter  *exporter.Reporter
	logger    *slog.Logger
	now       func() time.Time
	readyWait time.Duration
	sessionMu sync.Mutex
}

// New answers the service's HTTP handler: every route of the contract behind
// panic recovery, CORS, the body limit and per-route instrumentation.
func New(opts Options) http.Handler {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.ReadyTimeout <= 0 {
		opts.ReadyTimeout = 2 * time.Second
	}
	if opts.TracerProvider == nil {
		opts.TracerProvider = noop.NewTracerProvider()
	}
	logger := opts.Logger.With("component", "http")
	a := &api{
		store: opts.Store, tracker: opts.Tracker, reporter: opts.Reporter,
		logger: logger, now: opts.Now, readyWait: opts.ReadyTimeout,
	}
	inst := newInstrumentation(opts.Registerer)
	r := mux.NewRouter()
	route := func(method, path string, h http.HandlerFunc) {
		r.Handle(path, inst.wrap(path, h)).Methods(method)
	}
	route(http.MethodPost, "/track/tool-operation", a.trackOperation)
	route(http.MethodPost, "/track/tool-operations", a.trackOperations)
	route(http.MethodGet, "/metrics/tool-operations", a.queryOperations)
	route(http.MethodGet, "/metrics/tool-operations/export", newOperationExport(a).serve)
	route(http.MethodGet, "/metrics/tool-breakdown", a.toolBreakdown)
	route(http.MethodGet, "/metrics/api-savings", a.apiSavings)
	route(http.MethodPost, "/sessions/start", a.startSession)
	route(http.MethodPost, "/sessions/get_or_create", a.getOrCreateSession)
	route(http.MethodGet, "/sessions/active", a.activeSessions)
	route(http.MethodPost, "/sessions/{id}/heartbeat", a.heartbeat)
	route(http.MethodPost, "/sessions/{id}/end", a.endSession)
	route(http.MethodGet, "/sessions/{id}", a.getSession)
	route(http.MethodGet, "/health", a.health)
	route(http.MethodGet, "/ready", a.ready)
	route(http.MethodGet, "/openapi.json", openAPI)
	page := ui.New() // the built-in page; any other path under /ui/ is a 404
	route(http.MethodGet, "/", page.ServeHTTP)
	route(http.MethodGet, ui.AssetPrefix+"{asset}", page.ServeHTTP)
	r.Handle("/metrics", inst.wrap("/metrics", promhttp.HandlerFor(opts.Gatherer, promhttp.HandlerOpts{
		EnableOpenMetrics: true,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelError),
		Timeout:           10 * time.Second,
	}))).Methods(http.MethodGet)
	r.NotFoundHandler = inst.wrap("unmatched", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusNotFound, map[string]string{"detail": "Not Found"})
	}))
	r.MethodNotAllowedHandler = inst.wrap("unmatched", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"detail": "Method Not Allowed"})
	}))
	return routed{Handler: otelhttp.NewHandler(recoverer(logger, cors(opts.CORSOrigins, limitBody(requireToken(opts.APIToken, opts.MetricsPublic, r)))), "http.request",
		otelhttp.WithTracerProvider(opts.TracerProvider)), router: r}
}

// routed is the handler New answers, with the router it dispatches to, so
// that tests can list the routes (and check the OpenAPI document names
// exactly them).
type routed struct {
	http.Handler
	router *mux.Router
}

// health serves GET /health: the process serves.
func (a *api) health(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "healthy"})
}

// ready serves GET /ready: 200 when the store answers, else 503.
func (a *api) ready(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), a.readyWait)
	defer cancel()
	if err := a.store.Ping(ctx); err != nil {
		w.Header().Set("Retry-After", strconv.Itoa(int(retryAfterStore.Seconds())))
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"detail": "Store not ready: " + err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

// limitBody answers 413 to a body declared larger than its route's limit
// (MaxBodyBytes; MaxBatchBodyBytes for the batch endpoint) before anything
// else, and caps every body so that a larger undeclared one fails while it
// is read.
func limitBody(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		limit := int64(MaxBodyBytes)
		if r.URL.Path == "/track/tool-operations" {
			limit = MaxBatchBodyBytes
		}
		if r.ContentLength > limit {
			writeError(w, nil, errTooLarge(limit))
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, limit)
		next.ServeHTTP(w, r)
	})
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
				writeJSON(w, http.StatusInternalServerError, map[string]string{"detail": "Internal server error"})
			}
		}()
		next.ServeHTTP(w, r)
	})
}

// cors answers preflight requests with 204 and adds
// Access-Control-Allow-Origin to every answer for an allowed origin. Another
// origin gets no allow header (the browser blocks it); the request is
// otherwise served as usual.
func cors(origins []string, next http.Handler) http.Handler {
	allowAll := false
	allowed := map[string]bool{}
	for _, o := range origins {
		o = strings.TrimRight(strings.TrimSpace(o), "/")
		if o == "*" {
			allowAll = true
		} else if o != "" {
			allowed[o] = true
		}
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		origin := r.Header.Get("Origin")
		switch {
		case allowAll:
			h.Set("Access-Control-Allow-Origin", "*")
		case origin != "" && allowed[origin]:
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
				reqHeaders = "Content-Type, Authorization, Idempotency-Key"
			}
			h.Set("Access-Control-Allow-Headers", reqHeaders)
			h.Set("Access-Control-Max-Age", "600")
		}
		w.WriteHeader(http.StatusNoContent)
	})
}

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
			Namespace: exporter.Namespace, Subsystem: "http", Name: "requests_total",
			Help: "HTTP requests answered, by route template, method and status code.",
		}, []string{"route", "method", "code"}),
		duration: f.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: exporter.Namespace, Subsystem: "http", Name: "request_duration_seconds",
			Help:                        "Time to answer HTTP requests, by route template and method.",
			Buckets:                     []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10},
			NativeHistogramBucketFactor: 1.1,
		}, []string{"route", "method"}),
	}
}

// wrap counts and times h under route, names the request's span after the
// route, and attaches the trace id to the observations as an exemplar.
func (i *instrumentation) wrap(route string, h http.Handler) http.Handler {
	labels := prometheus.Labels{"route": route}
	exemplar := promhttp.WithExemplarFromContext(traceExemplar)
	named := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		span := trace.SpanFromContext(r.Context())
		span.SetName(r.Method + " " + route)
		span.SetAttributes(attribute.String("http.route", route))
		h.ServeHTTP(w, r)
	})
	return promhttp.InstrumentHandlerCounter(i.requests.MustCurryWith(labels),
		promhttp.InstrumentHandlerDuration(i.duration.MustCurryWith(labels), named, exemplar), exemplar)
}

// traceExemplar answers the exemplar labels of a sampled request's trace.
func traceExemplar(ctx context.Context) prometheus.Labels {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsSampled() {
		return nil
	}
	return prometheus.Labels{"trace_id": sc.TraceID().String()}
}
