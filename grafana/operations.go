//lint:file-ignore SA1019 the classic dashboard model is what file provisioning reads (package doc)
package grafana

import (
	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/stat"
	"github.com/grafana/grafana-foundation-sdk/go/table"
	"github.com/grafana/grafana-foundation-sdk/go/timeseries"

	"github.com/omnimemory/omnimemory-metrics/tsdb/influx/schema"
)

// The operations dashboard reads the operations measurement the InfluxDB
// store writes, by the names of package schema.

// Legends of Flux series: Grafana labels a Flux series with its group key.
const (
	fluxLegendToolMode = "${__field.labels.tool_name} / ${__field.labels.operation_mode}"
	fluxLegendClient   = "${__field.labels.tool_id}"
)

// toolIDFluxVariable lists the clients that reported operations or spend in
// the time range, from an integer field every point of either has (Flux on
// InfluxDB 1.8 cannot read fields of two types in one query). Every query filters with contains(set: ${tool_id:json}),
// which Grafana renders as a JSON array of the selected values (all of them
// for "All"), a valid Flux array of strings.
var toolIDFluxVariable = `from(bucket: "${bucket}")
  |> range(start: v.timeRangeStart, stop: v.timeRangeStop)
  |> filter(fn: (r) => (` + fluxFields(schema.Operation, schema.FieldTokensOriginal) + `) or (` + fluxFields(schema.Spend, schema.FieldTokensInput) + `))
  |> group(columns: ["` + schema.TagToolID + `"])
  |> distinct(column: "` + schema.TagToolID + `")
  |> group()
  |> keep(columns: ["_value"])
  |> sort()`

// OperationsInfluxDB is the "OmniMemory — Operations (InfluxDB)" dashboard:
// every stored operation, queried with Flux; what Prometheus cannot hold
// (files, sessions) lives here.
func OperationsInfluxDB() *dashboard.DashboardBuilder {
	return newDashboard("omnimemory-operations-influxdb", "OmniMemory — Operations (InfluxDB)",
		"Every tool operation the service stored in InfluxDB (measurement "+schema.Operation+"), queried with Flux: operations and tokens saved over time, top files and sessions, and what the tools reported spending (measurement "+schema.Spend+") beside what they saved.",
		"now-24h").
		WithVariable(datasourceVariable(InfluxDBVariable, "InfluxDB", InfluxDBType, InfluxDBUID, "InfluxDB")).
		WithVariable(dashboard.NewTextBoxVariableBuilder("bucket").
			Label("Bucket").
			Description("The bucket the service writes to (INFLUXDB_BUCKET): a bucket name on InfluxDB 2.x, \"database/retention-policy\" on 1.8.").
			DefaultValue(dashboard.StringOrMap{String: cog.ToPtr(DefaultBucket)}).
			Current(option(DefaultBucket, DefaultBucket))).
		WithVariable(multiQueryVariable("tool_id", "Client",
			"The clients (tool_id) to include, from the operations and spend stored in the time range.",
			influxDS(), toolIDFluxVariable)).
		WithVariable(costVariable()).
		WithRow(row("Overview")).
		WithPanel(fluxOperationsStat()).
		WithPanel(fluxTokensSavedStat()).
		WithPanel(fluxSavingsRatioStat()).
		WithPanel(fluxSessionsStat()).
		WithRow(row("Over time")).
		WithPanel(fluxOperationsOverTime()).
		WithPanel(fluxTokensSavedOverTime()).
		WithPanel(fluxTokensSavedByClientOverTime()).
		WithPanel(fluxResponseTimeOverTime()).
		WithRow(row("Top files and sessions")).
		WithPanel(fluxTopFiles()).
		WithPanel(fluxTopSessions()).
		WithPanel(fluxToolModeTable()).
		WithRow(row("Spend beside savings")).
		WithPanel(fluxDollarsSpentStat()).
		WithPanel(fluxDollarsSavedStat()).
		WithPanel(fluxSavingsShareStat()).
		WithPanel(fluxTokensUsedStat()).
		WithPanel(fluxDollarsSpentVsSaved()).
		WithPanel(fluxSpendByClientTable()).
		WithPanel(fluxSpendByModelTable())
}

func fluxOperationsStat() *stat.PanelBuilder {
	return statPanel(influxDS(), "Operations",
		"Operations stored in the time range (one id field per operation).",
		unitShort).
		Decimals(0).
		WithTarget(fluxQuery(pipe(fluxOperations("id"),
			`group()`,
			`count()`)))
}

func fluxTokensSavedStat() *stat.PanelBuilder {
	return statPanel(influxDS(), "Tokens saved",
		"Net tokens saved in the time range: the sum of tokens_prevented as stored (negative where a tool cost more than its baseline).",
		unitShort).
		WithTarget(fluxQuery(pipe(fluxOperations("tokens_prevented"),
			`group()`,
			`sum()`)))
}

func fluxSavingsRatioStat() *stat.PanelBuilder {
	return statPanel(influxDS(), "Savings ratio",
		"Sum of tokens_prevented / sum of tokens_original in the time range.",
		unitPercent).
		Decimals(1).
		WithTarget(fluxQuery(pipe(fluxOperations("tokens_original", "tokens_prevented"),
			`group(columns: ["_start", "_field"])`,
			`sum()`,
			`group(columns: ["_start"])`,
			`pivot(rowKey: ["_start"], columnKey: ["_field"], valueColumn: "_value")`,
			`map(fn: (r) => ({_value: if r.tokens_original > 0 then float(v: r.tokens_prevented) / float(v: r.tokens_original) else 0.0}))`)))
}

func fluxSessionsStat() *stat.PanelBuilder {
	return statPanel(influxDS(), "Sessions",
		"Distinct sessions (session_id) with at least one operation in the time range.",
		unitShort).
		Decimals(0).
		WithTarget(fluxQuery(pipe(fluxOperations("id"),
			`group(columns: ["session_id"])`,
			`count()`,
			`group()`,
			`count()`)))
}

func fluxOperationsOverTime() *timeseries.PanelBuilder {
	return timeseriesPanel(influxDS(), "Operations by tool and mode",
		"Operations per window (v.windowPeriod), by tool and mode.",
		unitShort).
		DisplayName(fluxLegendToolMode).
		WithTarget(fluxQuery(pipe(fluxOperations("id"),
			`group(columns: ["tool_name", "operation_mode"])`,
			`aggregateWindow(every: v.windowPeriod, fn: count, createEmpty: false)`,
			`keep(columns: ["_time", "_value", "tool_name", "operation_mode"])`)))
}

func fluxTokensSavedOverTime() *timeseries.PanelBuilder {
	return timeseriesPanel(influxDS(), "Tokens saved by tool and mode",
		"Net tokens saved (sum of tokens_prevented) per window, by tool and mode.",
		unitShort).
		DisplayName(fluxLegendToolMode).
		WithTarget(fluxQuery(pipe(fluxOperations("tokens_prevented"),
			`group(columns: ["tool_name", "operation_mode"])`,
			`aggregateWindow(every: v.windowPeriod, fn: sum, createEmpty: false)`,
			`keep(columns: ["_time", "_value", "tool_name", "operation_mode"])`)))
}

func fluxTokensSavedByClientOverTime() *timeseries.PanelBuilder {
	return timeseriesPanel(influxDS(), "Tokens saved by client",
		"Net tokens saved per window, by client (tool_id).",
		unitShort).
		DisplayName(fluxLegendClient).
		WithTarget(fluxQuery(pipe(fluxOperations("tokens_prevented"),
			`group(columns: ["tool_id"])`,
			`aggregateWindow(every: v.windowPeriod, fn: sum, createEmpty: false)`,
			`keep(columns: ["_time", "_value", "tool_id"])`)))
}

func fluxResponseTimeOverTime() *timeseries.PanelBuilder {
	return timeseriesPanel(influxDS(), "Mean response time by tool and mode",
		"Mean of the tools' reported response_time_ms per window, by tool and mode.",
		unitMillis).
		DisplayName(fluxLegendToolMode).
		WithTarget(fluxQuery(pipe(fluxOperations("response_time_ms"),
			`group(columns: ["tool_name", "operation_mode"])`,
			`aggregateWindow(every: v.windowPeriod, fn: mean, createEmpty: false)`,
			`keep(columns: ["_time", "_value", "tool_name", "operation_mode"])`)))
}

// sumsPerRow accumulates operations and tokens saved per group, after a
// pivot has put tokens_prevented in a column of its own.
const sumsPerRow = `reduce(identity: {operations: 0, tokens_saved: 0}, fn: (r, accumulator) => ({operations: accumulator.operations + 1, tokens_saved: accumulator.tokens_saved + r.tokens_prevented}))`

func fluxTopFiles() *table.PanelBuilder {
	// file_path is a field, not a tag: pivot each operation's fields into
	// one row (its time is unique within its series), then group by it.
	return tablePanel(influxDS(), "Top files by tokens saved",
		"The 20 files (file_path) whose reads saved the most tokens in the time range. Operations without a file are left out.",
	).
		OverrideByName("file_path", column("File", "")).
		OverrideByName("operations", column("Operations", unitShort)).
		OverrideByName("tokens_saved", column("Tokens saved", unitShort)).
		WithTarget(fluxQuery(pipe(fluxOperations("file_path", "tokens_prevented"),
			`pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")`,
			`filter(fn: (r) => exists r.file_path and exists r.tokens_prevented)`,
			`group(columns: ["file_path"])`,
			sumsPerRow,
			`group()`,
			`top(n: 20, columns: ["tokens_saved"])`,
			`keep(columns: ["file_path", "operations", "tokens_saved"])`)))
}

func fluxTopSessions() *table.PanelBuilder {
	// session_id is a tag: grouping needs no pivot.
	return tablePanel(influxDS(), "Top sessions by tokens saved",
		"The 20 sessions (session_id, with their client) that saved the most tokens in the time range.",
	).
		OverrideByName("session_id", column("Session", "")).
		OverrideByName("tool_id", column("Client", "")).
		OverrideByName("operations", column("Operations", unitShort)).
		OverrideByName("tokens_saved", column("Tokens saved", unitShort)).
		WithTarget(fluxQuery(pipe(fluxOperations("tokens_prevented"),
			`group(columns: ["session_id", "tool_id"])`,
			`reduce(identity: {operations: 0, tokens_saved: 0}, fn: (r, accumulator) => ({operations: accumulator.operations + 1, tokens_saved: accumulator.tokens_saved + r._value}))`,
			`group()`,
			`top(n: 20, columns: ["tokens_saved"])`,
			`keep(columns: ["session_id", "tool_id", "operations", "tokens_saved"])`)))
}

func fluxToolModeTable() *table.PanelBuilder {
	return tablePanel(influxDS(), "Totals by tool and mode",
		"Per tool and mode over the time range: operations, baseline and actual tokens, tokens saved and savings ratio (saved / baseline).",
	).
		Span(24).
		OverrideByName("tool_name", column("Tool", "")).
		OverrideByName("operation_mode", column("Mode", "")).
		OverrideByName("operations", column("Operations", unitShort)).
		OverrideByName("tokens_original", column("Baseline tokens", unitShort)).
		OverrideByName("tokens_actual", column("Actual tokens", unitShort)).
		OverrideByName("tokens_saved", column("Tokens saved", unitShort)).
		OverrideByName("savings_ratio", column("Savings ratio", unitPercent)).
		WithTarget(fluxQuery(pipe(fluxOperations("tokens_original", "tokens_actual", "tokens_prevented"),
			`pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")`,
			`group(columns: ["tool_name", "operation_mode"])`,
			`reduce(identity: {operations: 0, tokens_original: 0, tokens_actual: 0, tokens_saved: 0}, fn: (r, accumulator) => ({operations: accumulator.operations + 1, tokens_original: accumulator.tokens_original + r.tokens_original, tokens_actual: accumulator.tokens_actual + r.tokens_actual, tokens_saved: accumulator.tokens_saved + r.tokens_prevented}))`,
			`map(fn: (r) => ({r with savings_ratio: if r.tokens_original > 0 then float(v: r.tokens_saved) / float(v: r.tokens_original) else 0.0}))`,
			`group()`,
			`sort(columns: ["tokens_saved"], desc: true)`,
			`keep(columns: ["tool_name", "operation_mode", "operations", "tokens_original", "tokens_actual", "tokens_saved", "savings_ratio"])`)))
}
