//lint:file-ignore SA1019 the classic dashboard model is what file provisioning reads (package doc)
package grafana

import (
	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/stat"
	"github.com/grafana/grafana-foundation-sdk/go/timeseries"

	"github.com/omnimemory/omnimemory-metrics/internal/metricname"
)

// byJob selects the scrape jobs picked in the dashboard's job variable.
const byJob = `{job=~"$job"}`

// ServiceHealth is the "OmniMemory — Service health" dashboard (Prometheus):
// HTTP traffic, the ingest path, the InfluxDB store's outbox, and the process.
func ServiceHealth() *dashboard.DashboardBuilder {
	return newDashboard("omnimemory-service-health", "OmniMemory — Service health",
		"The omnimemory-metrics service itself: HTTP requests, the ingest queue and group commits, InfluxDB writes and outbox, and the Go process.",
		"now-6h").
		Refresh("30s").
		WithVariable(datasourceVariable(PrometheusVariable, "Prometheus", "prometheus", PrometheusUID, "Prometheus")).
		WithVariable(multiQueryVariable("job", "Job",
			"The Prometheus scrape jobs of the service: those exporting omnimemory_ingest_queue_capacity.",
			prometheusDS(), "label_values("+metricname.IngestQueueCapacity+", job)")).
		WithRow(row("Overview")).
		WithPanel(upStat()).
		WithPanel(requestRateStat()).
		WithPanel(serverErrorRatioStat()).
		WithPanel(queueFillStat()).
		WithRow(row("HTTP")).
		WithPanel(requestRateByRoute()).
		WithPanel(errorRateByCode()).
		WithPanel(requestLatency()).
		WithPanel(requestLatencyP95ByRoute()).
		WithRow(row("Ingest")).
		WithPanel(queueDepthVsCapacity()).
		WithPanel(batchSizes()).
		WithPanel(commitLatency()).
		WithPanel(writeErrors()).
		WithPanel(shedOperationsByReason()).
		WithRow(row("InfluxDB store")).
		WithPanel(storeWriteLatency()).
		WithPanel(storeWriteErrorsByKind()).
		WithPanel(storeBatchSizes()).
		WithPanel(outboxDepthPanel()).
		WithPanel(outboxBytesPanel()).
		WithRow(row("Process")).
		WithPanel(memory()).
		WithPanel(goroutines()).
		WithPanel(cpu()).
		WithPanel(openFDs())
}

func upStat() *stat.PanelBuilder {
	return statPanel(prometheusDS(), "Up",
		"Whether Prometheus could scrape each instance of the service (up).",
		unitShort).
		Thresholds(dashboard.NewThresholdsConfigBuilder().
			Mode(dashboard.ThresholdsModeAbsolute).
			Steps([]dashboard.Threshold{
				{Value: nil, Color: "red"},
				{Value: cog.ToPtr(1.0), Color: "green"},
			})).
		ColorMode(common.BigValueColorModeBackground).
		Mappings([]dashboard.ValueMapping{{ValueMap: &dashboard.ValueMap{
			Type: dashboard.MappingTypeValueToText,
			Options: map[string]dashboard.ValueMappingResult{
				"0": {Text: cog.ToPtr("DOWN"), Color: cog.ToPtr("red")},
				"1": {Text: cog.ToPtr("UP"), Color: cog.ToPtr("green")},
			},
		}}}).
		WithTarget(promInstant("up"+byJob, "{{instance}}"))
}

func requestRateStat() *stat.PanelBuilder {
	return statPanel(prometheusDS(), "Request rate",
		"HTTP requests per second, every route and instance.",
		unitReqps).
		WithTarget(promInstant(sumBy(rate(metricname.HTTPRequestsTotal, byJob)), "requests/s"))
}

func serverErrorRatioStat() *stat.PanelBuilder {
	return statPanel(prometheusDS(), "5xx ratio",
		"Share of HTTP requests answered with a 5xx status (store faults).",
		unitPercent).
		Decimals(2).
		Thresholds(dashboard.NewThresholdsConfigBuilder().
			Mode(dashboard.ThresholdsModeAbsolute).
			Steps([]dashboard.Threshold{
				{Value: nil, Color: "green"},
				{Value: cog.ToPtr(0.01), Color: "red"},
			})).
		WithTarget(promInstant(ratio(
			"("+sumBy(rate(metricname.HTTPRequestsTotal, `{job=~"$job", code=~"5.."}`))+" or vector(0))",
			sumBy(rate(metricname.HTTPRequestsTotal, byJob))), "5xx ratio"))
}

func queueFillStat() *stat.PanelBuilder {
	return statPanel(prometheusDS(), "Ingest queue fill",
		"Requests waiting for the writer as a share of the queue's bound; near 100% the service sheds load.",
		unitPercent).
		Decimals(1).
		Thresholds(dashboard.NewThresholdsConfigBuilder().
			Mode(dashboard.ThresholdsModeAbsolute).
			Steps([]dashboard.Threshold{
				{Value: nil, Color: "green"},
				{Value: cog.ToPtr(0.5), Color: "orange"},
				{Value: cog.ToPtr(0.9), Color: "red"},
			})).
		WithTarget(promInstant(ratio(sumBy(metricname.IngestQueueDepth+byJob), sumBy(metricname.IngestQueueCapacity+byJob)), "queue fill"))
}

func requestRateByRoute() *timeseries.PanelBuilder {
	return timeseriesPanel(prometheusDS(), "Request rate by route",
		"HTTP requests per second by route template and method.",
		unitReqps).
		WithTarget(promRange(sumBy(rate(metricname.HTTPRequestsTotal, byJob), "route", "method"), "{{method}} {{route}}"))
}

func errorRateByCode() *timeseries.PanelBuilder {
	return timeseriesPanel(prometheusDS(), "Error rate by code",
		"HTTP requests per second answered with a 4xx or 5xx status, by status code and route. 4xx are client mistakes (validation), 5xx store faults.",
		unitReqps).
		WithTarget(promRange(sumBy(rate(metricname.HTTPRequestsTotal, `{job=~"$job", code=~"4..|5.."}`), "code", "route"), "{{code}} {{route}}"))
}

func requestLatency() *timeseries.PanelBuilder {
	return timeseriesPanel(prometheusDS(), "Request latency",
		"p50, p95 and p99 of HTTP request latency, every route.",
		unitSeconds).
		WithTarget(promRange(quantile(0.5, metricname.HTTPRequestDurationSeconds, byJob), "p50")).
		WithTarget(promRange(quantile(0.95, metricname.HTTPRequestDurationSeconds, byJob), "p95")).
		WithTarget(promRange(quantile(0.99, metricname.HTTPRequestDurationSeconds, byJob), "p99"))
}

func requestLatencyP95ByRoute() *timeseries.PanelBuilder {
	return timeseriesPanel(prometheusDS(), "Request latency p95 by route",
		"95th percentile of HTTP request latency by route template and method. POST /track/tool-operation answers once its operation is durable, so it includes the commit.",
		unitSeconds).
		WithTarget(promRange(quantile(0.95, metricname.HTTPRequestDurationSeconds, byJob, "route", "method"), "{{method}} {{route}}"))
}

func queueDepthVsCapacity() *timeseries.PanelBuilder {
	return timeseriesPanel(prometheusDS(), "Ingest queue depth vs capacity",
		"Requests waiting for the single writer, against the queue's bound, per instance. A queue at capacity sheds operations.",
		unitShort).
		WithTarget(promRange(sumBy(metricname.IngestQueueDepth+byJob, "instance"), "{{instance}} depth")).
		WithTarget(promRange(sumBy(metricname.IngestQueueCapacity+byJob, "instance"), "{{instance}} capacity")).
		OverrideByRegexp(".* capacity", []dashboard.DynamicConfigValue{
			{Id: "custom.lineStyle", Value: map[string]any{"fill": "dash", "dash": []int{10, 10}}},
			{Id: "custom.fillOpacity", Value: 0},
		})
}

func batchSizes() *timeseries.PanelBuilder {
	return timeseriesPanel(prometheusDS(), "Batch size",
		"Operations committed together by one group commit: mean, p50 and p95. Larger batches under load mean the writer is amortising commits.",
		unitShort).
		WithTarget(promRange(ratio(sumBy(rate(metricname.IngestBatchSize+"_sum", byJob)), sumBy(rate(metricname.IngestBatchSize+"_count", byJob))), "mean")).
		WithTarget(promRange(quantile(0.5, metricname.IngestBatchSize, byJob), "p50")).
		WithTarget(promRange(quantile(0.95, metricname.IngestBatchSize, byJob), "p95"))
}

func commitLatency() *timeseries.PanelBuilder {
	return timeseriesPanel(prometheusDS(), "Commit latency",
		"Time the store took to make one batch durable: p50, p95, p99.",
		unitSeconds).
		WithTarget(promRange(quantile(0.5, metricname.IngestCommitDurationSeconds, byJob), "p50")).
		WithTarget(promRange(quantile(0.95, metricname.IngestCommitDurationSeconds, byJob), "p95")).
		WithTarget(promRange(quantile(0.99, metricname.IngestCommitDurationSeconds, byJob), "p99"))
}

func writeErrors() *timeseries.PanelBuilder {
	return timeseriesPanel(prometheusDS(), "Ingest write errors",
		"Batches per second the store failed to commit. Their requests were answered with an error, never acknowledged.",
		unitShort).
		AxisLabel("batches/s").
		WithTarget(promRange(sumBy(rate(metricname.IngestWriteErrorsTotal, byJob), "instance"), "{{instance}}"))
}

func shedOperationsByReason() *timeseries.PanelBuilder {
	return timeseriesPanel(prometheusDS(), "Shed operations by reason",
		"Operations per second refused without being stored, by reason (queue_full, deadline, store_full, store_error, shutting_down).",
		unitOps).
		WithTarget(promRange(sumBy(rate(metricname.IngestShedOperationsTotal, byJob), "reason"), "{{reason}}"))
}

func storeWriteLatency() *timeseries.PanelBuilder {
	return timeseriesPanel(prometheusDS(), "InfluxDB write latency",
		"p50, p95 and p99 of one write to InfluxDB. Only with OMNIMEMORY_DB_TYPE=influxdb.",
		unitSeconds).
		WithTarget(promRange(quantile(0.5, metricname.StoreWriteDurationSeconds, byJob), "p50")).
		WithTarget(promRange(quantile(0.95, metricname.StoreWriteDurationSeconds, byJob), "p95")).
		WithTarget(promRange(quantile(0.99, metricname.StoreWriteDurationSeconds, byJob), "p99"))
}

func storeWriteErrorsByKind() *timeseries.PanelBuilder {
	return timeseriesPanel(prometheusDS(), "InfluxDB write errors by kind",
		"Failed writes to InfluxDB or to the local outbox per second, by kind. What InfluxDB refused for a while stays in the outbox until it takes it.",
		unitShort).
		AxisLabel("errors/s").
		WithTarget(promRange(sumBy(rate(metricname.StoreWriteErrorsTotal, byJob), "kind"), "{{kind}}"))
}

func storeBatchSizes() *timeseries.PanelBuilder {
	return timeseriesPanel(prometheusDS(), "InfluxDB write batch size",
		"Points per write request sent to InfluxDB: mean and p95. Only with OMNIMEMORY_DB_TYPE=influxdb.",
		unitShort).
		WithTarget(promRange(ratio(sumBy(rate(metricname.StoreBatchSize+"_sum", byJob)), sumBy(rate(metricname.StoreBatchSize+"_count", byJob))), "mean")).
		WithTarget(promRange(quantile(0.95, metricname.StoreBatchSize, byJob), "p95"))
}

func outboxDepthPanel() *timeseries.PanelBuilder {
	return timeseriesPanel(prometheusDS(), "Outbox depth",
		"Batches in the local durable outbox that InfluxDB has not yet taken, per instance. Zero in normal operation; it grows during an InfluxDB outage and drains after. Only with OMNIMEMORY_DB_TYPE=influxdb.",
		unitShort).
		WithTarget(promRange(sumBy(metricname.StoreOutboxDepth+byJob, "instance"), "{{instance}}"))
}

func outboxBytesPanel() *timeseries.PanelBuilder {
	return timeseriesPanel(prometheusDS(), "Outbox size",
		"Bytes in the local outbox that InfluxDB has not yet taken, per instance. Only with OMNIMEMORY_DB_TYPE=influxdb.",
		unitBytes).
		WithTarget(promRange(sumBy(metricname.StoreOutboxBytes+byJob, "instance"), "{{instance}}"))
}

func memory() *timeseries.PanelBuilder {
	return timeseriesPanel(prometheusDS(), "Memory",
		"Resident memory of the process and the Go heap in use, per instance.",
		unitBytes).
		WithTarget(promRange("process_resident_memory_bytes"+byJob, "{{instance}} resident")).
		WithTarget(promRange("go_memstats_heap_inuse_bytes"+byJob, "{{instance}} heap in use"))
}

func goroutines() *timeseries.PanelBuilder {
	return timeseriesPanel(prometheusDS(), "Goroutines",
		"Goroutines per instance; a steady climb means a leak.",
		unitShort).
		WithTarget(promRange("go_goroutines"+byJob, "{{instance}}"))
}

func cpu() *timeseries.PanelBuilder {
	return timeseriesPanel(prometheusDS(), "CPU",
		"CPU time used per second, per instance (100% = one core).",
		unitPercent).
		WithTarget(promRange(rate("process_cpu_seconds_total", byJob), "{{instance}}"))
}

func openFDs() *timeseries.PanelBuilder {
	return timeseriesPanel(prometheusDS(), "Open file descriptors",
		"Open file descriptors per instance (the SQLite store, the outbox, connections).",
		unitShort).
		WithTarget(promRange("process_open_fds"+byJob, "{{instance}}"))
}
