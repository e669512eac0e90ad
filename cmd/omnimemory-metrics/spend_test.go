package main

import (
	"context"
	"math"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	otelmetric "go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/sdk/resource"

	"github.com/omnimemory/omnimemory-metrics/client/api"
	"github.com/omnimemory/omnimemory-metrics/internal/realtools"
)

// claudeCode is a meter provider configured as Claude Code configures its
// own (OTEL_METRICS_EXPORTER=otlp, OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf,
// delta temporality, resource service.name=claude-code), exporting to the
// service at base, with its two instruments.
type claudeCode struct {
	provider     *sdkmetric.MeterProvider
	tokens, cost otelmetric.Float64Counter
}

func newClaudeCode(t *testing.T, base string) *claudeCode {
	t.Helper()
	exp, err := otlpmetrichttp.New(context.Background(),
		otlpmetrichttp.WithEndpointURL(base+api.PathOTLPMetrics),
		otlpmetrichttp.WithTemporalitySelector(func(sdkmetric.InstrumentKind) metricdata.Temporality { return metricdata.DeltaTemporality }))
	if err != nil {
		t.Fatal(err)
	}
	c := &claudeCode{provider: sdkmetric.NewMeterProvider(
		sdkmetric.WithResource(resource.NewSchemaless(attribute.String("service.name", "claude-code"))),
		sdkmetric.WithReader(sdkmetric.NewPeriodicReader(exp, sdkmetric.WithInterval(time.Hour))))}
	t.Cleanup(func() { _ = c.provider.Shutdown(context.Background()) })
	meter := c.provider.Meter("com.anthropic.claude_code")
	if c.tokens, err = meter.Float64Counter("claude_code.token.usage", otelmetric.WithUnit("tokens")); err != nil {
		t.Fatal(err)
	}
	if c.cost, err = meter.Float64Counter("claude_code.cost.usage", otelmetric.WithUnit("USD")); err != nil {
		t.Fatal(err)
	}
	return c
}

// use records one request's spend of model as Claude Code does.
func (c *claudeCode) use(model string, input, output, cacheRead, cacheCreation, dollars float64) {
	ctx := context.Background()
	common := []attribute.KeyValue{attribute.String("session.id", "123e4567-e89b-12d3-a456-426614174000"),
		attribute.String("organization.id", "org"), attribute.String("user.account_uuid", "acct"), attribute.String("model", model)}
	for kind, v := range map[string]float64{"input": input, "output": output, "cacheRead": cacheRead, "cacheCreation": cacheCreation} {
		c.tokens.Add(ctx, v, otelmetric.WithAttributes(append(common, attribute.String("type", kind))...))
	}
	c.cost.Add(ctx, dollars, otelmetric.WithAttributes(common...))
}

// TestSpendEndToEnd: the OpenTelemetry SDK configured as Claude Code
// exports to the service on each store; /metrics/spend answers what it
// recorded, beside the savings of an operation of the same tool, and the
// Prometheus exposition counts the same.
func TestSpendEndToEnd(t *testing.T) {
	for name, vars := range map[string]map[string]string{
		"sqlite":     {"SQLITE_DB_PATH": filepath.Join(t.TempDir(), "m.db")},
		"postgresql": {"OMNIMEMORY_DB_TYPE": "postgresql", "DATABASE_URL": realtools.SharedPostgres(t).NewDatabase(t)},
	} {
		t.Run(name, func(t *testing.T) {
			base := startInProcess(t, []string{"--listen", "127.0.0.1:0"}, vars)
			if _, code, err := postOperation(http.DefaultClient, base, 100000); err != nil || code != 200 { // saves 99,900 tokens
				t.Fatalf("track: %d %v", code, err)
			}
			cc := newClaudeCode(t, base)
			cc.use("claude-sonnet-4-5", 12000, 800, 40000, 2000, 0.25)
			cc.use("claude-haiku-4-5", 3000, 100, 0, 0, 0.0125)
			if err := cc.provider.ForceFlush(context.Background()); err != nil {
				t.Fatalf("export: %v", err)
			}
			cc.use("claude-sonnet-4-5", 1000, 50, 8000, 0, 0.0375)
			if err := cc.provider.ForceFlush(context.Background()); err != nil {
				t.Fatalf("export: %v", err)
			}

			_, _, got := getJSON(t, base+api.PathSpend+"?time_range=1h")
			s := got.(map[string]any)
			num := func(v any) float64 { f, _ := v.(float64); return f }
			saved := 99900 * 0.015 / 1000 // the default price
			if !near(num(s["cost_spent_usd"]), 0.3) || !near(num(s["cost_saved_usd"]), saved) ||
				!near(num(s["savings_share_percentage"]), math.Round(saved/(saved+0.3)*10000)/100) {
				t.Errorf("spent %v saved %v share %v; want 0.3, %v and its share", s["cost_spent_usd"], s["cost_saved_usd"], s["savings_share_percentage"], saved)
			}
			tokens := s["tokens"].(map[string]any)
			for k, want := range map[string]float64{"input": 16000, "output": 950, "cache_read": 48000, "cache_creation": 2000} {
				if num(tokens[k]) != want {
					t.Errorf("tokens.%s = %v, want %v", k, tokens[k], want)
				}
			}
			sonnet := s["by_model"].(map[string]any)["claude-sonnet-4-5"].(map[string]any)
			if !near(num(sonnet["cost_usd"]), 0.2875) || num(sonnet["input"]) != 13000 {
				t.Errorf("by_model claude-sonnet-4-5 = %v", sonnet)
			}
			tool := s["by_tool"].(map[string]any)["claude-code"].(map[string]any)
			if !near(num(tool["cost_spent_usd"]), 0.3) || !near(num(tool["cost_saved_usd"]), saved) {
				t.Errorf("by_tool claude-code = %v", tool)
			}

			exposed := scrape(t, base)
			for series, want := range map[string]float64{
				`omnimemory_llm_cost_usd_total{model="claude-sonnet-4-5",tool_id="claude-code"}`:                     0.2875,
				`omnimemory_llm_cost_usd_total{model="claude-haiku-4-5",tool_id="claude-code"}`:                      0.0125,
				`omnimemory_llm_tokens_total{model="claude-sonnet-4-5",tool_id="claude-code",type="input"}`:          13000,
				`omnimemory_llm_tokens_total{model="claude-sonnet-4-5",tool_id="claude-code",type="cache_read"}`:     48000,
				`omnimemory_llm_tokens_total{model="claude-sonnet-4-5",tool_id="claude-code",type="cache_creation"}`: 2000,
				`omnimemory_llm_tokens_total{model="claude-haiku-4-5",tool_id="claude-code",type="output"}`:          100,
			} {
				if got, ok := exposed[series]; !ok || !near(got, want) {
					t.Errorf("%s = %v (exposed: %v), want %v", series, got, ok, want)
				}
			}
		})
	}
}

func near(a, b float64) bool { return math.Abs(a-b) <= 1e-9*math.Max(1, math.Abs(b)) }

// scrape answers every sample of the service's exposition by series.
func scrape(t *testing.T, base string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(base + api.PathMetrics)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for name, f := range families {
		for _, m := range f.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+`="`+l.GetValue()+`"`)
			}
			v := m.GetCounter().GetValue() + m.GetGauge().GetValue() + m.GetUntyped().GetValue()
			out[name+"{"+strings.Join(labels, ",")+"}"] = v
		}
	}
	return out
}
