// Package schema names what the InfluxDB store keeps (measurements, tags,
// fields, session events) and how it stores tag and string values, with the
// standard library only, so that dashboards and load generators can share
// the names without linking an InfluxDB client.
//
// Operations: measurement [Operation]; tags [TagToolName],
// [TagOperationMode], [TagToolID], [TagSessionID] (and [TagDup] on the rare
// point that needs a series of its own); fields [FieldID], [FieldFilePath]
// (absent when nil), [FieldParameters] (JSON text), [FieldTokensOriginal],
// [FieldTokensActual], [FieldTokensPrevented] (integers),
// [FieldResponseTimeMs] (float), [FieldCacheHit] (boolean; absent when the
// client did not say). The point time is created_at plus an offset
// below one microsecond that keeps every point key unique. The operation id
// is never a tag.
//
// Sessions: measurement [Session], one point per event; tags [TagEvent]
// ([EventStart], [EventHeartbeat], [EventEnd]), [TagSessionID], [TagToolID];
// fields [FieldVersion] (always 1) and, on start events, the session's
// attributes ([FieldInstanceID], [FieldProcessID], [FieldProjectID],
// [FieldToolVersion], [FieldWorkspacePath]; absent when nil).
//
// Spend (what an AI tool spent over an interval, tsdb.SpendPoint):
// measurement [Spend]; tags [TagModel], [TagSessionID] (absent when the
// point has none), [TagToolID] (and [TagDup] as on operations); fields
// [FieldCostUSD] (float), [FieldTokensInput], [FieldTokensOutput],
// [FieldTokensCacheRead], [FieldTokensCacheCreation] (integers). The point
// time is the point's Time plus an offset below one microsecond, as for
// operations; the point's id is never stored (it chooses the offset).
package schema

// Measurements.
const (
	Operation = "tool_operation"
	Session   = "tool_session"
	Spend     = "llm_spend"
)

// Tags.
const (
	TagToolName      = "tool_name"
	TagOperationMode = "operation_mode"
	TagToolID        = "tool_id"
	TagSessionID     = "session_id"
	// TagDup is set only on operations (and spend points) that found all 1000 nanosecond
	// offsets of their series and microsecond taken: it moves them to a
	// series of their own. Queries never filter on it.
	TagDup = "dup"
	// TagEvent is the kind of a session event.
	TagEvent = "event"
	// TagModel is the model of a spend point ("" is stored as
	// TagValue("")).
	TagModel = "model"
)

// Fields of Operation.
const (
	FieldID              = "id"
	FieldFilePath        = "file_path"
	FieldParameters      = "parameters"
	FieldTokensOriginal  = "tokens_original"
	FieldTokensActual    = "tokens_actual"
	FieldTokensPrevented = "tokens_prevented"
	FieldResponseTimeMs  = "response_time_ms"
	// FieldCacheHit is whether the tool answered from its cache; absent
	// when unknown.
	FieldCacheHit = "cache_hit"
)

// Fields of Spend.
const (
	FieldCostUSD             = "cost_usd"
	FieldTokensInput         = "tokens_input"
	FieldTokensOutput        = "tokens_output"
	FieldTokensCacheRead     = "tokens_cache_read"
	FieldTokensCacheCreation = "tokens_cache_creation"
)

// Fields of Session.
const (
	FieldVersion       = "v"
	FieldInstanceID    = "instance_id"
	FieldProcessID     = "process_id"
	FieldProjectID     = "project_id"
	FieldToolVersion   = "tool_version"
	FieldWorkspacePath = "workspace_path"
)

// Values of TagEvent.
const (
	EventStart     = "start"
	EventHeartbeat = "heartbeat"
	EventEnd       = "end"
)
