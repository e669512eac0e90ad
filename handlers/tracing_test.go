package handlers_test

import (
	"context"
	"log/slog"
	"regexp"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/omnimemory/omnimemory-metrics/internal/tracing"
)

func TestSpansForRequestsAndStoreCallsWithExemplars(t *testing.T) {
	spans := tracetest.NewInMemoryExporter()
	tp := tracing.NewProvider(sdktrace.NewSimpleSpanProcessor(spans), "test")
	t.Cleanup(func() { _ = tp.Shutdown(t.Context()) })
	s := newService(t, serviceOpts{tp: tp})

	s.mustDo("POST", "/track/tool-operation", op(nil), 200)
	s.mustDo("GET", "/metrics/tool-breakdown", nil, 200)

	byName := map[string]tracetest.SpanStub{}
	for _, sp := range spans.GetSpans() {
		byName[sp.Name] = sp
	}
	post, ok := byName["POST /track/tool-operation"]
	if !ok {
		t.Fatalf("no span for the POST; spans: %v", names(spans.GetSpans()))
	}
	if post.SpanKind != trace.SpanKindServer {
		t.Errorf("request span kind %v, want server", post.SpanKind)
	}
	commit, ok := byName["ingest.commit"]
	if !ok {
		t.Fatalf("no commit span; spans: %v", names(spans.GetSpans()))
	}
	linked := false
	for _, l := range commit.Links {
		linked = linked || l.SpanContext.SpanID() == post.SpanContext.SpanID()
	}
	if !linked {
		t.Errorf("the commit span does not link to the request span")
	}
	write, ok := byName["store.WriteOperations"]
	if !ok || write.Parent.SpanID() != commit.SpanContext.SpanID() {
		t.Errorf("store.WriteOperations missing or not a child of the commit span")
	}
	get, ok := byName["GET /metrics/tool-breakdown"]
	if !ok {
		t.Fatalf("no span for the GET; spans: %v", names(spans.GetSpans()))
	}
	breakdown, ok := byName["store.Breakdown"]
	if !ok || breakdown.Parent.SpanID() != get.SpanContext.SpanID() || breakdown.SpanContext.TraceID() != get.SpanContext.TraceID() {
		t.Errorf("store.Breakdown missing or not a child of the GET span")
	}

	r := s.do("GET", "/metrics", nil, "Accept", "application/openmetrics-text; version=1.0.0")
	for _, metric := range []string{"omnimemory_tool_operation_duration_seconds_bucket", "omnimemory_http_request_duration_seconds_bucket", "omnimemory_tool_operations_total"} {
		re := regexp.MustCompile(metric + `\{[^}]*\} \S+ # \{trace_id="` + post.SpanContext.TraceID().String() + `"\}`)
		if !re.Match(r.body) {
			t.Errorf("%s carries no exemplar with the POST's trace id", metric)
		}
	}
}

func names(spans tracetest.SpanStubs) []string {
	out := make([]string, len(spans))
	for i, s := range spans {
		out[i] = s.Name
	}
	return out
}

// With tracing off (no OTLP endpoint, as tracing.Setup leaves it) no span is
// made, yet a caller's propagated trace context still reaches the request:
// its trace id is the exemplar of the request's observations.
func TestTracingOffKeepsTheCallersTraceIDAsExemplar(t *testing.T) {
	tp, stop, err := tracing.Setup(t.Context(), func(string) string { return "" }, "test", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = stop(context.Background()) })
	s := newService(t, serviceOpts{tp: tp})

	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	if r := s.do("POST", "/track/tool-operation", op(nil), "traceparent", "00-"+traceID+"-00f067aa0ba902b7-01"); r.status != 200 {
		t.Fatalf("POST answered %d: %s", r.status, r.body)
	}

	r := s.do("GET", "/metrics", nil, "Accept", "application/openmetrics-text; version=1.0.0")
	for _, metric := range []string{"omnimemory_http_request_duration_seconds_bucket", "omnimemory_tool_operations_total"} {
		re := regexp.MustCompile(metric + `\{[^}]*\} \S+ # \{trace_id="` + traceID + `"\}`)
		if !re.Match(r.body) {
			t.Errorf("%s carries no exemplar with the caller's trace id", metric)
		}
	}
}
