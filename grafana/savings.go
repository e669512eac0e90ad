//lint:file-ignore SA1019 the classic dashboard model is what file provisioning reads (package doc)
package grafana

import (
	"fmt"

	"github.com/grafana/grafana-foundation-sdk/go/bargauge"
	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/stat"
	"github.com/grafana/grafana-foundation-sdk/go/table"
	"github.com/grafana/grafana-foundation-sdk/go/timeseries"

	"github.com/omnimemory/omnimemory-metrics/internal/metricname"
)

// byClient selects the clients picked in the dashboard's tool_id variable.
const byClient = `{tool_id=~"$tool_id"}`

// Legends of the usual breakdowns.
const (
	legendToolMode = "{{tool_name}} / {{operation_mode}}"
	legendClient   = "{{tool_id}}"
)

// TokenSavings is the "OmniMemory — Token savings" dashboard (Prometheus):
// tokens and dollars saved by tool, mode and client, savings ratios, and
// operation rate and latency.
func TokenSavings() *dashboard.DashboardBuilder {
	return newDashboard("omnimemory-token-savings", "OmniMemory — Token savings",
		"Tokens and dollars that OmniMemory's tools saved, by tool, mode and client, from the service's Prometheus metrics.",
		"now-24h").
		WithVariable(datasourceVariable(PrometheusVariable, "Prometheus", "prometheus", PrometheusUID, "Prometheus")).
		WithVariable(multiQueryVariable("tool_id", "Client",
			"The clients (tool_id) that reported operations or spend. Tool metrics count at most 100 clients by name; the rest are under \"other\".",
			prometheusDS(), `label_values({__name__=~"`+metricname.ToolOperationsTotal+`|`+metricname.LLMCostUSDTotal+`"}, tool_id)`).
			AllValue(".*")).
		WithRow(row("Overview")).
		WithPanel(tokensSavedStat()).
		WithPanel(dollarsSavedStat()).
		WithPanel(savingsRatioStat()).
		WithPanel(operationsStat()).
		WithRow(row("Tokens and dollars saved")).
		WithPanel(tokensSavedByToolMode()).
		WithPanel(tokensSavedByClient()).
		WithPanel(dollarsSavedByToolMode()).
		WithPanel(dollarsSavedByClient()).
		WithPanel(tokensSavedPerClientBars()).
		WithPanel(dollarsSavedPerClientBars()).
		WithRow(row("Spend beside savings")).
		WithPanel(dollarsSpentStat()).
		WithPanel(savingsShareStat()).
		WithPanel(dollarsSpentVsSaved()).
		WithPanel(savingsShareByClient()).
		WithPanel(spendByModelTable()).
		WithRow(row("Savings ratio")).
		WithPanel(savingsRatioByToolMode()).
		WithPanel(savingsRatioByClient()).
		WithPanel(perOperationSavingsRatio()).
		WithPanel(tokensOverspentByToolMode()).
		WithRow(row("Cache")).
		WithPanel(cacheHitRateByToolMode()).
		WithRow(row("Operations and latency")).
		WithPanel(operationRateByToolMode()).
		WithPanel(operationRateByClient()).
		WithPanel(operationLatency()).
		WithPanel(operationLatencyP95ByToolMode())
}

func tokensSavedStat() *stat.PanelBuilder {
	return statPanel(prometheusDS(), "Tokens saved",
		"Tokens the tools did not send, over the dashboard's time range (tokens_original − tokens_actual; operations that cost more than their baseline add nothing here).",
		unitShort).
		WithTarget(promInstant(sumBy(increase(metricname.ToolTokensPreventedTotal, byClient)), "tokens saved"))
}

func dollarsSavedStat() *stat.PanelBuilder {
	return statPanel(prometheusDS(), "Dollars saved",
		"Tokens saved over the time range, priced at the service's configured cost per 1,000 tokens (omnimemory_cost_per_1k_tokens_usd).",
		unitUSD).
		Decimals(4).
		WithTarget(promInstant(dollars(sumBy(increase(metricname.ToolTokensPreventedTotal, byClient))), "USD saved"))
}

func savingsRatioStat() *stat.PanelBuilder {
	return statPanel(prometheusDS(), "Savings ratio",
		"Tokens saved divided by baseline tokens (tokens_original) over the time range: the share of the baseline the tools avoided sending.",
		unitPercent).
		Decimals(1).
		WithTarget(promInstant(ratio(sumBy(increase(metricname.ToolTokensPreventedTotal, byClient)), sumBy(increase(metricname.ToolTokensOriginalTotal, byClient))), "savings ratio"))
}

func operationsStat() *stat.PanelBuilder {
	return statPanel(prometheusDS(), "Operations",
		"Tool operations accepted over the time range.",
		unitShort).
		Decimals(0).
		WithTarget(promInstant(sumBy(increase(metricname.ToolOperationsTotal, byClient)), "operations"))
}

func tokensSavedByToolMode() *timeseries.PanelBuilder {
	return timeseriesPanel(prometheusDS(), "Tokens saved by tool and mode",
		"Tokens saved per second, by tool (read, search) and operation mode.",
		unitShort).
		AxisLabel("tokens/s").
		WithTarget(promRange(sumBy(rate(metricname.ToolTokensPreventedTotal, byClient), "tool_name", "operation_mode"), legendToolMode))
}

func tokensSavedByClient() *timeseries.PanelBuilder {
	return timeseriesPanel(prometheusDS(), "Tokens saved by client",
		"Tokens saved per second, by client (tool_id).",
		unitShort).
		AxisLabel("tokens/s").
		WithTarget(promRange(sumBy(rate(metricname.ToolTokensPreventedTotal, byClient), "tool_id"), legendClient))
}

func dollarsSavedByToolMode() *timeseries.PanelBuilder {
	return timeseriesPanel(prometheusDS(), "Dollars saved per hour by tool and mode",
		"The rate of tokens saved, priced at the configured cost per 1,000 tokens, as US dollars per hour.",
		unitUSD).
		AxisLabel("USD/hour").
		WithTarget(promRange(dollars(sumBy(rate(metricname.ToolTokensPreventedTotal, byClient), "tool_name", "operation_mode")+" * 3600"), legendToolMode))
}

func dollarsSavedByClient() *timeseries.PanelBuilder {
	return timeseriesPanel(prometheusDS(), "Dollars saved per hour by client",
		"The rate of tokens saved by each client (tool_id), as US dollars per hour.",
		unitUSD).
		AxisLabel("USD/hour").
		WithTarget(promRange(dollars(sumBy(rate(metricname.ToolTokensPreventedTotal, byClient), "tool_id")+" * 3600"), legendClient))
}

func tokensSavedPerClientBars() *bargauge.PanelBuilder {
	return barGaugePanel(prometheusDS(), "Tokens saved per client",
		"Tokens saved by each client (tool_id) over the dashboard's time range, largest first.",
		unitShort).
		WithTarget(promInstant("sort_desc("+sumBy(increase(metricname.ToolTokensPreventedTotal, byClient), "tool_id")+")", legendClient))
}

func dollarsSavedPerClientBars() *bargauge.PanelBuilder {
	return barGaugePanel(prometheusDS(), "Dollars saved per client",
		"Dollars saved by each client (tool_id) over the dashboard's time range, largest first.",
		unitUSD).
		Decimals(4).
		WithTarget(promInstant("sort_desc("+dollars(sumBy(increase(metricname.ToolTokensPreventedTotal, byClient), "tool_id"))+")", legendClient))
}

// llmTokenTypes are the kinds of tokens the tools report, in the order of
// the spend table's columns.
var llmTokenTypes = []struct{ typ, column string }{
	{"input", "Input tokens"},
	{"output", "Output tokens"},
	{"cache_read", "Cache read tokens"},
	{"cache_creation", "Cache creation tokens"},
}

// savingsShare is dollars saved / (dollars spent + dollars saved), as
// GET /metrics/spend's savings_share_percentage (a fraction here); spent
// and saved are expressions in US dollars with the same labels.
func savingsShare(saved, spent string) string {
	return fmt.Sprintf("%s / (%s + %s)", saved, spent, saved)
}

func dollarsSpentStat() *stat.PanelBuilder {
	return statPanel(prometheusDS(), "Dollars spent",
		"US dollars the tools reported spending on their LLMs over the time range (their own OpenTelemetry cost metric, omnimemory_llm_cost_usd_total). Empty for tools that report no spend.",
		unitUSD).
		Decimals(2).
		WithTarget(promInstant(sumBy(increase(metricname.LLMCostUSDTotal, byClient)), "USD spent"))
}

func savingsShareStat() *stat.PanelBuilder {
	return statPanel(prometheusDS(), "Savings share",
		"Dollars saved / (dollars spent + dollars saved) over the time range: the part of what the tools would have spent without OmniMemory that it saved. As savings_share_percentage of GET /metrics/spend; empty while no tool reports spend.",
		unitPercent).
		Decimals(1).
		WithTarget(promInstant(savingsShare(
			dollars(sumBy(increase(metricname.ToolTokensPreventedTotal, byClient))),
			sumBy(increase(metricname.LLMCostUSDTotal, byClient))), "savings share"))
}

func dollarsSpentVsSaved() *timeseries.PanelBuilder {
	return timeseriesPanel(prometheusDS(), "Dollars spent and saved per hour",
		"What the tools reported spending on their LLMs, beside what OmniMemory saved them (tokens saved priced at the configured cost per 1,000 tokens), as US dollars per hour.",
		unitUSD).
		AxisLabel("USD/hour").
		WithTarget(promRange(sumBy(rate(metricname.LLMCostUSDTotal, byClient))+" * 3600", "spent")).
		WithTarget(promRange(dollars(sumBy(rate(metricname.ToolTokensPreventedTotal, byClient))+" * 3600"), "saved"))
}

func savingsShareByClient() *timeseries.PanelBuilder {
	return timeseriesPanel(prometheusDS(), "Savings share by client",
		"Dollars saved / (dollars spent + dollars saved), over each $__rate_interval, by client (tool_id). Only clients that report spend appear.",
		unitPercent).
		Min(0).
		Max(1).
		WithTarget(promRange(savingsShare(
			dollars(sumBy(rate(metricname.ToolTokensPreventedTotal, byClient), "tool_id")),
			sumBy(rate(metricname.LLMCostUSDTotal, byClient), "tool_id")), legendClient))
}

func spendByModelTable() *table.PanelBuilder {
	// One instant query per column, each a table of (model, value), merged
	// on model: the cost first (Value #A), then the tokens of each type.
	p := tablePanel(prometheusDS(), "Spend by model",
		"Per model over the time range: US dollars spent and tokens by type, as the tools reported them.").
		WithTransformation(dashboard.DataTransformerConfig{Id: "merge", Options: map[string]any{}}).
		WithTransformation(dashboard.DataTransformerConfig{Id: "organize", Options: map[string]any{
			"excludeByName": map[string]any{"Time": true},
		}}).
		OverrideByName("model", column("Model", "")).
		OverrideByName("Value #A", column("Dollars spent", unitUSD)).
		WithTarget(promTable(sumBy(increase(metricname.LLMCostUSDTotal, byClient), "model")))
	for i, tt := range llmTokenTypes {
		sel := fmt.Sprintf(`{tool_id=~"$tool_id", type=%q}`, tt.typ)
		p = p.OverrideByName(fmt.Sprintf("Value #%c", 'B'+i), column(tt.column, unitShort)).
			WithTarget(promTable(sumBy(increase(metricname.LLMTokensTotal, sel), "model")))
	}
	return p.SortBy([]cog.Builder[common.TableSortByFieldState]{
		common.NewTableSortByFieldStateBuilder().DisplayName("Dollars spent").Desc(true),
	})
}

func savingsRatioByToolMode() *timeseries.PanelBuilder {
	return timeseriesPanel(prometheusDS(), "Savings ratio by tool and mode",
		"Tokens saved / baseline tokens, over each $__rate_interval, by tool and mode.",
		unitPercent).
		Min(0).
		Max(1).
		WithTarget(promRange(ratio(
			sumBy(rate(metricname.ToolTokensPreventedTotal, byClient), "tool_name", "operation_mode"),
			sumBy(rate(metricname.ToolTokensOriginalTotal, byClient), "tool_name", "operation_mode")), legendToolMode))
}

func savingsRatioByClient() *timeseries.PanelBuilder {
	return timeseriesPanel(prometheusDS(), "Savings ratio by client",
		"Tokens saved / baseline tokens, over each $__rate_interval, by client (tool_id).",
		unitPercent).
		Min(0).
		Max(1).
		WithTarget(promRange(ratio(
			sumBy(rate(metricname.ToolTokensPreventedTotal, byClient), "tool_id"),
			sumBy(rate(metricname.ToolTokensOriginalTotal, byClient), "tool_id")), legendClient))
}

func perOperationSavingsRatio() *timeseries.PanelBuilder {
	return timeseriesPanel(prometheusDS(), "Per-operation savings ratio (median)",
		"Median of each operation's own savings ratio (prevented / original), by tool and mode, from the omnimemory_tool_operation_savings_ratio histogram. Histograms carry no client label: this panel ignores the Client filter.",
		unitPercent).
		Min(0).
		Max(1).
		WithTarget(promRange(quantile(0.5, metricname.ToolOperationSavingsRatio, "", "tool_name", "operation_mode"), legendToolMode))
}

func tokensOverspentByToolMode() *timeseries.PanelBuilder {
	return timeseriesPanel(prometheusDS(), "Tokens overspent by tool and mode",
		"Tokens per second by which operations cost more than their baseline (negative tokens_prevented), by tool and mode. Ideally zero.",
		unitShort).
		AxisLabel("tokens/s").
		WithTarget(promRange(sumBy(rate(metricname.ToolTokensOverspentTotal, byClient), "tool_name", "operation_mode"), legendToolMode))
}

func cacheHitRateByToolMode() *timeseries.PanelBuilder {
	return timeseriesPanel(prometheusDS(), "Cache hit rate by tool and mode",
		"Operations the tools answered from their cache / operations that said whether they did (cache_hit true or false), over each $__rate_interval, by tool and mode. Operations that did not say count in neither; a tool and mode that never says has no line.",
		unitPercent).
		Span(24).
		Min(0).
		Max(1).
		WithTarget(promRange(ratio(
			sumBy(rate(metricname.ToolCacheHitsTotal, byClient), "tool_name", "operation_mode"),
			sumBy(rate(metricname.ToolCacheLookupsTotal, byClient), "tool_name", "operation_mode")), legendToolMode))
}

func operationRateByToolMode() *timeseries.PanelBuilder {
	return timeseriesPanel(prometheusDS(), "Operation rate by tool and mode",
		"Tool operations accepted per second, by tool and mode.",
		unitOps).
		WithTarget(promRange(sumBy(rate(metricname.ToolOperationsTotal, byClient), "tool_name", "operation_mode"), legendToolMode))
}

func operationRateByClient() *timeseries.PanelBuilder {
	return timeseriesPanel(prometheusDS(), "Operation rate by client",
		"Tool operations accepted per second, by client (tool_id).",
		unitOps).
		WithTarget(promRange(sumBy(rate(metricname.ToolOperationsTotal, byClient), "tool_id"), legendClient))
}

func operationLatency() *timeseries.PanelBuilder {
	return timeseriesPanel(prometheusDS(), "Operation latency",
		"p50, p95 and p99 of the tools' reported response_time_ms, from the omnimemory_tool_operation_duration_seconds histogram, all tools and modes. Histograms carry no client label: this panel ignores the Client filter.",
		unitSeconds).
		WithTarget(promRange(quantile(0.5, metricname.ToolOperationDurationSeconds, ""), "p50")).
		WithTarget(promRange(quantile(0.95, metricname.ToolOperationDurationSeconds, ""), "p95")).
		WithTarget(promRange(quantile(0.99, metricname.ToolOperationDurationSeconds, ""), "p99"))
}

func operationLatencyP95ByToolMode() *timeseries.PanelBuilder {
	return timeseriesPanel(prometheusDS(), "Operation latency p95 by tool and mode",
		"95th percentile of the reported response time, by tool and mode. Ignores the Client filter (histograms carry no client label).",
		unitSeconds).
		WithTarget(promRange(quantile(0.95, metricname.ToolOperationDurationSeconds, "", "tool_name", "operation_mode"), legendToolMode))
}
