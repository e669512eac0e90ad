package exporter

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"math"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/expfmt"
	colmetricpb "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	metricpb "go.opentelemetry.io/proto/otlp/metrics/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"

	"github.com/omnimemory/omnimemory-metrics/internal/realtools"
	"github.com/omnimemory/omnimemory-metrics/tsdb"
	"github.com/omnimemory/omnimemory-metrics/tsdb/storetest"
)

var (
	spendStarted = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	spendNow     = spendStarted.Add(time.Hour)
)

const claudeSession = "5f0e8c4e-1b7a-4c9e-9d41-6a2f3c8b7e10"

func newTestSpend(t *testing.T, w tsdb.SpendWriter, o SpendOptions) (*SpendIntake, *Metrics, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg, 0.015, 10)
	return NewSpend(w, m, o, spendStarted, func() time.Time { return spendNow }, slog.New(slog.DiscardHandler)), m, reg
}

// nanos answers the Unix nanoseconds of spendStarted + d.
func nanos(d time.Duration) uint64 { return uint64(spendStarted.Add(d).UnixNano()) }

func str(k, v string) *commonpb.KeyValue {
	return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: v}}}
}

// request wraps metrics in one resource of service.name toolID (none when
// ""), as Claude Code sends them.
func request(toolID string, metrics ...*metricpb.Metric) *colmetricpb.ExportMetricsServiceRequest {
	var attrs []*commonpb.KeyValue
	if toolID != "" {
		attrs = append(attrs, str("service.name", toolID), str("service.version", "1.0.0"))
	}
	return &colmetricpb.ExportMetricsServiceRequest{ResourceMetrics: []*metricpb.ResourceMetrics{{
		Resource:     &resourcepb.Resource{Attributes: attrs},
		ScopeMetrics: []*metricpb.ScopeMetrics{{Scope: &commonpb.InstrumentationScope{Name: "com.anthropic.claude_code"}, Metrics: metrics}},
	}}}
}

func sumOf(name string, temporality metricpb.AggregationTemporality, points ...*metricpb.NumberDataPoint) *metricpb.Metric {
	return &metricpb.Metric{Name: name, Data: &metricpb.Metric_Sum{Sum: &metricpb.Sum{
		AggregationTemporality: temporality, IsMonotonic: true, DataPoints: points}}}
}

const (
	delta      = metricpb.AggregationTemporality_AGGREGATION_TEMPORALITY_DELTA
	cumulative = metricpb.AggregationTemporality_AGGREGATION_TEMPORALITY_CUMULATIVE
)

// tokenPoint is a Claude Code token point of kind over (start, end].
func tokenPoint(kind string, start, end time.Duration, v float64) *metricpb.NumberDataPoint {
	return &metricpb.NumberDataPoint{
		Attributes: []*commonpb.KeyValue{str("type", kind), str("model", "claude-sonnet-4-5"), str("session.id", claudeSession),
			str("organization.id", "org-1"), str("user.account_uuid", "acct-1")},
		StartTimeUnixNano: nanos(start), TimeUnixNano: nanos(end),
		Value: &metricpb.NumberDataPoint_AsDouble{AsDouble: v},
	}
}

func costPoint(start, end time.Duration, v float64) *metricpb.NumberDataPoint {
	return &metricpb.NumberDataPoint{
		Attributes:        []*commonpb.KeyValue{str("model", "claude-sonnet-4-5"), str("session.id", claudeSession)},
		StartTimeUnixNano: nanos(start), TimeUnixNano: nanos(end),
		Value: &metricpb.NumberDataPoint_AsDouble{AsDouble: v},
	}
}

func mustTrack(t *testing.T, s *SpendIntake, req *colmetricpb.ExportMetricsServiceRequest) SpendResult {
	t.Helper()
	res, err := s.TrackSpend(context.Background(), req)
	if err != nil {
		t.Fatalf("TrackSpend: %v", err)
	}
	return res
}

// TestSpendDeltaPoints: Claude Code's default export (delta counters of
// tokens by kind and of dollars) gives one point per data point, with the
// tool, model, session and time; a retried export gives the same ids, is
// stored once, and counted once in the Prometheus metrics.
func TestSpendDeltaPoints(t *testing.T) {
	mem := &storetest.SpendMemory{}
	s, m, _ := newTestSpend(t, mem, SpendOptions{})
	req := request("claude-code",
		sumOf(MetricClaudeCodeTokens, delta,
			tokenPoint("input", 0, time.Minute, 1200), tokenPoint("output", 0, time.Minute, 300),
			tokenPoint("cacheRead", 0, time.Minute, 5000), tokenPoint("cacheCreation", 0, time.Minute, 700)),
		sumOf(MetricClaudeCodeCost, delta, costPoint(0, time.Minute, 0.0421)))
	res := mustTrack(t, s, req)
	if res.Stored != 5 || res.Duplicates != 0 || res.Rejected != 0 || res.Ignored != 0 {
		t.Fatalf("result %+v, want 5 stored", res)
	}
	tokens, cost := mem.Totals()
	if want := (tsdb.Tokens{Input: 1200, Output: 300, CacheRead: 5000, CacheCreation: 700}); tokens != want || cost != 0.0421 {
		t.Errorf("stored %+v and $%v, want %+v and $0.0421", tokens, cost, want)
	}
	for _, p := range mem.Stored() {
		if p.ToolID != "claude-code" || p.Model != "claude-sonnet-4-5" || p.SessionID == nil || p.SessionID.String() != claudeSession ||
			!p.Time.Equal(spendStarted.Add(time.Minute)) || p.Time.Location() != time.UTC {
			t.Errorf("point %+v", p)
		}
	}
	again := mustTrack(t, s, req)
	if again.Stored != 0 || again.Duplicates != 5 {
		t.Errorf("retried export: %+v, want 5 duplicates", again)
	}
	if got := testutil.ToFloat64(m.llmTokens.WithLabelValues("claude-code", "claude-sonnet-4-5", "cache_read")); got != 5000 {
		t.Errorf("omnimemory_llm_tokens_total{type=cache_read} = %v, want 5000 (counted once)", got)
	}
	if got := testutil.ToFloat64(m.llmCost.WithLabelValues("claude-code", "claude-sonnet-4-5")); got != 0.0421 {
		t.Errorf("omnimemory_llm_cost_usd_total = %v, want 0.0421", got)
	}
}

// TestSpendCumulativeSeries: cumulative points become the differences
// between them; a new start time or a value going down is a reset (the
// whole value); a retried export gives the same point and leaves the state
// alone; an older point is ignored.
func TestSpendCumulativeSeries(t *testing.T) {
	mem := &storetest.SpendMemory{}
	s, m, _ := newTestSpend(t, mem, SpendOptions{})
	start := 10 * time.Second // after the process started: counted whole
	send := func(st, end time.Duration, v float64) SpendResult {
		return mustTrack(t, s, request("claude-code", sumOf(MetricClaudeCodeTokens, cumulative, tokenPoint("input", st, end, v))))
	}
	input := func() int64 { tok, _ := mem.Totals(); return tok.Input }

	steps := []struct {
		what       string
		start, end time.Duration
		v          float64
		total      int64 // stored input tokens after the step
	}{
		{"first point, started after the process", start, time.Minute, 100, 100},
		{"grows", start, 2 * time.Minute, 250, 250},
		{"retried", start, 2 * time.Minute, 250, 250},
		{"grows after the retry", start, 3 * time.Minute, 300, 300},
		{"older point", start, 90 * time.Second, 120, 300},
		{"reset: value goes down", start, 4 * time.Minute, 40, 340},
		{"grows after the reset", start, 5 * time.Minute, 60, 360},
		{"reset: new start", 5 * time.Minute, 6 * time.Minute, 25, 385},
		{"a point of the old start", start, 7 * time.Minute, 90, 385},
		{"grows after the new start", 5 * time.Minute, 7 * time.Minute, 30, 390},
	}
	for _, st := range steps {
		send(st.start, st.end, st.v)
		if got := input(); got != st.total {
			t.Fatalf("%s: %d input tokens stored, want %d", st.what, got, st.total)
		}
	}
	if got := testutil.ToFloat64(m.otlpIgnored.WithLabelValues("out_of_order")); got != 2 {
		t.Errorf("out_of_order ignored %v, want 2", got)
	}
	if got := testutil.ToFloat64(m.llmTokens.WithLabelValues("claude-code", "claude-sonnet-4-5", "input")); got != 390 {
		t.Errorf("omnimemory_llm_tokens_total{type=input} = %v, want 390", got)
	}
}

// TestSpendCumulativeFirstPoint: as the collector's cumulativetodelta does,
// a series first seen whose start is before the process started only sets
// the baseline; one without a start time too.
func TestSpendCumulativeFirstPoint(t *testing.T) {
	for _, start := range []time.Duration{-time.Hour, -1} {
		mem := &storetest.SpendMemory{}
		s, _, _ := newTestSpend(t, mem, SpendOptions{})
		res := mustTrack(t, s, request("claude-code", sumOf(MetricClaudeCodeCost, cumulative, costPoint(start, time.Minute, 12.5))))
		if res.Stored != 0 {
			t.Errorf("start %v: first point stored %+v, want a baseline only", start, res)
		}
		mustTrack(t, s, request("claude-code", sumOf(MetricClaudeCodeCost, cumulative, costPoint(start, 2*time.Minute, 13.25))))
		if _, cost := mem.Totals(); cost != 0.75 {
			t.Errorf("start %v: $%v stored, want 0.75 (the growth after the baseline)", start, cost)
		}
	}
	// Without a start time at all.
	mem := &storetest.SpendMemory{}
	s, _, _ := newTestSpend(t, mem, SpendOptions{})
	p := costPoint(0, time.Minute, 3)
	p.StartTimeUnixNano = 0
	if res := mustTrack(t, s, request("claude-code", sumOf(MetricClaudeCodeCost, cumulative, p))); res.Stored != 0 {
		t.Errorf("a first point without a start was stored: %+v", res)
	}
}

// TestSpendFailedWriteKeepsNothing: when the store fails, the cumulative
// series do not move, so the retry gives the same delta and id.
func TestSpendFailedWriteKeepsNothing(t *testing.T) {
	mem := &storetest.SpendMemory{}
	s, _, _ := newTestSpend(t, mem, SpendOptions{})
	mustTrack(t, s, request("claude-code", sumOf(MetricClaudeCodeTokens, cumulative, tokenPoint("output", time.Second, time.Minute, 10))))
	req := request("claude-code", sumOf(MetricClaudeCodeTokens, cumulative, tokenPoint("output", time.Second, 2*time.Minute, 25)))
	mem.SetFail(tsdb.ErrUnavailable)
	if _, err := s.TrackSpend(context.Background(), req); !errors.Is(err, tsdb.ErrUnavailable) {
		t.Fatalf("failing store: %v, want ErrUnavailable", err)
	}
	mem.SetFail(nil)
	mustTrack(t, s, req)
	mustTrack(t, s, request("claude-code", sumOf(MetricClaudeCodeTokens, cumulative, tokenPoint("output", time.Second, 3*time.Minute, 26))))
	if tok, _ := mem.Totals(); tok.Output != 26 {
		t.Errorf("%d output tokens stored, want 26", tok.Output)
	}
}

// TestSpendGenAIHistogram: the GenAI token histogram counts by its sum.
func TestSpendGenAIHistogram(t *testing.T) {
	mem := &storetest.SpendMemory{}
	s, _, _ := newTestSpend(t, mem, SpendOptions{})
	hist := func(kind string, temporality metricpb.AggregationTemporality, end time.Duration, sum float64) *metricpb.Metric {
		return &metricpb.Metric{Name: MetricGenAITokens, Unit: "{token}", Data: &metricpb.Metric_Histogram{Histogram: &metricpb.Histogram{
			AggregationTemporality: temporality,
			DataPoints: []*metricpb.HistogramDataPoint{{
				Attributes:        []*commonpb.KeyValue{str("gen_ai.token.type", kind), str("gen_ai.request.model", "gpt-4o"), str("gen_ai.operation.name", "chat")},
				StartTimeUnixNano: nanos(time.Second), TimeUnixNano: nanos(end), Count: 3, Sum: &sum,
				BucketCounts: []uint64{1, 2}, ExplicitBounds: []float64{100},
			}},
		}}}
	}
	mustTrack(t, s, request("my-agent", hist("input", delta, time.Minute, 420), hist("output", cumulative, time.Minute, 80)))
	mustTrack(t, s, request("my-agent", hist("output", cumulative, 2*time.Minute, 200)))
	tok, _ := mem.Totals()
	if want := (tsdb.Tokens{Input: 420, Output: 200}); tok != want {
		t.Errorf("stored %+v, want %+v", tok, want)
	}
	for _, p := range mem.Stored() {
		if p.ToolID != "my-agent" || p.Model != "gpt-4o" || p.SessionID != nil {
			t.Errorf("point %+v", p)
		}
	}
}

// TestSpendIgnoresAndRejects: other metrics and other kinds are ignored,
// malformed points rejected, each counted by reason, and the good points of
// the same request stored.
func TestSpendIgnoresAndRejects(t *testing.T) {
	mem := &storetest.SpendMemory{}
	s, m, reg := newTestSpend(t, mem, SpendOptions{})
	gauge := &metricpb.Metric{Name: "claude_code.session.count", Data: &metricpb.Metric_Gauge{Gauge: &metricpb.Gauge{
		DataPoints: []*metricpb.NumberDataPoint{costPoint(0, time.Minute, 1), costPoint(0, time.Minute, 2)}}}}
	costAsGauge := &metricpb.Metric{Name: MetricClaudeCodeCost, Data: &metricpb.Metric_Gauge{Gauge: &metricpb.Gauge{
		DataPoints: []*metricpb.NumberDataPoint{costPoint(0, time.Minute, 1)}}}}
	negative := tokenPoint("input", 0, time.Minute, -5)
	nan := tokenPoint("output", 0, time.Minute, math.NaN())
	noTime := tokenPoint("input", 0, 0, 5)
	noTime.TimeUnixNano = 0
	future := tokenPoint("input", 0, 2*time.Hour, 5) // an hour past now
	backwards := tokenPoint("input", 2*time.Minute, time.Minute, 5)
	longModel := tokenPoint("input", 0, time.Minute, 5)
	longModel.Attributes[1] = str("model", strings.Repeat("m", 201))
	noValue := tokenPoint("input", 0, time.Minute, 5)
	noValue.Value = nil
	flagged := tokenPoint("input", 0, time.Minute, 5)
	flagged.Flags = uint32(metricpb.DataPointFlags_DATA_POINT_FLAGS_NO_RECORDED_VALUE_MASK)
	noModel := costPoint(0, time.Minute, 0.5)
	noModel.Attributes = nil
	req := request("claude-code",
		gauge, costAsGauge,
		sumOf(MetricClaudeCodeTokens, delta, tokenPoint("input", 0, time.Minute, 7), tokenPoint("reasoning", 0, time.Minute, 3),
			negative, nan, noTime, future, backwards, longModel, noValue, flagged),
		sumOf(MetricClaudeCodeCost, metricpb.AggregationTemporality_AGGREGATION_TEMPORALITY_UNSPECIFIED, costPoint(0, time.Minute, 1)),
		sumOf(MetricClaudeCodeCost, delta, noModel),
		&metricpb.Metric{Name: MetricGenAITokens, Data: &metricpb.Metric_Histogram{Histogram: &metricpb.Histogram{
			AggregationTemporality: delta,
			DataPoints: []*metricpb.HistogramDataPoint{{Attributes: []*commonpb.KeyValue{str("gen_ai.token.type", "input")},
				StartTimeUnixNano: nanos(0), TimeUnixNano: nanos(time.Minute), Count: 1}}}}},
	)
	// A resource without a service.name: its points are rejected.
	req.ResourceMetrics = append(req.ResourceMetrics, request("", sumOf(MetricClaudeCodeCost, delta, costPoint(0, time.Minute, 9))).ResourceMetrics...)
	res := mustTrack(t, s, req)
	if res.Stored != 2 {
		t.Errorf("stored %d, want the 2 good points", res.Stored)
	}
	tok, cost := mem.Totals()
	if tok.Input != 7 || cost != 0.5 {
		t.Errorf("stored %+v and $%v, want 7 input tokens and $0.5", tok, cost)
	}
	if p := mem.Stored(); len(p) == 2 && p[1].Model != "" {
		t.Errorf("a cost without a model stored with model %q", p[1].Model)
	}
	wantIgnored := map[string]float64{"other_metric": 2, "unexpected_type": 1, "unknown_token_type": 1, "no_recorded_value": 1}
	wantRejected := map[string]float64{"bad_value": 3, "bad_time": 3, "bad_model": 1, "bad_temporality": 1, "missing_sum": 1, "bad_tool_id": 1}
	for reason, n := range wantIgnored {
		if got := testutil.ToFloat64(m.otlpIgnored.WithLabelValues(reason)); got != n {
			t.Errorf("ignored %s: %v, want %v", reason, got, n)
		}
	}
	for reason, n := range wantRejected {
		if got := testutil.ToFloat64(m.otlpRejected.WithLabelValues(reason)); got != n {
			t.Errorf("rejected %s: %v, want %v", reason, got, n)
		}
	}
	if res.Ignored != 5 || res.Rejected != 10 {
		t.Errorf("result %+v, want 5 ignored and 10 rejected", res)
	}
	if want := "bad_model: 1, bad_temporality: 1, bad_time: 3, bad_tool_id: 1, bad_value: 3, missing_sum: 1"; res.Reasons != want {
		t.Errorf("reasons %q, want %q", res.Reasons, want)
	}
	if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %v", err, problems)
	}
}

// TestSpendMetricsPassPromtool: the exposition of the spend metrics, every
// one of them with a value, passes promtool check metrics.
func TestSpendMetricsPassPromtool(t *testing.T) {
	promtool := realtools.Require(t, "promtool")
	mem := &storetest.SpendMemory{}
	s, _, reg := newTestSpend(t, mem, SpendOptions{MaxSeries: 1})
	mustTrack(t, s, request("claude-code",
		sumOf(MetricClaudeCodeTokens, delta, tokenPoint("input", 0, time.Minute, 7), tokenPoint("reasoning", 0, time.Minute, 3),
			tokenPoint("output", 0, time.Minute, -1)),
		sumOf(MetricClaudeCodeCost, cumulative, costPoint(time.Second, time.Minute, 0.5)),
		sumOf(MetricClaudeCodeTokens, cumulative, tokenPoint("output", time.Second, time.Minute, 4))))
	var buf bytes.Buffer
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range families {
		if _, err := expfmt.MetricFamilyToText(&buf, mf); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"omnimemory_llm_tokens_total", "omnimemory_llm_cost_usd_total", "omnimemory_otlp_data_points_ignored_total",
		"omnimemory_otlp_data_points_rejected_total", "omnimemory_otlp_cumulative_series", "omnimemory_otlp_cumulative_series_evicted_total"} {
		if !bytes.Contains(buf.Bytes(), []byte("\n"+name+"{")) && !bytes.Contains(buf.Bytes(), []byte("\n"+name+" ")) {
			t.Errorf("exposition lacks a sample of %s", name)
		}
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = &buf
	if out, err := cmd.CombinedOutput(); err != nil || len(bytes.TrimSpace(out)) != 0 {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}

// TestSpendSeriesAreBounded: past MaxSeries the least recently seen series
// is forgotten and counted; when it comes back it is not counted twice.
func TestSpendSeriesAreBounded(t *testing.T) {
	mem := &storetest.SpendMemory{}
	s, m, _ := newTestSpend(t, mem, SpendOptions{MaxSeries: 2})
	send := func(kind string, end time.Duration, v float64) {
		mustTrack(t, s, request("claude-code", sumOf(MetricClaudeCodeTokens, cumulative, tokenPoint(kind, time.Second, end, v))))
	}
	send("input", time.Minute, 10)
	send("output", time.Minute, 20)
	send("cacheRead", time.Minute, 30) // forgets input
	if got := testutil.ToFloat64(m.otlpEvictions); got != 1 {
		t.Errorf("evictions %v, want 1", got)
	}
	if got := testutil.ToFloat64(m.otlpSeries); got != 2 {
		t.Errorf("series %v, want 2", got)
	}
	send("input", 2*time.Minute, 15) // seen again: a baseline, not 15 more
	send("input", 3*time.Minute, 18)
	if tok, _ := mem.Totals(); tok.Input != 13 {
		t.Errorf("%d input tokens stored, want 13 (10, then 3 after the baseline)", tok.Input)
	}
}

// TestSpendWriteIsBounded: a store that does not answer fails the request
// with ErrUnavailable at the write timeout.
func TestSpendWriteIsBounded(t *testing.T) {
	s, _, _ := newTestSpend(t, &storetest.SpendMemory{Stall: true}, SpendOptions{WriteTimeout: 50 * time.Millisecond})
	start := time.Now()
	_, err := s.TrackSpend(context.Background(), request("claude-code", sumOf(MetricClaudeCodeCost, delta, costPoint(0, time.Minute, 1))))
	if !errors.Is(err, tsdb.ErrUnavailable) || time.Since(start) > 5*time.Second {
		t.Errorf("stalled store: %v after %v, want ErrUnavailable at the timeout", err, time.Since(start))
	}
}
