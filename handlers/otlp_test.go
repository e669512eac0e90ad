package handlers_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	otelmetric "go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/sdk/resource"
	colmetricpb "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	metricpb "go.opentelemetry.io/proto/otlp/metrics/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/omnimemory/omnimemory-metrics/client/api"
	"github.com/omnimemory/omnimemory-metrics/tsdb"
	"github.com/omnimemory/omnimemory-metrics/tsdb/storetest"
)

// spendingStore is a store that keeps spend points in memory.
type spendingStore struct {
	tsdb.Store
	*storetest.SpendMemory
}

// WriteSpend goes to the memory rather than the store.
func (s spendingStore) WriteSpend(ctx context.Context, points []tsdb.SpendPoint) error {
	return s.SpendMemory.WriteSpend(ctx, points)
}

const claudeSessionID = "5f0e8c4e-1b7a-4c9e-9d41-6a2f3c8b7e10"

func kv(k, v string) *commonpb.KeyValue {
	return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: v}}}
}

// claudeRequest is an export as Claude Code sends it by default: delta
// sums of tokens by type and of dollars, ended a minute ago.
func claudeRequest(inputTokens int64, cost float64) *colmetricpb.ExportMetricsServiceRequest {
	end := time.Now().Add(-time.Minute)
	start, at := uint64(end.Add(-time.Minute).UnixNano()), uint64(end.UnixNano())
	attrs := func(extra ...*commonpb.KeyValue) []*commonpb.KeyValue {
		return append([]*commonpb.KeyValue{kv("model", "claude-sonnet-4-5"), kv("session.id", claudeSessionID),
			kv("organization.id", "org"), kv("user.account_uuid", "acct")}, extra...)
	}
	sum := func(name string, dps ...*metricpb.NumberDataPoint) *metricpb.Metric {
		return &metricpb.Metric{Name: name, Data: &metricpb.Metric_Sum{Sum: &metricpb.Sum{
			AggregationTemporality: metricpb.AggregationTemporality_AGGREGATION_TEMPORALITY_DELTA, IsMonotonic: true, DataPoints: dps}}}
	}
	return &colmetricpb.ExportMetricsServiceRequest{ResourceMetrics: []*metricpb.ResourceMetrics{{
		Resource: &resourcepb.Resource{Attributes: []*commonpb.KeyValue{kv("service.name", "claude-code")}},
		ScopeMetrics: []*metricpb.ScopeMetrics{{Metrics: []*metricpb.Metric{
			sum("claude_code.token.usage", &metricpb.NumberDataPoint{Attributes: attrs(kv("type", "input")),
				StartTimeUnixNano: start, TimeUnixNano: at, Value: &metricpb.NumberDataPoint_AsInt{AsInt: inputTokens}}),
			sum("claude_code.cost.usage", &metricpb.NumberDataPoint{Attributes: attrs(),
				StartTimeUnixNano: start, TimeUnixNano: at, Value: &metricpb.NumberDataPoint_AsDouble{AsDouble: cost}}),
		}}},
	}}}
}

func marshal(t *testing.T, m proto.Message) []byte {
	t.Helper()
	data, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func gzipped(t *testing.T, data []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

const protobufType = "application/x-protobuf"

// TestOTLPMetricsProtobuf: a protobuf export, plain or gzip-compressed, is
// stored and answered with an empty ExportMetricsServiceResponse in
// protobuf; a retry is stored once.
func TestOTLPMetricsProtobuf(t *testing.T) {
	rec := &storetest.SpendMemory{}
	s := newService(t, serviceOpts{spend: rec})
	body := marshal(t, claudeRequest(1200, 0.25))
	for _, enc := range []string{"", "gzip"} {
		sent := body
		if enc == "gzip" {
			sent = gzipped(t, body)
		}
		r := s.do("POST", api.PathOTLPMetrics, sent, "Content-Type", protobufType, "Content-Encoding", enc)
		if r.status != 200 || r.header.Get("Content-Type") != protobufType {
			t.Fatalf("encoding %q: %d %s: %s", enc, r.status, r.header.Get("Content-Type"), r.body)
		}
		var resp colmetricpb.ExportMetricsServiceResponse
		if err := proto.Unmarshal(r.body, &resp); err != nil || resp.PartialSuccess != nil {
			t.Errorf("encoding %q: answer %v (%v), want an empty response", enc, &resp, err)
		}
	}
	tok, cost := rec.Totals()
	if tok.Input != 1200 || cost != 0.25 || len(rec.Stored()) != 2 {
		t.Errorf("stored %d points, %+v, $%v; want 2 points, 1200 input tokens, $0.25 (the retry stored once)", len(rec.Stored()), tok, cost)
	}
	for _, p := range rec.Stored() {
		if p.ToolID != "claude-code" || p.Model != "claude-sonnet-4-5" || p.SessionID == nil || p.SessionID.String() != claudeSessionID {
			t.Errorf("point %+v", p)
		}
	}
}

// otlpJSON is an export written as the OpenTelemetry specification's JSON
// examples write it: lowerCamelCase names, 64-bit integers as strings, the
// temporality by number, hex ids in an exemplar; its second point is
// negative (rejected), and a gauge is ignored.
const otlpJSON = `{
  "resourceMetrics": [{
    "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "claude-code"}}]},
    "scopeMetrics": [{
      "scope": {"name": "com.anthropic.claude_code", "version": "2.0.0"},
      "metrics": [{
        "name": "claude_code.token.usage",
        "unit": "tokens",
        "sum": {
          "aggregationTemporality": 1,
          "isMonotonic": true,
          "dataPoints": [{
            "attributes": [
              {"key": "type", "value": {"stringValue": "output"}},
              {"key": "model", "value": {"stringValue": "claude-opus-4-1"}},
              {"key": "session.id", "value": {"stringValue": "` + claudeSessionID + `"}}
            ],
            "startTimeUnixNano": "START",
            "timeUnixNano": "END",
            "asInt": "345",
            "exemplars": [{"timeUnixNano": "END", "asInt": "1", "spanId": "eee19b7ec3c1b174", "traceId": "5b8efff798038103d269b633813fc60c"}]
          }, {
            "attributes": [{"key": "type", "value": {"stringValue": "input"}}],
            "startTimeUnixNano": "START",
            "timeUnixNano": "END",
            "asDouble": -3
          }]
        }
      }, {
        "name": "claude_code.session.count",
        "gauge": {"dataPoints": [{"timeUnixNano": "END", "asInt": "1"}]}
      }]
    }]
  }]
}`

func otlpJSONBody() string {
	end := time.Now().Add(-time.Minute)
	return strings.NewReplacer("START", strconv.FormatInt(end.Add(-time.Minute).UnixNano(), 10),
		"END", strconv.FormatInt(end.UnixNano(), 10)).Replace(otlpJSON)
}

// TestOTLPMetricsJSON: an OTLP JSON export is stored, and the answer is an
// ExportMetricsServiceResponse in JSON naming the rejected point.
func TestOTLPMetricsJSON(t *testing.T) {
	rec := &storetest.SpendMemory{}
	s := newService(t, serviceOpts{spend: rec})
	r := s.do("POST", api.PathOTLPMetrics, otlpJSONBody(), "Content-Type", "application/json; charset=utf-8")
	if r.status != 200 || r.header.Get("Content-Type") != "application/json" {
		t.Fatalf("%d %s: %s", r.status, r.header.Get("Content-Type"), r.body)
	}
	var resp colmetricpb.ExportMetricsServiceResponse
	if err := protojson.Unmarshal(r.body, &resp); err != nil {
		t.Fatalf("answer %s: %v", r.body, err)
	}
	if ps := resp.GetPartialSuccess(); ps.GetRejectedDataPoints() != 1 || !strings.Contains(ps.GetErrorMessage(), "bad_value") {
		t.Errorf("partial success %v, want 1 rejected for bad_value", ps)
	}
	if !bytes.Contains(r.body, []byte(`"rejectedDataPoints":"1"`)) {
		t.Errorf("answer %s: want rejectedDataPoints as OTLP JSON writes an int64", r.body)
	}
	points := rec.Stored()
	if len(points) != 1 || points[0].Tokens.Output != 345 || points[0].Model != "claude-opus-4-1" {
		t.Errorf("stored %+v, want one point of 345 output tokens", points)
	}
}

// TestOTLPMetricsErrors: the answers to what cannot be taken.
func TestOTLPMetricsErrors(t *testing.T) {
	rec := &storetest.SpendMemory{}
	s := newService(t, serviceOpts{spend: rec})
	valid := marshal(t, claudeRequest(10, 0.01))
	bomb := gzipped(t, make([]byte, api.MaxOTLPBodyBytes+1))
	statusOf := func(t *testing.T, r response) *status.Status {
		t.Helper()
		var st status.Status
		if r.header.Get("Content-Type") != protobufType {
			t.Fatalf("answer of type %q, want a protobuf Status: %s", r.header.Get("Content-Type"), r.body)
		}
		if err := proto.Unmarshal(r.body, &st); err != nil || st.Message == "" {
			t.Fatalf("answer is not a google.rpc.Status with a message: %v %q", err, r.body)
		}
		return &st
	}
	for _, c := range []struct {
		name    string
		svc     *service
		body    any
		headers []string
		status  int
		grpc    int32 // the Status code of a protobuf answer; 0: a JSON detail
	}{
		{"protobuf that does not decode", s, "\xff\xff\xff", []string{"Content-Type", protobufType}, 400, 3},
		{"JSON that does not decode", s, `{"resourceMetrics": 5}`, []string{"Content-Type", "application/json"}, 400, 0},
		{"corrupt gzip", s, "not gzip", []string{"Content-Type", protobufType, "Content-Encoding", "gzip"}, 400, 3},
		{"gzip bomb", s, bomb, []string{"Content-Type", protobufType, "Content-Encoding", "gzip"}, 413, 8},
		{"body over the limit", s, make([]byte, api.MaxOTLPBodyBytes+1), []string{"Content-Type", protobufType}, 413, 0},
		{"another content type", s, valid, []string{"Content-Type", "text/plain"}, 415, 0},
		{"no content type", s, valid, []string{"Content-Type", ""}, 415, 0},
		{"another encoding", s, valid, []string{"Content-Type", protobufType, "Content-Encoding", "br"}, 415, 3},
	} {
		r := c.svc.do("POST", api.PathOTLPMetrics, c.body, c.headers...)
		if r.status != c.status {
			t.Errorf("%s: %d, want %d: %.200s", c.name, r.status, c.status, r.body)
			continue
		}
		if c.grpc != 0 {
			if st := statusOf(t, r); st.Code != c.grpc {
				t.Errorf("%s: Status code %d, want %d", c.name, st.Code, c.grpc)
			}
		} else if d, _ := r.json(t)["detail"].(string); d == "" {
			t.Errorf("%s: no detail in %s", c.name, r.body)
		}
	}
	if pts := rec.Stored(); len(pts) != 0 {
		t.Errorf("refused requests stored %d points", len(pts))
	}

	// The store down: 503 with Retry-After, and nothing kept of the
	// cumulative series' progress.
	rec.SetFail(tsdb.ErrUnavailable)
	r := s.do("POST", api.PathOTLPMetrics, valid, "Content-Type", protobufType)
	if r.status != 503 || r.header.Get("Retry-After") == "" || statusOf(t, r).Code != 14 {
		t.Errorf("store down: %d Retry-After %q", r.status, r.header.Get("Retry-After"))
	}
	r = s.do("POST", api.PathOTLPMetrics, otlpJSONBody(), "Content-Type", "application/json")
	if r.status != 503 || r.header.Get("Retry-After") == "" || r.json(t)["detail"] == nil {
		t.Errorf("store down, JSON: %d Retry-After %q %s", r.status, r.header.Get("Retry-After"), r.body)
	}
}

// TestOTLPMetricsNeedTheToken: the bearer token guards the route.
func TestOTLPMetricsNeedTheToken(t *testing.T) {
	s := newService(t, serviceOpts{spend: &storetest.SpendMemory{}, token: "t0ken"})
	body := marshal(t, claudeRequest(1, 0))
	if r := s.do("POST", api.PathOTLPMetrics, body, "Content-Type", protobufType); r.status != 401 {
		t.Errorf("without a token: %d", r.status)
	}
	if r := s.do("POST", api.PathOTLPMetrics, body, "Content-Type", protobufType, "Authorization", "Bearer t0ken"); r.status != 200 {
		t.Errorf("with the token: %d %s", r.status, r.body)
	}
}

// TestOTLPMetricsFromTheOpenTelemetrySDK: the OpenTelemetry Go SDK and its
// OTLP/HTTP exporter, configured as Claude Code is (its instruments, units,
// attributes and resource), export to the real handlers; what is stored is
// what the SDK recorded, in delta temporality (Claude Code's default) and
// in cumulative (two collections: the second stores the difference).
func TestOTLPMetricsFromTheOpenTelemetrySDK(t *testing.T) {
	for _, temporality := range []metricdata.Temporality{metricdata.DeltaTemporality, metricdata.CumulativeTemporality} {
		t.Run(temporality.String(), func(t *testing.T) {
			rec := &storetest.SpendMemory{}
			s := newService(t, serviceOpts{spend: rec, token: "t0ken"})
			ctx := context.Background()
			opts := []otlpmetrichttp.Option{
				otlpmetrichttp.WithEndpointURL(s.srv.URL + api.PathOTLPMetrics),
				otlpmetrichttp.WithHeaders(map[string]string{"Authorization": "Bearer t0ken"}),
				otlpmetrichttp.WithTemporalitySelector(func(sdkmetric.InstrumentKind) metricdata.Temporality { return temporality }),
				otlpmetrichttp.WithRetry(otlpmetrichttp.RetryConfig{Enabled: false}),
			}
			if temporality == metricdata.CumulativeTemporality {
				opts = append(opts, otlpmetrichttp.WithCompression(otlpmetrichttp.GzipCompression))
			}
			exp, err := otlpmetrichttp.New(ctx, opts...)
			if err != nil {
				t.Fatal(err)
			}
			provider := sdkmetric.NewMeterProvider(
				sdkmetric.WithResource(resource.NewSchemaless(attribute.String("service.name", "claude-code"), attribute.String("service.version", "2.0.0"))),
				sdkmetric.WithReader(sdkmetric.NewPeriodicReader(exp, sdkmetric.WithInterval(time.Hour))))
			t.Cleanup(func() { _ = provider.Shutdown(context.Background()) })
			meter := provider.Meter("com.anthropic.claude_code")
			tokens, err := meter.Float64Counter("claude_code.token.usage", otelmetric.WithUnit("tokens"), otelmetric.WithDescription("Number of tokens used"))
			if err != nil {
				t.Fatal(err)
			}
			cost, err := meter.Float64Counter("claude_code.cost.usage", otelmetric.WithUnit("USD"), otelmetric.WithDescription("Cost of the Claude Code session"))
			if err != nil {
				t.Fatal(err)
			}
			genai, err := meter.Int64Histogram("gen_ai.client.token.usage", otelmetric.WithUnit("{token}"))
			if err != nil {
				t.Fatal(err)
			}
			lines, err := meter.Int64Counter("claude_code.lines_of_code.count") // not spend: ignored
			if err != nil {
				t.Fatal(err)
			}
			common := []attribute.KeyValue{attribute.String("session.id", claudeSessionID), attribute.String("organization.id", "org-1"),
				attribute.String("user.account_uuid", "acct-1"), attribute.String("model", "claude-sonnet-4-5")}
			record := func(input, output, cacheRead, cacheCreation, dollars float64, genIn int64) {
				for kind, v := range map[string]float64{"input": input, "output": output, "cacheRead": cacheRead, "cacheCreation": cacheCreation} {
					tokens.Add(ctx, v, otelmetric.WithAttributes(append(common, attribute.String("type", kind))...))
				}
				cost.Add(ctx, dollars, otelmetric.WithAttributes(common...))
				genai.Record(ctx, genIn, otelmetric.WithAttributes(attribute.String("gen_ai.token.type", "input"), attribute.String("gen_ai.request.model", "gpt-4o")))
				lines.Add(ctx, 3, otelmetric.WithAttributes(attribute.String("type", "added")))
			}
			record(1000, 200, 5000, 300, 0.125, 40)
			if err := provider.ForceFlush(ctx); err != nil {
				t.Fatalf("first export: %v", err)
			}
			first, _ := rec.Totals()
			record(500, 100, 2500, 0, 0.0625, 2)
			if err := provider.ForceFlush(ctx); err != nil {
				t.Fatalf("second export: %v", err)
			}
			tok, dollars := rec.Totals()
			if want := (tsdb.Tokens{Input: 1000 + 40, Output: 200, CacheRead: 5000, CacheCreation: 300}); first != want {
				t.Errorf("after the first export: %+v, want %+v", first, want)
			}
			if want := (tsdb.Tokens{Input: 1500 + 42, Output: 300, CacheRead: 7500, CacheCreation: 300}); tok != want {
				t.Errorf("after the second export: %+v, want %+v", tok, want)
			}
			if dollars != 0.1875 {
				t.Errorf("$%v stored, want 0.1875", dollars)
			}
			for _, p := range rec.Stored() {
				if p.ToolID != "claude-code" || (p.Model != "claude-sonnet-4-5" && p.Model != "gpt-4o") {
					t.Errorf("point %+v", p)
				}
				if p.Model == "claude-sonnet-4-5" && (p.SessionID == nil || p.SessionID.String() != claudeSessionID) {
					t.Errorf("point %+v: not joined to its session", p)
				}
			}
		})
	}
}
