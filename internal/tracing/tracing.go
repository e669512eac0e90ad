// Package tracing sets up OpenTelemetry tracing for the service: spans are
// exported by OTLP over HTTP when the standard OTEL_EXPORTER_OTLP_ENDPOINT
// (or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) is set, and recorded nowhere
// otherwise, at no cost beyond creating no-op spans. Only the HTTP/protobuf
// OTLP protocol is built in (the OpenTelemetry default; collectors take it on
// port 4318).
package tracing

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// ServiceName names the service in spans' resource.
const ServiceName = "omnimemory-metrics"

// Setup answers the tracer provider to use and the function that flushes
// and stops it. getenv reads the OTEL_* variables; the exporter itself reads
// the rest of the standard ones (headers, timeout, protocol options).
// W3C trace context is propagated either way.
func Setup(ctx context.Context, getenv func(string) string, version string, logger *slog.Logger) (trace.TracerProvider, func(context.Context) error, error) {
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		logger.Warn("tracing", "component", "tracing", "err", err)
	}))
	endpoint := getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") // used as is
	if endpoint == "" {
		if base := getenv("OTEL_EXPORTER_OTLP_ENDPOINT"); base != "" {
			endpoint = strings.TrimRight(base, "/") + "/v1/traces"
		}
	}
	if endpoint == "" {
		return noop.NewTracerProvider(), func(context.Context) error { return nil }, nil
	}
	exp, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(endpoint))
	if err != nil {
		return nil, nil, fmt.Errorf("OTLP trace exporter: %w", err)
	}
	tp := NewProvider(sdktrace.NewBatchSpanProcessor(exp), version)
	return tp, tp.Shutdown, nil
}

// NewProvider answers an SDK tracer provider that hands spans to sp, with
// the service's resource; tests pass an in-memory exporter's processor.
func NewProvider(sp sdktrace.SpanProcessor, version string) *sdktrace.TracerProvider {
	res := resource.NewSchemaless(semconv.ServiceName(ServiceName), semconv.ServiceVersion(version))
	return sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sp), sdktrace.WithResource(res))
}
