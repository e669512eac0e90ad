package api

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
)

// The names of these types are those of the schemas of the service's OpenAPI
// document (components.schemas), which its tests hold to these fields.

// OperationRequest is one tool call as a tool reports it: the body of POST
// /track/tool-operation and an item of BatchRequest. Its JSON leaves the
// optional fields out when they are zero.
type OperationRequest struct {
	// OperationID identifies the operation to the service, which stores an
	// id once however often it is sent; zero sends none (the service makes
	// one).
	OperationID uuid.UUID `json:"operation_id,omitzero"`
	// SessionID is required. A session that does not exist yet is created
	// by the operation.
	SessionID     uuid.UUID `json:"session_id"`
	ToolName      string    `json:"tool_name"`      // ToolRead or ToolSearch
	OperationMode string    `json:"operation_mode"` // ModeFull, ModeOverview, ...
	// Parameters are stored as sent; nil stores {}.
	Parameters map[string]any `json:"parameters,omitempty"`
	// FilePath is stored as null when empty.
	FilePath       string `json:"file_path,omitempty"`
	TokensOriginal int64  `json:"tokens_original"`
	TokensActual   int64  `json:"tokens_actual"`
	// TokensPrevented, when nil, is computed by the service as
	// max(0, TokensOriginal-TokensActual). When set it must be either that
	// or TokensOriginal-TokensActual (negative when the tool cost more than
	// its baseline).
	TokensPrevented *int64  `json:"tokens_prevented,omitempty"`
	ResponseTimeMs  float64 `json:"response_time_ms"`
	// ToolID names the tool instance ("claude-code"): 1 to MaxToolIDLength
	// characters.
	ToolID string `json:"tool_id"`
	// CreatedAt, when zero, is the service's clock at arrival; otherwise it
	// must not be more than MaxClockSkew ahead of the service's clock.
	CreatedAt time.Time `json:"created_at,omitzero"`
	// CacheHit says whether the tool answered from its cache; nil sends
	// nothing (unknown: the operation counts neither as a hit nor as a
	// miss).
	CacheHit *bool `json:"cache_hit,omitempty"`
}

// MarshalJSON encodes op as the service takes it: CreatedAt in RFC 3339
// UTC, the optional fields left out when zero.
func (op OperationRequest) MarshalJSON() ([]byte, error) {
	type plain OperationRequest // without this method
	if !op.CreatedAt.IsZero() {
		op.CreatedAt = op.CreatedAt.UTC()
	}
	return json.Marshal(plain(op))
}

// BatchRequest is the body of POST /track/tool-operations: 1 to
// MaxBatchOperations operations, stored all or none.
type BatchRequest struct {
	Operations []OperationRequest `json:"operations"`
}

// TrackResponse answers POST /track/tool-operation.
type TrackResponse struct {
	Status      string    `json:"status"` // "success"
	OperationID uuid.UUID `json:"operation_id"`
}

// BatchResponse answers POST /track/tool-operations.
type BatchResponse struct {
	Status string `json:"status"` // "success"
	Count  int    `json:"count"`
	// OperationIDs are the ids of the operations, in the order sent.
	OperationIDs []uuid.UUID `json:"operation_ids"`
}

// Operation is a stored operation as the service answers it: an item of
// OperationPage and a line of the NDJSON export.
type Operation struct {
	ID            uuid.UUID `json:"id"`
	SessionID     uuid.UUID `json:"session_id"`
	ToolName      string    `json:"tool_name"`
	OperationMode string    `json:"operation_mode"`
	// Parameters is the object as sent ({} when none was), undecoded.
	Parameters      json.RawMessage `json:"parameters"`
	FilePath        *string         `json:"file_path"`
	TokensOriginal  int64           `json:"tokens_original"`
	TokensActual    int64           `json:"tokens_actual"`
	TokensPrevented int64           `json:"tokens_prevented"`
	ResponseTimeMs  float64         `json:"response_time_ms"`
	ToolID          string          `json:"tool_id"`
	CreatedAt       time.Time       `json:"created_at"` // UTC
}

// ExportedOperation is a line of the NDJSON export (GET
// /metrics/tool-operations/export): the stored operation and whether the
// tool answered from its cache, null when the client did not say.
type ExportedOperation struct {
	Operation
	CacheHit *bool `json:"cache_hit"`
}

// OperationPage answers GET /metrics/tool-operations: newest first (ties by
// id), Total counting every match regardless of paging.
type OperationPage struct {
	Operations []Operation `json:"operations"`
	Total      int64       `json:"total"`
	Limit      int         `json:"limit"`
	Offset     int         `json:"offset"`
}

// ModeBreakdown is one mode of one tool in a ToolBreakdown.
type ModeBreakdown struct {
	Count             int64   `json:"count"`
	TokensPrevented   int64   `json:"tokens_prevented"`
	AvgResponseTimeMs float64 `json:"avg_response_time_ms"`
}

// ToolStats are one tool's figures in a ToolBreakdown.
type ToolStats struct {
	TotalOperations      int64   `json:"total_operations"`
	TotalTokensOriginal  int64   `json:"total_tokens_original"`
	TotalTokensActual    int64   `json:"total_tokens_actual"`
	TotalTokensPrevented int64   `json:"total_tokens_prevented"`
	AvgResponseTimeMs    float64 `json:"avg_response_time_ms"`
	// ByMode lists the modes that occurred.
	ByMode map[string]ModeBreakdown `json:"by_mode"`
}

// ToolBreakdown answers GET /metrics/tool-breakdown.
type ToolBreakdown struct {
	Read                 ToolStats `json:"read"`
	Search               ToolStats `json:"search"`
	TotalTokensPrevented int64     `json:"total_tokens_prevented"`
	TotalCostSaved       float64   `json:"total_cost_saved"`
	TimePeriod           TimeRange `json:"time_period"`
}

// Savings are the figures of one tool or mode in APISavings.
type Savings struct {
	CostSaved       float64 `json:"cost_saved"`
	TokensPrevented int64   `json:"tokens_prevented"`
	Operations      int64   `json:"operations"`
}

// ToolSavings has both tools, always.
type ToolSavings struct {
	Read   Savings `json:"read"`
	Search Savings `json:"search"`
}

// TrendPoint is one bucket of APISavings.Trends; Timestamp is the bucket's
// start (an hour or a day, UTC).
type TrendPoint struct {
	Timestamp       time.Time `json:"timestamp"`
	TokensPrevented int64     `json:"tokens_prevented"`
	CostSaved       float64   `json:"cost_saved"`
	Operations      int64     `json:"operations"`
}

// PeriodSavings are the priced figures of one period. Money is in US
// dollars, never rounded to cents.
type PeriodSavings struct {
	APICostBaseline      float64            `json:"api_cost_baseline"`
	APICostActual        float64            `json:"api_cost_actual"`
	TotalCostSaved       float64            `json:"total_cost_saved"`
	SavingsPercentage    float64            `json:"savings_percentage"`
	TotalTokensProcessed int64              `json:"total_tokens_processed"`
	TotalTokensPrevented int64              `json:"total_tokens_prevented"`
	TotalOperations      int64              `json:"total_operations"`
	BreakdownByTool      ToolSavings        `json:"breakdown_by_tool"`
	BreakdownByMode      map[string]Savings `json:"breakdown_by_mode"`
}

// APISavings answers GET /metrics/api-savings. PreviousPeriod and Change are
// set only when asked with compare=previous.
type APISavings struct {
	PeriodSavings
	// Trends are zero-filled buckets, oldest first, summing to the totals:
	// hourly for 1h and 24h, daily otherwise.
	Trends         []TrendPoint    `json:"trends"`
	TimeRange      TimeRange       `json:"time_range"`
	CalculatedAt   time.Time       `json:"calculated_at"`
	PreviousPeriod *PreviousPeriod `json:"previous_period,omitempty"`
	Change         *SavingsChange  `json:"change,omitempty"`
}

// PreviousPeriod is the period compared with: [Start, End), End being where
// the current period starts.
type PreviousPeriod struct {
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
	PeriodSavings
}

// Change is how a figure moved from the previous period to the current one:
// Absolute = current - previous, Percent = Absolute / |previous| * 100 to two
// decimals, nil (JSON null) when previous is 0.
type Change[T float64 | int64] struct {
	Absolute T        `json:"absolute"`
	Percent  *float64 `json:"percent"`
}

// SavingsChange is the Change of every total of APISavings. Money changes
// are rounded as money is; SavingsPercentage.Absolute is in percentage
// points, to two decimals.
type SavingsChange struct {
	APICostBaseline      Change[float64] `json:"api_cost_baseline"`
	APICostActual        Change[float64] `json:"api_cost_actual"`
	TotalCostSaved       Change[float64] `json:"total_cost_saved"`
	SavingsPercentage    Change[float64] `json:"savings_percentage"`
	TotalTokensProcessed Change[int64]   `json:"total_tokens_processed"`
	TotalTokensPrevented Change[int64]   `json:"total_tokens_prevented"`
	TotalOperations      Change[int64]   `json:"total_operations"`
}

// AggregateGroup is one group of an Aggregate: the operations that share
// the value of every dimension of its group_by, and their figures.
type AggregateGroup struct {
	// Key has one entry per dimension of group_by: the value, null when
	// the operations have none (no file path, no project), an hour or day
	// as its start in RFC 3339 UTC.
	Key               map[string]*string `json:"key"`
	Count             int64              `json:"count"`
	TokensOriginal    int64              `json:"tokens_original"`
	TokensActual      int64              `json:"tokens_actual"`
	TokensPrevented   int64              `json:"tokens_prevented"`
	CostSaved         float64            `json:"cost_saved"`
	AvgResponseTimeMs float64            `json:"avg_response_time_ms"`
	// CacheHits counts the operations answered from the tool's cache;
	// CacheHitRate is CacheHits over the operations that said whether
	// they were (0 when none did).
	CacheHits    int64   `json:"cache_hits"`
	CacheHitRate float64 `json:"cache_hit_rate"`
}

// Aggregate answers GET /metrics/aggregate: at most limit groups, largest
// first by order_by (ties by key, ascending), and how many groups there
// are in all.
type Aggregate struct {
	GroupBy     []string         `json:"group_by"`
	Groups      []AggregateGroup `json:"groups"`
	TotalGroups int64            `json:"total_groups"`
}

// SessionRequest is the body of POST /sessions/start and POST
// /sessions/get_or_create.
type SessionRequest struct {
	// ToolID is required: 1 to MaxToolIDLength characters.
	ToolID      string `json:"tool_id"`
	ToolVersion string `json:"tool_version,omitempty"`
	// ProcessID is the tool's process id; 0 sends none.
	ProcessID     int    `json:"process_id,omitempty"`
	ProjectID     string `json:"project_id,omitempty"`
	WorkspacePath string `json:"workspace_path,omitempty"`
	// InstanceID identifies one running instance of the tool. Only
	// get_or_create uses it: it reuses the instance's open session.
	InstanceID string `json:"instance_id,omitempty"`
}

// Session is a session and its totals: the answer of GET /sessions/{id}.
type Session struct {
	SessionID    uuid.UUID  `json:"session_id"`
	ToolID       string     `json:"tool_id"`
	ToolVersion  *string    `json:"tool_version"`
	ProcessID    *int64     `json:"process_id"`
	InstanceID   *string    `json:"instance_id"`
	ProjectID    *string    `json:"project_id"`
	StartedAt    time.Time  `json:"started_at"`
	EndedAt      *time.Time `json:"ended_at"` // nil while open
	LastActivity time.Time  `json:"last_activity"`
	// TotalOperations counts its operations; TokensSaved sums their
	// tokens_prevented; TotalCompressions counts its read operations and
	// TotalEmbeddings its search operations.
	TotalOperations   int64 `json:"total_operations"`
	TokensSaved       int64 `json:"tokens_saved"`
	TotalCompressions int64 `json:"total_compressions"`
	TotalEmbeddings   int64 `json:"total_embeddings"`
}

// SessionStarted answers POST /sessions/start.
type SessionStarted struct {
	SessionID   uuid.UUID `json:"session_id"`
	ToolID      string    `json:"tool_id"`
	ToolVersion *string   `json:"tool_version"`
	Status      string    `json:"status"` // "started"
}

// SessionGetOrCreate answers POST /sessions/get_or_create.
type SessionGetOrCreate struct {
	SessionID uuid.UUID `json:"session_id"`
	ToolID    string    `json:"tool_id"`
	// Status is StatusExisting when an open session was reused,
	// StatusCreated otherwise.
	Status  string `json:"status"`
	Message string `json:"message"`
}

// Heartbeat answers POST /sessions/{id}/heartbeat.
type Heartbeat struct {
	SessionID uuid.UUID `json:"session_id"`
	// Status is StatusActive, or StatusEnded for a session that has ended
	// (a heartbeat never reopens one).
	Status       string    `json:"status"`
	LastActivity time.Time `json:"last_activity"`
}

// SessionEnded answers POST /sessions/{id}/end.
type SessionEnded struct {
	SessionID uuid.UUID `json:"session_id"`
	Status    string    `json:"status"` // "ended"
	Summary   Session   `json:"summary"`
}

// ActiveSessions answers GET /sessions/active: sessions not ended with
// activity within ActiveWindow.
type ActiveSessions struct {
	Sessions []Session `json:"active_sessions"`
	Count    int       `json:"count"`
	// ToolID echoes the filter, nil when none.
	ToolID *string `json:"tool_id"`
}

// Health answers GET /health; Ready answers GET /ready when the store
// answers.
type (
	Health struct {
		Status string `json:"status"` // "healthy"
	}
	Ready struct {
		Status string `json:"status"` // "ready"
	}
)

// Detail is every error answer but a 422: a non-empty sentence.
type Detail struct {
	Detail string `json:"detail"`
}

// ValidationError is a 422 answer: every bad field, as FastAPI gives it.
type ValidationError struct {
	Detail []FieldError `json:"detail"`
}

// FieldError is one item of a ValidationError.
type FieldError struct {
	// Loc locates the error: strings for names, ints for list indexes, as
	// ["body", "tool_name"] or ["body", "operations", 3, "tokens_actual"].
	Loc  []any  `json:"loc"`
	Msg  string `json:"msg"`
	Type string `json:"type"`
}

// Field answers Loc joined with dots, as "body.operations.3.tool_name".
func (f FieldError) Field() string {
	parts := make([]string, len(f.Loc))
	for i, p := range f.Loc {
		parts[i] = fmt.Sprint(p)
	}
	return strings.Join(parts, ".")
}

func (f FieldError) String() string { return f.Field() + ": " + f.Msg }

// SpendTokens are the tokens an AI tool reported spending, by kind.
type SpendTokens struct {
	Input         int64 `json:"input"`
	Output        int64 `json:"output"`
	CacheRead     int64 `json:"cache_read"`
	CacheCreation int64 `json:"cache_creation"`
}

// ModelSpend is what the tools spent on one model.
type ModelSpend struct {
	CostUSD float64 `json:"cost_usd"`
	SpendTokens
}

// ToolSpend is what one tool spent and saved.
type ToolSpend struct {
	CostSpentUSD float64 `json:"cost_spent_usd"`
	CostSavedUSD float64 `json:"cost_saved_usd"`
}

// SpendTrendPoint is one bucket of Spend.Trends: the api-savings bucket
// starting at Timestamp.
type SpendTrendPoint struct {
	Timestamp    time.Time `json:"timestamp"`
	CostSpentUSD float64   `json:"cost_spent_usd"`
	CostSavedUSD float64   `json:"cost_saved_usd"`
}

// UnknownModel is the by_model key of spend reported without a model.
const UnknownModel = "unknown"

// Spend answers GET /metrics/spend: what the AI tools reported spending
// (their own OpenTelemetry metrics) beside what the operations saved, over
// the same window. SavingsSharePercentage = saved / (spent + saved) * 100,
// 0 when both are 0.
type Spend struct {
	CostSpentUSD           float64               `json:"cost_spent_usd"`
	CostSavedUSD           float64               `json:"cost_saved_usd"`
	SavingsSharePercentage float64               `json:"savings_share_percentage"`
	Tokens                 SpendTokens           `json:"tokens"`
	ByModel                map[string]ModelSpend `json:"by_model"`
	ByTool                 map[string]ToolSpend  `json:"by_tool"`
	Trends                 []SpendTrendPoint     `json:"trends"`
	TimeRange              TimeRange             `json:"time_range"`
	CalculatedAt           time.Time             `json:"calculated_at"`
}

// The events of the live stream (GET /stream/operations as Server-Sent
// Events, GET /ws/operations as WebSocket messages).
const (
	// StreamEventOperation carries an accepted operation: an Operation.
	// Over Server-Sent Events it is the default ("message") event, with
	// the operation's id as the event id.
	StreamEventOperation = "operation"
	// StreamEventReset carries a StreamReset: the subscriber may have
	// missed operations and should read what it shows again from the
	// lists.
	StreamEventReset = "reset"
	// StreamEventHeartbeat is a WebSocket message sent after a while
	// without any other (a comment line over Server-Sent Events).
	StreamEventHeartbeat = "heartbeat"
)

// The reasons of a StreamReset.
const (
	// ResetLastEventUnknown: the operation to resume after is not among
	// those the replica keeps (it is older than the last
	// StreamReplayOperations, or was never streamed there).
	ResetLastEventUnknown = "last_event_id_unknown"
	// ResetReplicaFeedLost: the replica lost its feed of the other
	// replicas' operations for a while (PostgreSQL); operations they
	// stored meanwhile were not streamed.
	ResetReplicaFeedLost = "replica_feed_lost"
)

// StreamReplayOperations is how many of the latest operations a replica
// keeps to resume a stream from (Last-Event-ID).
const StreamReplayOperations = 10000

// StreamReset is the data of a StreamEventReset.
type StreamReset struct {
	Reason string `json:"reason"` // ResetLastEventUnknown or ResetReplicaFeedLost
	Detail string `json:"detail"`
}

// StreamMessage is one WebSocket message of GET /ws/operations: an event
// of the stream as JSON. Data is the ExportedOperation (event "operation", with
// its id in ID) or the StreamReset (event "reset"); a heartbeat has none.
type StreamMessage struct {
	Event string          `json:"event"`
	ID    *uuid.UUID      `json:"id,omitempty"`
	Data  json.RawMessage `json:"data,omitempty"`
}
