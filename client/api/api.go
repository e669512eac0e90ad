// Package api is the wire format of the omnimemory-metrics REST API: the
// JSON bodies the service takes and answers, the paths it serves, and the
// names and bounds of its contract. The service encodes these types, the Go
// client decodes them, and the service's tests check its OpenAPI document
// against them, so that the three cannot drift apart.
//
// It imports only the standard library and github.com/google/uuid.
package api

import (
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
)

// Paths of the REST API. {id} is a session id.
const (
	PathTrackOperation     = "/track/tool-operation"
	PathTrackOperations    = "/track/tool-operations"
	PathOperations         = "/metrics/tool-operations"
	PathOperationsExport   = "/metrics/tool-operations/export"
	PathToolBreakdown      = "/metrics/tool-breakdown"
	PathAPISavings         = "/metrics/api-savings"
	PathSpend              = "/metrics/spend"
	PathAggregate          = "/metrics/aggregate"
	PathSessionStart       = "/sessions/start"
	PathSessionGetOrCreate = "/sessions/get_or_create"
	PathSessionsActive     = "/sessions/active"
	PathSession            = "/sessions/{id}"
	PathSessionHeartbeat   = "/sessions/{id}/heartbeat"
	PathSessionEnd         = "/sessions/{id}/end"
	PathHealth             = "/health"
	PathReady              = "/ready"
	PathMetrics            = "/metrics"
	PathOpenAPI            = "/openapi.json"
	// PathOTLPMetrics takes the AI tools' own OpenTelemetry metrics
	// (OTLP/HTTP, protobuf or JSON): what they spent.
	PathOTLPMetrics = "/v1/metrics"
	// PathStreamOperations is the live stream of accepted operations as
	// Server-Sent Events; PathWSOperations is the same stream over a
	// WebSocket.
	PathStreamOperations = "/stream/operations"
	PathWSOperations     = "/ws/operations"
)

// SessionPath answers p (PathSession, PathSessionHeartbeat or
// PathSessionEnd) for the session id.
func SessionPath(p, id string) string { return strings.Replace(p, "{id}", id, 1) }

// Tool names a client may report.
const (
	ToolRead   = "read"
	ToolSearch = "search"
)

// Operation modes a client may report. Any tool may pair with any mode.
const (
	ModeFull       = "full"
	ModeOverview   = "overview"
	ModeSymbol     = "symbol"
	ModeReferences = "references"
	ModeSemantic   = "semantic"
	ModeTriIndex   = "tri_index"
)

// ToolNames lists the tool names in the order answers present them.
var ToolNames = []string{ToolRead, ToolSearch}

// OperationModes lists the operation modes of the contract.
var OperationModes = []string{ModeFull, ModeOverview, ModeSymbol, ModeReferences, ModeSemantic, ModeTriIndex}

// ValidToolName reports whether s is a tool name of the contract.
func ValidToolName(s string) bool { return slices.Contains(ToolNames, s) }

// ValidOperationMode reports whether s is an operation mode of the contract.
func ValidOperationMode(s string) bool { return slices.Contains(OperationModes, s) }

// Bounds of the contract.
const (
	// MaxBatchOperations bounds the operations of one POST
	// /track/tool-operations.
	MaxBatchOperations = 5000
	// MaxBodyBytes bounds every request body but a batch's (1 MiB).
	MaxBodyBytes = 1 << 20
	// MaxBatchBodyBytes bounds the body of POST /track/tool-operations
	// (16 MiB: 5,000 operations with generous parameters).
	MaxBatchBodyBytes = 16 << 20
	// MaxOTLPBodyBytes bounds the body of POST /v1/metrics (16 MiB), both
	// as sent and, when it is gzip-compressed, once decompressed.
	MaxOTLPBodyBytes = 16 << 20
	// MaxToolIDLength bounds tool_id, in characters.
	MaxToolIDLength = 100
	// MaxModelLength bounds the model name of a spend point, in
	// characters.
	MaxModelLength = 200
	// MaxIdempotencyKeyLength bounds the Idempotency-Key header, in bytes.
	MaxIdempotencyKeyLength = 255
	// MaxLimit bounds the page size of GET /metrics/tool-operations;
	// DefaultLimit is the page size when none is asked for.
	MaxLimit     = 1000
	DefaultLimit = 100
	// ActiveWindow is how recent a session's activity must be for it to be
	// listed by GET /sessions/active.
	ActiveWindow = 30 * time.Minute
	// MaxClockSkew is how far ahead of the service's clock a created_at may
	// be and still be taken (as now).
	MaxClockSkew = 5 * time.Minute
)

// Headers of the contract besides the standard ones.
const (
	// HeaderIdempotencyKey on a POST of operations gives a retry the same
	// operation ids.
	HeaderIdempotencyKey = "Idempotency-Key"
	// HeaderIdempotentReplayed is "true" on the answer to a retry whose
	// operations were all stored before.
	HeaderIdempotentReplayed = "Idempotent-Replayed"
	// HeaderLastEventID on a request of the live stream resumes it after
	// that operation (as the query parameter last_event_id does).
	HeaderLastEventID = "Last-Event-ID"
)

// TimeRange is a look-back window of the aggregate endpoints: the window is
// [now - range, now].
type TimeRange string

// The ranges of the contract. GET /metrics/tool-breakdown takes all but
// RangeAll.
const (
	Range1h  TimeRange = "1h"
	Range24h TimeRange = "24h"
	Range7d  TimeRange = "7d"
	Range30d TimeRange = "30d"
	RangeAll TimeRange = "all"
)

// The status values of the answers.
const (
	StatusSuccess  = "success"  // TrackResponse, BatchResponse
	StatusStarted  = "started"  // SessionStarted
	StatusExisting = "existing" // SessionGetOrCreate: an open session was reused
	StatusCreated  = "created"  // SessionGetOrCreate: a session was opened
	StatusActive   = "active"   // Heartbeat of an open session
	StatusEnded    = "ended"    // Heartbeat of an ended session, SessionEnded
	StatusHealthy  = "healthy"  // Health
	StatusReady    = "ready"    // Ready
)

// Dimensions GET /metrics/aggregate groups operations by (its group_by):
// fields of the operation, its session's project_id, and the UTC hour or
// day of its created_at.
const (
	DimFilePath      = "file_path"
	DimToolID        = "tool_id"
	DimSessionID     = "session_id"
	DimProjectID     = "project_id"
	DimToolName      = "tool_name"
	DimOperationMode = "operation_mode"
	DimHour          = "hour"
	DimDay           = "day"
)

// Dimensions lists the dimensions of GET /metrics/aggregate.
var Dimensions = []string{DimFilePath, DimToolID, DimSessionID, DimProjectID, DimToolName, DimOperationMode, DimHour, DimDay}

// MaxGroupBy bounds the dimensions of one GET /metrics/aggregate.
const MaxGroupBy = 3

// Figures GET /metrics/aggregate ranks its groups by (its order_by),
// largest first; OrderTokensPrevented is the default.
const (
	OrderTokensPrevented   = "tokens_prevented"
	OrderTokensOriginal    = "tokens_original"
	OrderTokensActual      = "tokens_actual"
	OrderCount             = "count"
	OrderCostSaved         = "cost_saved"
	OrderAvgResponseTimeMs = "avg_response_time_ms"
)

// AggregateOrders lists the order_by values of GET /metrics/aggregate.
var AggregateOrders = []string{OrderTokensPrevented, OrderTokensOriginal, OrderTokensActual, OrderCount, OrderCostSaved, OrderAvgResponseTimeMs}

// Export formats of GET /metrics/tool-operations/export.
const (
	FormatCSV    = "csv"
	FormatNDJSON = "ndjson"
)

// ComparePrevious, as the compare parameter of GET /metrics/api-savings,
// compares with the previous period of the same length.
const ComparePrevious = "previous"

// FormatTime formats t as every time of the API is written: RFC 3339 in
// UTC with a Z, with as many fractional digits as it needs (the JSON of a
// UTC time.Time is the same text).
func FormatTime(t time.Time) string {
	return t.UTC().Format(time.RFC3339Nano)
}

// ParseUUID accepts a UUID in the canonical 36-character hyphenated form
// (8-4-4-4-12), in any case, and nothing else: the form of every id of the
// contract.
func ParseUUID(s string) (uuid.UUID, bool) { return parseUUID(s, uuid.Parse) }

// ParseUUIDBytes is ParseUUID of the text in b.
func ParseUUIDBytes(b []byte) (uuid.UUID, bool) { return parseUUID(b, uuid.ParseBytes) }

func parseUUID[T string | []byte](s T, parse func(T) (uuid.UUID, error)) (uuid.UUID, bool) {
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return uuid.UUID{}, false
	}
	u, err := parse(s)
	return u, err == nil
}

// ParseRetryAfter reads a Retry-After header, seconds or an HTTP date, at
// the clock's now; 0 when it is absent, unreadable or not in the future.
// Callers bound it as they see fit.
func ParseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs <= 0 {
			return 0
		}
		return time.Duration(min(secs, int64(maxRetryAfter/time.Second))) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return min(t.Sub(now), maxRetryAfter)
	}
	return 0
}

// maxRetryAfter keeps a parsed Retry-After within what a Duration holds.
const maxRetryAfter = 24 * time.Hour
