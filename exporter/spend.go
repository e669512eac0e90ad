package exporter

import (
	"context"
	"encoding/hex"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	colmetricpb "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	metricpb "go.opentelemetry.io/proto/otlp/metrics/v1"

	"github.com/omnimemory/omnimemory-metrics/client/api"
	"github.com/omnimemory/omnimemory-metrics/tsdb"
)

// The metrics of the AI tools that TrackSpend takes; every other metric of
// a request is ignored (and counted).
const (
	// MetricClaudeCodeTokens is Claude Code's token counter (unit tokens;
	// attributes type = input|output|cacheRead|cacheCreation, and model).
	MetricClaudeCodeTokens = "claude_code.token.usage"
	// MetricClaudeCodeCost is Claude Code's cost counter (unit USD;
	// attribute model).
	MetricClaudeCodeCost = "claude_code.cost.usage"
	// MetricGenAITokens is the OpenTelemetry GenAI semantic conventions'
	// token histogram (attributes gen_ai.token.type = input|output and
	// gen_ai.request.model); its sum is what was spent.
	MetricGenAITokens = "gen_ai.client.token.usage"
)

// DefaultMaxSpendSeries bounds the cumulative series whose last value the
// service keeps (SpendOptions.MaxSeries).
const DefaultMaxSpendSeries = 20000

// DefaultMaxSpendWrites bounds the spend writes in flight at once
// (SpendOptions.MaxWrites).
const DefaultMaxSpendWrites = 64

// SpendOptions tune the intake of the tools' OTLP metrics. Zero values take
// the defaults.
type SpendOptions struct {
	// MaxSeries bounds the cumulative series kept in memory to turn
	// cumulative points into deltas (DefaultMaxSpendSeries); past it the
	// least recently seen series is forgotten (and counted).
	MaxSeries int
	// MaxWrites bounds the store writes in flight at once
	// (DefaultMaxSpendWrites); past it TrackSpend answers ErrOverloaded.
	MaxWrites int
	// WriteTimeout bounds one store write (the Tracker's write timeout when
	// 0, else 30s).
	WriteTimeout time.Duration
}

// SpendResult tells what TrackSpend made of a request.
type SpendResult struct {
	// Stored points were new; Duplicates had been stored before (a retried
	// export).
	Stored, Duplicates int64
	// Ignored data points are not spend (other metrics, other types) or
	// were already accounted for (an older point of a cumulative series).
	Ignored int64
	// Rejected data points were malformed; Reasons says why, e.g.
	// "bad_value: 2, bad_time: 1".
	Rejected int64
	Reasons  string
}

// SpendIntake turns the AI tools' own OpenTelemetry metrics into spend points and
// stores them: deltas as they come, cumulative series as the differences
// between their points.
type SpendIntake struct {
	store        tsdb.SpendWriter // nil: the store keeps no spend
	metrics      *Metrics
	series       *seriesCache
	now          func() time.Time
	writeTimeout time.Duration
	writes       chan struct{} // a slot per write in flight
	logger       *slog.Logger
}

// NewSpend answers the intake over store. started is when
// the process started: a cumulative series first seen whose start is at or
// after it is counted whole, an older one only sets the baseline.
func NewSpend(store tsdb.SpendWriter, metrics *Metrics, o SpendOptions, started time.Time, now func() time.Time, logger *slog.Logger) *SpendIntake {
	if o.MaxSeries <= 0 {
		o.MaxSeries = DefaultMaxSpendSeries
	}
	if o.MaxWrites <= 0 {
		o.MaxWrites = DefaultMaxSpendWrites
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = 30 * time.Second
	}
	return &SpendIntake{
		store:        store,
		metrics:      metrics,
		series:       newSeriesCache(o.MaxSeries, uint64(started.UnixNano()), metrics),
		now:          now,
		writeTimeout: o.WriteTimeout,
		writes:       make(chan struct{}, o.MaxWrites),
		logger:       logger.With("component", "spend"),
	}
}

// TrackSpend stores the spend of an OTLP export request. Data points of
// other metrics are ignored and malformed ones rejected (both counted),
// never failing the good points beside them. The store write is bounded by
// the write timeout; a retried export gives the same point ids, so it is
// stored once. It answers ErrOverloaded when too many writes are in flight, or the store's
// error (a tsdb.ErrUnavailable when it did not answer in time); on an error
// nothing of the request is kept, not even the cumulative series' progress.
func (s *SpendIntake) TrackSpend(ctx context.Context, req *colmetricpb.ExportMetricsServiceRequest) (SpendResult, error) {
	c := conversion{series: s.series, now: s.now().UTC(), ignored: map[string]int64{}, rejected: map[string]int64{}}
	c.request(req)
	res := SpendResult{Ignored: sum(c.ignored), Rejected: sum(c.rejected), Reasons: reasons(c.rejected)}
	for reason, n := range c.ignored {
		s.metrics.otlpIgnored.WithLabelValues(reason).Add(float64(n))
	}
	for reason, n := range c.rejected {
		s.metrics.otlpRejected.WithLabelValues(reason).Add(float64(n))
	}
	if len(c.points) == 0 {
		return res, nil
	}
	select {
	case s.writes <- struct{}{}:
		defer func() { <-s.writes }()
	default:
		s.series.rollback(c.undo)
		return SpendResult{}, ErrOverloaded
	}
	// The write finishes even when the client goes away: an answer never
	// hides points that were stored.
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.writeTimeout)
	defer cancel()
	if err := s.store.WriteSpend(wctx, c.points); err != nil {
		s.series.rollback(c.undo)
		s.metrics.writeErrors.Inc()
		s.logger.Error("store write failed", "points", len(c.points), "err", err)
		return SpendResult{}, storeWriteError(fmt.Sprintf("%d spend points", len(c.points)), err)
	}
	s.metrics.observeSpend(c.points)
	for i := range c.points {
		if c.points[i].Duplicate {
			res.Duplicates++
		} else {
			res.Stored++
		}
	}
	return res, nil
}

func sum(m map[string]int64) (n int64) {
	for _, v := range m {
		n += v
	}
	return n
}

// reasons writes counts by reason, sorted by reason: "bad_time: 1,
// bad_value: 2".
func reasons(m map[string]int64) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + ": " + strconv.FormatInt(m[k], 10)
	}
	return strings.Join(parts, ", ")
}

// spendNamespace is the UUIDv5 namespace of spend point and series ids.
var spendNamespace = uuid.MustParse("6f6d6e69-6d65-5d6f-8279-7370656e6421")

// What a data point of a known metric adds to a spend point.
type spendField int

const (
	fieldCost spendField = iota
	fieldInput
	fieldOutput
	fieldCacheRead
	fieldCacheCreation
)

// claudeCodeTokenTypes and genAITokenTypes map the tools' token kinds.
var (
	claudeCodeTokenTypes = map[string]spendField{"input": fieldInput, "output": fieldOutput, "cacheRead": fieldCacheRead, "cacheCreation": fieldCacheCreation}
	genAITokenTypes      = map[string]spendField{"input": fieldInput, "output": fieldOutput}
)

// conversion is the work of one request: the points it makes, what it did
// to the cumulative series (to undo when the write fails), and the counts
// of what it ignored and rejected, by reason.
type conversion struct {
	series   *seriesCache
	now      time.Time
	points   []tsdb.SpendPoint
	undo     []seriesUndo
	ignored  map[string]int64
	rejected map[string]int64
}

// source is where a data point comes from: its resource and scope.
type source struct {
	toolID   string
	validID  bool
	resource string // canonical attributes
	scope    string
}

// numberPoint is what the conversion needs of a data point, of a sum or a
// histogram alike.
type numberPoint interface {
	GetAttributes() []*commonpb.KeyValue
	GetStartTimeUnixNano() uint64
	GetTimeUnixNano() uint64
	GetFlags() uint32
}

func (c *conversion) request(req *colmetricpb.ExportMetricsServiceRequest) {
	for _, rm := range req.GetResourceMetrics() {
		attrs := rm.GetResource().GetAttributes()
		src := source{toolID: stringAttr(attrs, "service.name"), resource: canonicalAttrs(attrs)}
		src.validID = tsdb.ValidToolID(src.toolID)
		for _, sm := range rm.GetScopeMetrics() {
			src.scope = strconv.Quote(sm.GetScope().GetName()) + " " + strconv.Quote(sm.GetScope().GetVersion())
			for _, m := range sm.GetMetrics() {
				c.metric(&src, m)
			}
		}
	}
}

func (c *conversion) metric(src *source, m *metricpb.Metric) {
	switch m.GetName() {
	case MetricClaudeCodeTokens, MetricClaudeCodeCost:
		s := m.GetSum()
		if s == nil {
			c.ignored["unexpected_type"] += dataPoints(m)
			return
		}
		for _, dp := range s.GetDataPoints() {
			field, model := fieldCost, stringAttr(dp.GetAttributes(), "model")
			if m.GetName() == MetricClaudeCodeTokens {
				f, ok := claudeCodeTokenTypes[stringAttr(dp.GetAttributes(), "type")]
				if !ok {
					c.ignored["unknown_token_type"]++
					continue
				}
				field = f
			}
			var v float64
			switch x := dp.GetValue().(type) {
			case *metricpb.NumberDataPoint_AsInt:
				v = float64(x.AsInt)
			case *metricpb.NumberDataPoint_AsDouble:
				v = x.AsDouble
			default:
				c.rejected["bad_value"]++
				continue
			}
			c.point(src, m.GetName(), s.GetAggregationTemporality(), dp, v, field, model)
		}
	case MetricGenAITokens:
		h := m.GetHistogram()
		if h == nil {
			c.ignored["unexpected_type"] += dataPoints(m)
			return
		}
		for _, dp := range h.GetDataPoints() {
			field, ok := genAITokenTypes[stringAttr(dp.GetAttributes(), "gen_ai.token.type")]
			if !ok {
				c.ignored["unknown_token_type"]++
				continue
			}
			if dp.Sum == nil && dp.GetFlags()&uint32(metricpb.DataPointFlags_DATA_POINT_FLAGS_NO_RECORDED_VALUE_MASK) == 0 {
				c.rejected["missing_sum"]++
				continue
			}
			model := stringAttr(dp.GetAttributes(), "gen_ai.request.model")
			if model == "" {
				model = stringAttr(dp.GetAttributes(), "gen_ai.response.model")
			}
			c.point(src, m.GetName(), h.GetAggregationTemporality(), dp, dp.GetSum(), field, model)
		}
	default:
		c.ignored["other_metric"] += dataPoints(m)
	}
}

// dataPoints answers the number of data points of m (1 for a metric
// without any, so that every ignored metric counts).
func dataPoints(m *metricpb.Metric) int64 {
	var n int
	switch {
	case m.GetGauge() != nil:
		n = len(m.GetGauge().GetDataPoints())
	case m.GetSum() != nil:
		n = len(m.GetSum().GetDataPoints())
	case m.GetHistogram() != nil:
		n = len(m.GetHistogram().GetDataPoints())
	case m.GetExponentialHistogram() != nil:
		n = len(m.GetExponentialHistogram().GetDataPoints())
	case m.GetSummary() != nil:
		n = len(m.GetSummary().GetDataPoints())
	}
	return int64(max(n, 1))
}

// point turns one data point of value v into a spend point, or counts why
// not.
func (c *conversion) point(src *source, metric string, temporality metricpb.AggregationTemporality, dp numberPoint, v float64, field spendField, model string) {
	if dp.GetFlags()&uint32(metricpb.DataPointFlags_DATA_POINT_FLAGS_NO_RECORDED_VALUE_MASK) != 0 {
		c.ignored["no_recorded_value"]++
		return
	}
	if !src.validID {
		c.rejected["bad_tool_id"]++
		return
	}
	if !tsdb.ValidModel(model) {
		c.rejected["bad_model"]++
		return
	}
	start, end := dp.GetStartTimeUnixNano(), dp.GetTimeUnixNano()
	if end == 0 || end > math.MaxInt64 || start > end {
		c.rejected["bad_time"]++
		return
	}
	at, err := tsdb.CheckCreatedAt(time.Unix(0, int64(end)), c.now)
	if err != nil {
		c.rejected["bad_time"]++
		return
	}
	if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 || v >= math.MaxInt64 {
		c.rejected["bad_value"]++
		return
	}
	series := derivedID(spendNamespace, "series", metric, src.resource, src.scope, canonicalAttrs(dp.GetAttributes()))
	delta := v
	switch temporality {
	case metricpb.AggregationTemporality_AGGREGATION_TEMPORALITY_DELTA:
	case metricpb.AggregationTemporality_AGGREGATION_TEMPORALITY_CUMULATIVE:
		var ignore string
		delta, ignore = c.series.delta(series, start, end, v, &c.undo)
		if ignore != "" {
			c.ignored[ignore]++
			return
		}
	default:
		c.rejected["bad_temporality"]++
		return
	}
	if delta == 0 {
		return // nothing spent: nothing to store
	}
	p := tsdb.SpendPoint{
		ID:     derivedID(spendNamespace, series.String(), strconv.FormatUint(start, 10), strconv.FormatUint(end, 10)),
		ToolID: src.toolID,
		Model:  model,
		Time:   at,
	}
	if id, ok := api.ParseUUID(stringAttr(dp.GetAttributes(), "session.id")); ok {
		p.SessionID = &id
	}
	n := int64(math.Round(delta))
	switch field {
	case fieldCost:
		p.CostUSD = delta
	case fieldInput:
		p.Tokens.Input = n
	case fieldOutput:
		p.Tokens.Output = n
	case fieldCacheRead:
		p.Tokens.CacheRead = n
	case fieldCacheCreation:
		p.Tokens.CacheCreation = n
	}
	if field != fieldCost && n == 0 {
		return
	}
	c.points = append(c.points, p)
}

// stringAttr answers the string value of the attribute key ("" when absent
// or not a string).
func stringAttr(attrs []*commonpb.KeyValue, key string) string {
	for _, kv := range attrs {
		if kv.GetKey() == key {
			return kv.GetValue().GetStringValue()
		}
	}
	return ""
}

// canonicalAttrs writes attributes as one string that is the same for the
// same set in any order: sorted by key, keys and values quoted (so that no
// two sets write alike, and no newline appears).
func canonicalAttrs(attrs []*commonpb.KeyValue) string {
	kvs := slices.Clone(attrs)
	slices.SortStableFunc(kvs, func(a, b *commonpb.KeyValue) int { return strings.Compare(a.GetKey(), b.GetKey()) })
	var b strings.Builder
	b.WriteByte('{')
	for i, kv := range kvs {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Quote(kv.GetKey()))
		b.WriteByte('=')
		canonicalValue(&b, kv.GetValue())
	}
	b.WriteByte('}')
	return b.String()
}

func canonicalValue(b *strings.Builder, v *commonpb.AnyValue) {
	switch x := v.GetValue().(type) {
	case *commonpb.AnyValue_StringValue:
		b.WriteString("s" + strconv.Quote(x.StringValue))
	case *commonpb.AnyValue_BoolValue:
		b.WriteString("b" + strconv.FormatBool(x.BoolValue))
	case *commonpb.AnyValue_IntValue:
		b.WriteString("i" + strconv.FormatInt(x.IntValue, 10))
	case *commonpb.AnyValue_DoubleValue:
		b.WriteString("d" + strconv.FormatFloat(x.DoubleValue, 'g', -1, 64))
	case *commonpb.AnyValue_BytesValue:
		b.WriteString("x" + hex.EncodeToString(x.BytesValue))
	case *commonpb.AnyValue_StringValueStrindex:
		b.WriteString("r" + strconv.FormatInt(int64(x.StringValueStrindex), 10))
	case *commonpb.AnyValue_ArrayValue:
		b.WriteByte('[')
		for i, e := range x.ArrayValue.GetValues() {
			if i > 0 {
				b.WriteByte(',')
			}
			canonicalValue(b, e)
		}
		b.WriteByte(']')
	case *commonpb.AnyValue_KvlistValue:
		b.WriteString(canonicalAttrs(x.KvlistValue.GetValues()))
	default:
		b.WriteByte('-')
	}
}
