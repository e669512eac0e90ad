// Package metricname holds the names of the service's Prometheus metrics,
// which dashboards, alert rules and users' queries depend on: the one home
// of each, taken by the code that registers the metric and by the Grafana
// dashboards that query it.
package metricname

// Namespace prefixes every metric of the service.
const Namespace = "omnimemory"

// What the tools save (exporter).
const (
	ToolOperationsTotal          = Namespace + "_tool_operations_total"
	ToolTokensOriginalTotal      = Namespace + "_tool_tokens_original_total"
	ToolTokensActualTotal        = Namespace + "_tool_tokens_actual_total"
	ToolTokensPreventedTotal     = Namespace + "_tool_tokens_prevented_total"
	ToolTokensOverspentTotal     = Namespace + "_tool_tokens_overspent_total"
	ToolCacheLookupsTotal        = Namespace + "_tool_cache_lookups_total"
	ToolCacheHitsTotal           = Namespace + "_tool_cache_hits_total"
	ToolOperationDurationSeconds = Namespace + "_tool_operation_duration_seconds"
	ToolOperationSavingsRatio    = Namespace + "_tool_operation_savings_ratio"
	CostPer1kTokensUSD           = Namespace + "_cost_per_1k_tokens_usd"
)

// What the tools spend, from their own OTLP metrics (exporter).
const (
	LLMTokensTotal                   = Namespace + "_llm_tokens_total"
	LLMCostUSDTotal                  = Namespace + "_llm_cost_usd_total"
	OTLPDataPointsIgnoredTotal       = Namespace + "_otlp_data_points_ignored_total"
	OTLPDataPointsRejectedTotal      = Namespace + "_otlp_data_points_rejected_total"
	OTLPCumulativeSeries             = Namespace + "_otlp_cumulative_series"
	OTLPCumulativeSeriesEvictedTotal = Namespace + "_otlp_cumulative_series_evicted_total"
)

// The ingest queue and its commits (exporter).
const (
	IngestBatchSize             = Namespace + "_ingest_batch_size"
	IngestCommitDurationSeconds = Namespace + "_ingest_commit_duration_seconds"
	IngestQueueDepth            = Namespace + "_ingest_queue_depth"
	IngestQueueCapacity         = Namespace + "_ingest_queue_capacity"
	IngestWriteErrorsTotal      = Namespace + "_ingest_write_errors_total"
	IngestShedOperationsTotal   = Namespace + "_ingest_shed_operations_total"
)

// Retention (exporter).
const (
	RetentionDeletedTotal               = Namespace + "_retention_deleted_total"
	RetentionRawHorizonTimestampSeconds = Namespace + "_retention_raw_horizon_timestamp_seconds"
	RetentionErrorsTotal                = Namespace + "_retention_errors_total"
	RetentionPeriodSeconds              = Namespace + "_retention_period_seconds"
)

// The live stream (exporter).
const (
	StreamSubscribers              = Namespace + "_stream_subscribers"
	StreamSubscribersCapacity      = Namespace + "_stream_subscribers_capacity"
	StreamSubscribersDroppedTotal  = Namespace + "_stream_subscribers_dropped_total"
	StreamOperationsPublishedTotal = Namespace + "_stream_operations_published_total"
	StreamReplicaFeedLostTotal     = Namespace + "_stream_replica_feed_lost_total"
	StreamRingEvents               = Namespace + "_stream_ring_events"
	StreamRingCapacityEvents       = Namespace + "_stream_ring_capacity_events"
)

// HTTP (handlers).
const (
	HTTPRequestsTotal          = Namespace + "_http_requests_total"
	HTTPRequestDurationSeconds = Namespace + "_http_request_duration_seconds"
)

// Delivery to InfluxDB (the InfluxDB store).
const (
	StoreWriteDurationSeconds = Namespace + "_store_write_duration_seconds"
	StoreBatchSize            = Namespace + "_store_batch_size"
	StoreWriteErrorsTotal     = Namespace + "_store_write_errors_total"
	StoreOutboxDepth          = Namespace + "_store_outbox_depth"
	StoreOutboxBytes          = Namespace + "_store_outbox_bytes"
)
