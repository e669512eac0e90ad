package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"time"

	"github.com/google/uuid"
)

// The tools and operation modes of the contract. Any tool may pair with any
// mode.
const (
	ToolRead   = "read"
	ToolSearch = "search"

	ModeFull       = "full"
	ModeOverview   = "overview"
	ModeSymbol     = "symbol"
	ModeReferences = "references"
	ModeSemantic   = "semantic"
	ModeTriIndex   = "tri_index"
)

// MaxBatchOperations bounds the operations of one TrackOperations call, as
// the service does.
const MaxBatchOperations = 5000

// Operation is one tool call to record.
type Operation struct {
	// OperationID identifies the operation to the service, which stores an
	// id once however often it is sent. Leave it zero and the client sets a
	// new one before the first attempt; set it yourself (NewOperationID) to
	// make your own retries, across calls or restarts, idempotent too.
	OperationID uuid.UUID `json:"operation_id"`
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
	// ToolID names the tool instance ("claude-code"): 1 to 100 characters.
	ToolID string `json:"tool_id"`
	// CreatedAt, when zero, is the service's clock at arrival; otherwise it
	// must not be more than 5 minutes ahead of the service's clock.
	CreatedAt time.Time `json:"created_at,omitzero"`
}

// MarshalJSON encodes op as the service takes it: the ids in lower case,
// CreatedAt in RFC 3339 UTC, and the optional fields left out when zero.
func (op Operation) MarshalJSON() ([]byte, error) {
	w := operationWire{
		SessionID:       op.SessionID.String(),
		ToolName:        op.ToolName,
		OperationMode:   op.OperationMode,
		Parameters:      op.Parameters,
		FilePath:        op.FilePath,
		TokensOriginal:  op.TokensOriginal,
		TokensActual:    op.TokensActual,
		TokensPrevented: op.TokensPrevented,
		ResponseTimeMs:  op.ResponseTimeMs,
		ToolID:          op.ToolID,
	}
	if op.OperationID != uuid.Nil {
		w.OperationID = op.OperationID.String()
	}
	if !op.CreatedAt.IsZero() {
		w.CreatedAt = op.CreatedAt.UTC().Format(time.RFC3339Nano)
	}
	return json.Marshal(w)
}

// operationWire is an Operation as the service takes it.
type operationWire struct {
	OperationID     string         `json:"operation_id,omitempty"`
	SessionID       string         `json:"session_id"`
	ToolName        string         `json:"tool_name"`
	OperationMode   string         `json:"operation_mode"`
	Parameters      map[string]any `json:"parameters,omitempty"`
	FilePath        string         `json:"file_path,omitempty"`
	TokensOriginal  int64          `json:"tokens_original"`
	TokensActual    int64          `json:"tokens_actual"`
	TokensPrevented *int64         `json:"tokens_prevented,omitempty"`
	ResponseTimeMs  float64        `json:"response_time_ms"`
	ToolID          string         `json:"tool_id"`
	CreatedAt       string         `json:"created_at,omitempty"`
}

// errNoSession: an operation without a session would be filed under the
// nil UUID, which is never what a tool means.
var errNoSession = errors.New("operation has no session_id")

// prepare answers op ready to send: checked, with an operation id.
func prepare(op Operation) (Operation, error) {
	if op.SessionID == uuid.Nil {
		return op, errNoSession
	}
	if op.OperationID == uuid.Nil {
		op.OperationID = NewOperationID()
	}
	return op, nil
}

// NewOperationID answers a new operation id: a time-ordered UUID (version
// 7), which the service's indexes take cheapest.
func NewOperationID() uuid.UUID {
	id, err := uuid.NewV7()
	if err != nil {
		return uuid.New()
	}
	return id
}

// TrackResult is the answer of TrackOperation.
type TrackResult struct {
	Status      string    `json:"status"`
	OperationID uuid.UUID `json:"operation_id"`
	// Replayed is set when the service already held the operation: this
	// call was a retry of one whose answer was lost, and nothing new was
	// stored or counted.
	Replayed bool `json:"-"`
}

// TrackOperation records one operation (POST /track/tool-operation). The
// operation id is fixed before the first attempt, so retries never store it
// twice.
func (c *Client) TrackOperation(ctx context.Context, op Operation) (*TrackResult, error) {
	op, err := prepare(op)
	if err != nil {
		return nil, fmt.Errorf("POST /track/tool-operation: %w", err)
	}
	var out TrackResult
	hdr, err := c.postJSON(ctx, "/track/tool-operation", op, retryIdempotent, op.OperationID.String(), &out)
	if err != nil {
		return nil, err
	}
	out.Replayed = hdr.Get("Idempotent-Replayed") == "true"
	return &out, nil
}

// BatchResult is the answer of TrackOperations.
type BatchResult struct {
	Status string `json:"status"`
	Count  int    `json:"count"`
	// OperationIDs are the ids of the operations, in the order sent.
	OperationIDs []uuid.UUID `json:"operation_ids"`
	// Replayed is set when the service already held every operation.
	Replayed bool `json:"-"`
}

// TrackOperations records up to MaxBatchOperations operations in one
// request (POST /track/tool-operations): all are stored, or, when any is
// invalid, none, and the *APIError's Fields name each bad one by its index
// (["body", "operations", i, field]). Operations without an id get one
// before the first attempt; the caller's slice is not modified.
func (c *Client) TrackOperations(ctx context.Context, ops []Operation) (*BatchResult, error) {
	if len(ops) == 0 {
		return &BatchResult{Status: "success", OperationIDs: []uuid.UUID{}}, nil
	}
	if len(ops) > MaxBatchOperations {
		return nil, fmt.Errorf("POST /track/tool-operations: %d operations, at most %d in one request", len(ops), MaxBatchOperations)
	}
	body := struct {
		Operations []Operation `json:"operations"`
	}{make([]Operation, len(ops))}
	for i, op := range ops {
		op, err := prepare(op)
		if err != nil {
			return nil, fmt.Errorf("POST /track/tool-operations: operation %d: %w", i, err)
		}
		body.Operations[i] = op
	}
	var out BatchResult
	// Every item carries its own id; the key is for proxies and logs.
	hdr, err := c.postJSON(ctx, "/track/tool-operations", body, retryIdempotent, NewOperationID().String(), &out)
	if err != nil {
		return nil, err
	}
	out.Replayed = hdr.Get("Idempotent-Replayed") == "true"
	return &out, nil
}

// OperationQuery filters and pages QueryOperations. Zero fields do not
// filter.
type OperationQuery struct {
	SessionID     uuid.UUID
	ToolName      string
	OperationMode string
	ToolID        string
	// StartDate and EndDate bound created_at, both inclusive.
	StartDate, EndDate time.Time
	// Limit is the page size, 1 to 1000 (0: the service's default, 100).
	Limit int
	// Offset skips that many matches.
	Offset int
}

func (q OperationQuery) values() url.Values {
	v := url.Values{}
	if q.SessionID != uuid.Nil {
		v.Set("session_id", q.SessionID.String())
	}
	set := func(name, value string) {
		if value != "" {
			v.Set(name, value)
		}
	}
	set("tool_name", q.ToolName)
	set("operation_mode", q.OperationMode)
	set("tool_id", q.ToolID)
	if !q.StartDate.IsZero() {
		v.Set("start_date", q.StartDate.UTC().Format(time.RFC3339Nano))
	}
	if !q.EndDate.IsZero() {
		v.Set("end_date", q.EndDate.UTC().Format(time.RFC3339Nano))
	}
	if q.Limit != 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	if q.Offset != 0 {
		v.Set("offset", strconv.Itoa(q.Offset))
	}
	return v
}

// StoredOperation is an operation as the service answers it.
type StoredOperation struct {
	ID            uuid.UUID `json:"id"`
	SessionID     uuid.UUID `json:"session_id"`
	ToolName      string    `json:"tool_name"`
	OperationMode string    `json:"operation_mode"`
	// Parameters is the object as sent, undecoded.
	Parameters      json.RawMessage `json:"parameters"`
	FilePath        *string         `json:"file_path"`
	TokensOriginal  int64           `json:"tokens_original"`
	TokensActual    int64           `json:"tokens_actual"`
	TokensPrevented int64           `json:"tokens_prevented"`
	ResponseTimeMs  float64         `json:"response_time_ms"`
	ToolID          string          `json:"tool_id"`
	CreatedAt       time.Time       `json:"created_at"`
}

// OperationPage is the answer of QueryOperations: newest first, Total
// counting every match regardless of paging.
type OperationPage struct {
	Operations []StoredOperation `json:"operations"`
	Total      int64             `json:"total"`
	Limit      int               `json:"limit"`
	Offset     int               `json:"offset"`
}

// QueryOperations lists recorded operations (GET /metrics/tool-operations).
func (c *Client) QueryOperations(ctx context.Context, q OperationQuery) (*OperationPage, error) {
	var out OperationPage
	if err := c.get(ctx, "/metrics/tool-operations", q.values(), retryIdempotent, &out); err != nil {
		return nil, err
	}
	return &out, nil
}
