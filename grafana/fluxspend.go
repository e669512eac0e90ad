package grafana

import (
	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/stat"
	"github.com/grafana/grafana-foundation-sdk/go/table"
	"github.com/grafana/grafana-foundation-sdk/go/timeseries"

	"github.com/omnimemory/omnimemory-metrics/tsdb/influx/schema"
)

// The "Spend beside savings" row of the operations dashboard: what the
// tools reported spending (measurement schema.Spend, from their own OTLP
// metrics) beside what their operations saved, priced as GET /metrics/spend
// prices them: net tokens saved (the sum of tokens_prevented) times the
// cost per 1,000 tokens.

// DefaultCostPer1K is the default of the operations dashboard's cost
// variable: the service's default OMNIMEMORY_COST_PER_1K_TOKENS. InfluxDB
// does not hold the price the service was configured with, so the viewer
// types it (Prometheus has it as a gauge).
const DefaultCostPer1K = "0.015"

// fluxPrice is the Flux expression of US dollars per token, from the
// ${cost_per_1k} variable (a text in a string literal: a value that is not
// a number fails the query instead of changing it).
const fluxPrice = `float(v: "${cost_per_1k}") / 1000.0`

// costVariable lets the viewer give the price the service was configured
// with.
func costVariable() *dashboard.TextBoxVariableBuilder {
	return dashboard.NewTextBoxVariableBuilder("cost_per_1k").
		Label("USD per 1K tokens").
		Description("The service's OMNIMEMORY_COST_PER_1K_TOKENS: the price of the tokens saved in the spend row (InfluxDB does not hold it).").
		DefaultValue(dashboard.StringOrMap{String: cog.ToPtr(DefaultCostPer1K)}).
		Current(option(DefaultCostPer1K, DefaultCostPer1K))
}

// spentAndSaved reads the points of both measurements that price a window:
// the spend points' cost_usd (float) and the operations' tokens_prevented
// (integer). Flux cannot put both types in one table: sum per field, then
// toFloat, before tables of both meet.
func spentAndSaved() string {
	return fluxFrom(fluxFields(schema.Spend, schema.FieldCostUSD), fluxFields(schema.Operation, schema.FieldTokensPrevented))
}

// spentSavedShare is a map body that turns a row with the sums cost_usd and
// tokens_prevented (either may be missing) into spent and saved dollars and
// the savings share saved / (spent + saved), 0 when both are 0, as
// GET /metrics/spend answers it.
const spentSavedShare = `spent = if exists r.` + schema.FieldCostUSD + ` then r.` + schema.FieldCostUSD + ` else 0.0
    saved = if exists r.` + schema.FieldTokensPrevented + ` then float(v: r.` + schema.FieldTokensPrevented + `) * ` + fluxPrice + ` else 0.0
    share = if spent + saved > 0.0 then saved / (spent + saved) else 0.0`

func fluxDollarsSpentStat() *stat.PanelBuilder {
	return statPanel(influxDS(), "Dollars spent",
		"US dollars the tools reported spending on their LLMs in the time range (the sum of cost_usd of "+schema.Spend+"). Empty for tools that report no spend.",
		unitUSD).
		Decimals(2).
		WithTarget(fluxQuery(pipe(fluxSpend(schema.FieldCostUSD),
			`group()`,
			`sum()`)))
}

func fluxDollarsSavedStat() *stat.PanelBuilder {
	return statPanel(influxDS(), "Dollars saved",
		"Net tokens saved in the time range (the sum of tokens_prevented), priced at the dashboard's USD per 1K tokens, as GET /metrics/spend's cost_saved_usd.",
		unitUSD).
		Decimals(2).
		WithTarget(fluxQuery(pipe(fluxOperations(schema.FieldTokensPrevented),
			`group()`,
			`sum()`,
			`map(fn: (r) => ({_value: float(v: r._value) * `+fluxPrice+`}))`)))
}

func fluxSavingsShareStat() *stat.PanelBuilder {
	return statPanel(influxDS(), "Savings share",
		"Dollars saved / (dollars spent + dollars saved) in the time range: the part of what the tools would have spent without OmniMemory that it saved, as GET /metrics/spend's savings_share_percentage. Empty while no tool reports spend.",
		unitPercent).
		Decimals(1).
		WithTarget(fluxQuery(pipe(spentAndSaved(),
			`group(columns: ["_start", "_field"])`,
			`sum()`,
			`toFloat()`,
			`group(columns: ["_start"])`,
			`pivot(rowKey: ["_start"], columnKey: ["_field"], valueColumn: "_value")`,
			`filter(fn: (r) => exists r.`+schema.FieldCostUSD+`)`,
			`map(fn: (r) => {
    `+spentSavedShare+`
    return {_value: share}
  })`)))
}

func fluxTokensUsedStat() *stat.PanelBuilder {
	return statPanel(influxDS(), "Tokens the tools used",
		"Tokens the tools reported using in the time range: input, output, cache read and cache creation together.",
		unitShort).
		Decimals(0).
		WithTarget(fluxQuery(pipe(fluxSpend(spendTokenFields...),
			`group()`,
			`sum()`)))
}

// spendTokenFields are the token fields of a spend point.
var spendTokenFields = []string{schema.FieldTokensInput, schema.FieldTokensOutput, schema.FieldTokensCacheRead, schema.FieldTokensCacheCreation}

func fluxDollarsSpentVsSaved() *timeseries.PanelBuilder {
	return timeseriesPanel(influxDS(), "Dollars spent and saved",
		"US dollars per window (v.windowPeriod): what the tools reported spending, beside their net tokens saved priced at the dashboard's USD per 1K tokens.",
		unitUSD).
		WithTarget(fluxQuery(pipe(fluxSpend(schema.FieldCostUSD),
			`group()`,
			`aggregateWindow(every: v.windowPeriod, fn: sum, createEmpty: false)`,
			`map(fn: (r) => ({_time: r._time, spent: r._value}))`))).
		WithTarget(fluxQuery(pipe(fluxOperations(schema.FieldTokensPrevented),
			`group()`,
			`aggregateWindow(every: v.windowPeriod, fn: sum, createEmpty: false)`,
			`map(fn: (r) => ({_time: r._time, saved: float(v: r._value) * `+fluxPrice+`}))`)))
}

func fluxSpendByClientTable() *table.PanelBuilder {
	return tablePanel(influxDS(), "Spent and saved by client",
		"Per client (tool_id) in the time range: dollars spent, dollars saved and the savings share, as by_tool of GET /metrics/spend.",
	).
		OverrideByName(schema.TagToolID, column("Client", "")).
		OverrideByName("spent", column("Dollars spent", unitUSD)).
		OverrideByName("saved", column("Dollars saved", unitUSD)).
		OverrideByName("share", column("Savings share", unitPercent)).
		WithTarget(fluxQuery(pipe(spentAndSaved(),
			`group(columns: ["`+schema.TagToolID+`", "_field"])`,
			`sum()`,
			`toFloat()`,
			`group(columns: ["`+schema.TagToolID+`"])`,
			`pivot(rowKey: ["`+schema.TagToolID+`"], columnKey: ["_field"], valueColumn: "_value")`,
			`map(fn: (r) => {
    `+spentSavedShare+`
    return {`+schema.TagToolID+`: r.`+schema.TagToolID+`, spent: spent, saved: saved, share: share}
  })`,
			`group()`,
			`sort(columns: ["spent"], desc: true)`,
			`keep(columns: ["`+schema.TagToolID+`", "spent", "saved", "share"])`)))
}

func fluxSpendByModelTable() *table.PanelBuilder {
	fields := append([]string{schema.FieldCostUSD}, spendTokenFields...)
	keep := `keep(columns: ["` + schema.TagModel + `"`
	for _, f := range fields {
		keep += `, "` + f + `"`
	}
	keep += `])`
	p := tablePanel(influxDS(), "Spend by model",
		"Per model in the time range: US dollars spent and tokens by type, as the tools reported them.",
	).
		OverrideByName(schema.TagModel, column("Model", "")).
		OverrideByName(schema.FieldCostUSD, column("Dollars spent", unitUSD))
	for i, f := range spendTokenFields {
		p = p.OverrideByName(f, column(llmTokenTypes[i].column, unitShort))
	}
	return p.
		WithTarget(fluxQuery(pipe(fluxSpend(fields...),
			`group(columns: ["`+schema.TagModel+`", "_field"])`,
			`sum()`,
			`toFloat()`, // a cost is a float, tokens integers: one type per column`
			`group(columns: ["`+schema.TagModel+`"])`,
			`pivot(rowKey: ["`+schema.TagModel+`"], columnKey: ["_field"], valueColumn: "_value")`,
			`group()`,
			`sort(columns: ["`+schema.FieldCostUSD+`"], desc: true)`,
			keep))).
		SortBy([]cog.Builder[common.TableSortByFieldState]{
			common.NewTableSortByFieldStateBuilder().DisplayName("Dollars spent").Desc(true),
		})
}
