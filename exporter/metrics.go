package exporter

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"go.opentelemetry.io/otel/trace"

	"github.com/omnimemory/omnimemory-metrics/internal/metricname"
	"github.com/omnimemory/omnimemory-metrics/tsdb"
)

// DurationBuckets are the classic buckets of operation durations in seconds:
// 1 ms, 2.5 ms and 5 ms for fast local tools, then the OpenTelemetry GenAI
// semantic conventions' buckets for tool calls (gen_ai.client.operation.duration).
var DurationBuckets = []float64{
	0.001, 0.0025, 0.005,
	0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
}

// SavingsRatioBuckets are the buckets of tokens prevented / tokens original.
var SavingsRatioBuckets = []float64{0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99}

// OtherLabel replaces a tool_id label value once the label limit is reached.
const OtherLabel = "other"

// DefaultMaxToolIDLabels bounds the distinct tool_id label values.
const DefaultMaxToolIDLabels = 100

// DefaultMaxModelLabels bounds the distinct model label values of the spend
// metrics.
const DefaultMaxModelLabels = 100

// UnknownModelLabel is the model label of spend a tool reported without a
// model.
const UnknownModelLabel = "unknown"

// Metrics are the Prometheus metrics of accepted operations and of the
// ingest path. Build them with NewMetrics on a registry of the caller's.
type Metrics struct {
	operations      *prometheus.CounterVec
	tokensOriginal  *prometheus.CounterVec
	tokensActual    *prometheus.CounterVec
	tokensPrevented *prometheus.CounterVec
	tokensOverspent *prometheus.CounterVec
	cacheLookups    *prometheus.CounterVec
	cacheHits       *prometheus.CounterVec
	duration        *prometheus.HistogramVec
	savingsRatio    *prometheus.HistogramVec
	price           prometheus.Gauge

	batchSize      prometheus.Histogram
	commitDuration prometheus.Histogram
	queueDepth     prometheus.Gauge
	queueCapacity  prometheus.Gauge
	writeErrors    prometheus.Counter
	shed           *prometheus.CounterVec

	llmTokens     *prometheus.CounterVec
	llmCost       *prometheus.CounterVec
	otlpIgnored   *prometheus.CounterVec
	otlpRejected  *prometheus.CounterVec
	otlpSeries    prometheus.Gauge
	otlpEvictions prometheus.Counter

	toolIDs *labelLimiter
	models  *labelLimiter

	series *Bound[seriesKey, *toolSeries] // bound on first use
}

// seriesKey names the series an accepted operation bumps: its labels, and
// which of the series that not every operation has it bumps.
type seriesKey struct {
	toolName, mode, toolID string
	overspent              bool // tokens_overspent_total rather than tokens_prevented_total
	cache                  bool // the cache lookups and hits
	ratio                  bool // the savings ratio
}

// toolSeries are the series of one seriesKey, bound to their label values
// once rather than looked up by them for every operation. A series that
// the key's operations do not bump stays nil (and unexposed).
type toolSeries struct {
	operations, tokensOriginal, tokensActual prometheus.Counter
	tokensSaved                              prometheus.Counter // prevented, or overspent
	cacheLookups, cacheHits                  prometheus.Counter
	duration, savingsRatio                   prometheus.Observer
}

// bindSeries binds the series of k. The keys are bounded: tool names and
// modes are the contract's, tool ids pass the label limit.
func (m *Metrics) bindSeries(k seriesKey) *toolSeries {
	s := &toolSeries{
		operations:     m.operations.WithLabelValues(k.toolName, k.mode, k.toolID),
		tokensOriginal: m.tokensOriginal.WithLabelValues(k.toolName, k.mode, k.toolID),
		tokensActual:   m.tokensActual.WithLabelValues(k.toolName, k.mode, k.toolID),
		duration:       m.duration.WithLabelValues(k.toolName, k.mode),
	}
	if k.overspent {
		s.tokensSaved = m.tokensOverspent.WithLabelValues(k.toolName, k.mode, k.toolID)
	} else {
		s.tokensSaved = m.tokensPrevented.WithLabelValues(k.toolName, k.mode, k.toolID)
	}
	if k.cache {
		s.cacheLookups = m.cacheLookups.WithLabelValues(k.toolName, k.mode, k.toolID)
		// A miss makes the hits series too (at 0), so that the hit rate
		// of a key without hits is 0, not absent.
		s.cacheHits = m.cacheHits.WithLabelValues(k.toolName, k.mode, k.toolID)
	}
	if k.ratio {
		s.savingsRatio = m.savingsRatio.WithLabelValues(k.toolName, k.mode)
	}
	return s
}

// Bound holds what bind makes of each key (series bound to their label
// values), made on first use, so that a hot path finds them by a
// comparable key instead of looking them up by label values each time.
// The keys must be bounded: every one stays.
type Bound[K comparable, V any] struct {
	bind func(K) V
	mu   sync.RWMutex
	m    map[K]V
}

// NewBound answers a Bound of bind.
func NewBound[K comparable, V any](bind func(K) V) *Bound[K, V] {
	return &Bound[K, V]{bind: bind, m: map[K]V{}}
}

// Of answers what bind made of k, making it on first use.
func (b *Bound[K, V]) Of(k K) V {
	b.mu.RLock()
	v, ok := b.m[k]
	b.mu.RUnlock()
	if ok {
		return v
	}
	v = b.bind(k)
	b.mu.Lock()
	defer b.mu.Unlock()
	if bound, ok := b.m[k]; ok {
		return bound
	}
	b.m[k] = v
	return v
}

// NewMetrics registers the metrics on reg. maxToolIDs bounds how many
// distinct tool_id label values appear (the rest are counted under "other");
// 0 means DefaultMaxToolIDLabels.
func NewMetrics(reg prometheus.Registerer, pricePerThousand float64, maxToolIDs int) *Metrics {
	f := promauto.With(reg)
	toolLabels := []string{"tool_name", "operation_mode", "tool_id"}
	modeLabels := []string{"tool_name", "operation_mode"}
	if maxToolIDs <= 0 {
		maxToolIDs = DefaultMaxToolIDLabels
	}
	m := &Metrics{
		operations: f.NewCounterVec(prometheus.CounterOpts{
			Name: metricname.ToolOperationsTotal,
			Help: "Tool operations accepted and stored.",
		}, toolLabels),
		tokensOriginal: f.NewCounterVec(prometheus.CounterOpts{
			Name: metricname.ToolTokensOriginalTotal,
			Help: "Tokens the naive way would have sent (the baseline) for accepted operations.",
		}, toolLabels),
		tokensActual: f.NewCounterVec(prometheus.CounterOpts{
			Name: metricname.ToolTokensActualTotal,
			Help: "Tokens actually sent for accepted operations.",
		}, toolLabels),
		tokensPrevented: f.NewCounterVec(prometheus.CounterOpts{
			Name: metricname.ToolTokensPreventedTotal,
			Help: "Tokens saved against the baseline; an operation that cost more than its baseline adds nothing here.",
		}, toolLabels),
		tokensOverspent: f.NewCounterVec(prometheus.CounterOpts{
			Name: metricname.ToolTokensOverspentTotal,
			Help: "Tokens by which operations cost more than their baseline.",
		}, toolLabels),
		cacheLookups: f.NewCounterVec(prometheus.CounterOpts{
			Name: metricname.ToolCacheLookupsTotal,
			Help: "Accepted operations that said whether the tool answered from its cache (cache_hit true or false).",
		}, toolLabels),
		cacheHits: f.NewCounterVec(prometheus.CounterOpts{
			Name: metricname.ToolCacheHitsTotal,
			Help: "Accepted operations the tool answered from its cache (cache_hit true).",
		}, toolLabels),
		duration: f.NewHistogramVec(prometheus.HistogramOpts{
			Name:                            metricname.ToolOperationDurationSeconds,
			Help:                            "Response time of tool operations as reported by the tool.",
			Buckets:                         DurationBuckets,
			NativeHistogramBucketFactor:     1.1,
			NativeHistogramMaxBucketNumber:  160,
			NativeHistogramMinResetDuration: 0,
		}, modeLabels),
		savingsRatio: f.NewHistogramVec(prometheus.HistogramOpts{
			Name:    metricname.ToolOperationSavingsRatio,
			Help:    "Tokens prevented divided by tokens original, per operation with a non-zero baseline (negative savings count as 0).",
			Buckets: SavingsRatioBuckets,
		}, modeLabels),
		price: f.NewGauge(prometheus.GaugeOpts{
			Name: metricname.CostPer1kTokensUSD,
			Help: "Configured price in US dollars per 1,000 tokens, to turn token counters into dollars.",
		}),
		batchSize: f.NewHistogram(prometheus.HistogramOpts{
			Name:    metricname.IngestBatchSize,
			Help:    "Operations committed together by the writer in one store write.",
			Buckets: prometheus.ExponentialBuckets(1, 4, 9),
		}),
		commitDuration: f.NewHistogram(prometheus.HistogramOpts{
			Name:                        metricname.IngestCommitDurationSeconds,
			Help:                        "Time the store took to make one batch durable.",
			Buckets:                     prometheus.ExponentialBuckets(0.0001, 2.5, 14),
			NativeHistogramBucketFactor: 1.1,
		}),
		queueDepth: f.NewGauge(prometheus.GaugeOpts{
			Name: metricname.IngestQueueDepth,
			Help: "Requests waiting for the writer.",
		}),
		queueCapacity: f.NewGauge(prometheus.GaugeOpts{
			Name: metricname.IngestQueueCapacity,
			Help: "Bound of the writer's queue; past it requests are shed with 503.",
		}),
		writeErrors: f.NewCounter(prometheus.CounterOpts{
			Name: metricname.IngestWriteErrorsTotal,
			Help: "Batches the store failed to commit (their requests were answered with an error).",
		}),
		shed: f.NewCounterVec(prometheus.CounterOpts{
			Name: metricname.IngestShedOperationsTotal,
			Help: "Operations refused without being stored, by reason (queue_full, deadline, store_full, store_error, shutting_down).",
		}, []string{"reason"}),
		llmTokens: f.NewCounterVec(prometheus.CounterOpts{
			Name: metricname.LLMTokensTotal,
			Help: "Tokens AI tools reported spending in their own OpenTelemetry metrics, by kind (input, output, cache_read, cache_creation), stored once each.",
		}, []string{"tool_id", "model", "type"}),
		llmCost: f.NewCounterVec(prometheus.CounterOpts{
			Name: metricname.LLMCostUSDTotal,
			Help: "US dollars AI tools reported spending in their own OpenTelemetry metrics, stored once each.",
		}, []string{"tool_id", "model"}),
		otlpIgnored: f.NewCounterVec(prometheus.CounterOpts{
			Name: metricname.OTLPDataPointsIgnoredTotal,
			Help: "OTLP data points taken but not stored as spend, by reason (other_metric, unexpected_type, unknown_token_type, out_of_order).",
		}, []string{"reason"}),
		otlpRejected: f.NewCounterVec(prometheus.CounterOpts{
			Name: metricname.OTLPDataPointsRejectedTotal,
			Help: "OTLP spend data points refused as malformed, by reason (bad_tool_id, bad_value, bad_time, bad_model, bad_temporality, missing_sum).",
		}, []string{"reason"}),
		otlpSeries: f.NewGauge(prometheus.GaugeOpts{
			Name: metricname.OTLPCumulativeSeries,
			Help: "Cumulative OTLP series whose last value is kept to turn the next one into a delta.",
		}),
		otlpEvictions: f.NewCounter(prometheus.CounterOpts{
			Name: metricname.OTLPCumulativeSeriesEvictedTotal,
			Help: "Cumulative OTLP series forgotten, least recently seen first, to keep their number bounded.",
		}),
		toolIDs: newLabelLimiter(maxToolIDs),
		models:  newLabelLimiter(DefaultMaxModelLabels),
	}
	m.series = NewBound(m.bindSeries)
	m.price.Set(pricePerThousand)
	return m
}

// observeAccepted bumps the tool metrics for operations just made durable;
// the operation counter and the duration histogram carry the trace id of the
// request that sent them as an exemplar, when it was sampled.
func (m *Metrics) observeAccepted(ops []tsdb.Operation, span trace.SpanContext) {
	var exemplar prometheus.Labels
	if span.IsSampled() {
		exemplar = prometheus.Labels{"trace_id": span.TraceID().String()}
	}
	for i := range ops {
		op := &ops[i]
		if op.Duplicate {
			continue // stored before: counted then
		}
		s := m.series.Of(seriesKey{
			toolName: op.ToolName, mode: op.OperationMode, toolID: m.toolIDs.label(op.ToolID),
			overspent: op.TokensPrevented < 0, cache: op.CacheHit != nil, ratio: op.TokensOriginal > 0,
		})
		AddWithExemplar(s.operations, 1, exemplar)
		s.tokensOriginal.Add(float64(op.TokensOriginal))
		s.tokensActual.Add(float64(op.TokensActual))
		if op.TokensPrevented >= 0 {
			s.tokensSaved.Add(float64(op.TokensPrevented))
		} else {
			s.tokensSaved.Add(-float64(op.TokensPrevented))
		}
		if op.CacheHit != nil {
			s.cacheLookups.Inc()
			if *op.CacheHit {
				s.cacheHits.Inc()
			}
		}
		ObserveWithExemplar(s.duration, op.ResponseTimeMs/1000, exemplar)
		if op.TokensOriginal > 0 {
			s.savingsRatio.Observe(float64(max(op.TokensPrevented, 0)) / float64(op.TokensOriginal))
		}
	}
}

// observeSpend bumps the spend metrics for points just stored; points the
// store held already (a retried export) were counted then.
func (m *Metrics) observeSpend(points []tsdb.SpendPoint) {
	for i := range points {
		p := &points[i]
		if p.Duplicate {
			continue
		}
		toolID := m.toolIDs.label(p.ToolID)
		model := UnknownModelLabel
		if p.Model != "" {
			model = m.models.label(p.Model)
		}
		for _, k := range []struct {
			kind string
			n    int64
		}{{"input", p.Tokens.Input}, {"output", p.Tokens.Output}, {"cache_read", p.Tokens.CacheRead}, {"cache_creation", p.Tokens.CacheCreation}} {
			if k.n > 0 {
				m.llmTokens.WithLabelValues(toolID, model, k.kind).Add(float64(k.n))
			}
		}
		if p.CostUSD > 0 {
			m.llmCost.WithLabelValues(toolID, model).Add(p.CostUSD)
		}
	}
}

// AddWithExemplar adds v to c, with the exemplar when there is one and c
// takes exemplars.
func AddWithExemplar(c prometheus.Counter, v float64, exemplar prometheus.Labels) {
	if ea, ok := c.(prometheus.ExemplarAdder); ok && exemplar != nil {
		ea.AddWithExemplar(v, exemplar)
		return
	}
	c.Add(v)
}

// ObserveWithExemplar observes v on o, with the exemplar when there is one
// and o takes exemplars.
func ObserveWithExemplar(o prometheus.Observer, v float64, exemplar prometheus.Labels) {
	if eo, ok := o.(prometheus.ExemplarObserver); ok && exemplar != nil {
		eo.ObserveWithExemplar(v, exemplar)
		return
	}
	o.Observe(v)
}

// labelLimiter admits the first max distinct values of a label and maps
// every later one to OtherLabel, so that a client inventing tool ids cannot
// grow the exposition without bound.
type labelLimiter struct {
	mu   sync.RWMutex
	max  int
	seen map[string]struct{}
}

func newLabelLimiter(max int) *labelLimiter {
	return &labelLimiter{max: max, seen: make(map[string]struct{}, max)}
}

func (l *labelLimiter) label(v string) string {
	l.mu.RLock()
	_, ok := l.seen[v]
	n := len(l.seen)
	l.mu.RUnlock()
	if ok {
		return v
	}
	if n >= l.max {
		return OtherLabel
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.seen[v]; ok {
		return v
	}
	if len(l.seen) >= l.max {
		return OtherLabel
	}
	l.seen[v] = struct{}{}
	return v
}
