package client

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"time"

	"github.com/google/uuid"

	"github.com/omnimemory/omnimemory-metrics/client/api"
)

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
	api.TrackResponse
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
	hdr, err := c.postJSON(ctx, api.PathTrackOperation, op, retryIdempotent, op.OperationID.String(), &out)
	if err != nil {
		return nil, err
	}
	out.Replayed = hdr.Get(api.HeaderIdempotentReplayed) == "true"
	return &out, nil
}

// BatchResult is the answer of TrackOperations.
type BatchResult struct {
	api.BatchResponse
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
		return &BatchResult{BatchResponse: api.BatchResponse{Status: api.StatusSuccess, OperationIDs: []uuid.UUID{}}}, nil
	}
	if len(ops) > MaxBatchOperations {
		return nil, fmt.Errorf("POST /track/tool-operations: %d operations, at most %d in one request", len(ops), MaxBatchOperations)
	}
	body := api.BatchRequest{Operations: make([]Operation, len(ops))}
	for i, op := range ops {
		op, err := prepare(op)
		if err != nil {
			return nil, fmt.Errorf("POST /track/tool-operations: operation %d: %w", i, err)
		}
		body.Operations[i] = op
	}
	var out BatchResult
	// Every item carries its own id; the key is for proxies and logs.
	hdr, err := c.postJSON(ctx, api.PathTrackOperations, body, retryIdempotent, NewOperationID().String(), &out)
	if err != nil {
		return nil, err
	}
	out.Replayed = hdr.Get(api.HeaderIdempotentReplayed) == "true"
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

// QueryOperations lists recorded operations (GET /metrics/tool-operations).
func (c *Client) QueryOperations(ctx context.Context, q OperationQuery) (*OperationPage, error) {
	var out OperationPage
	if err := c.get(ctx, api.PathOperations, q.values(), retryIdempotent, &out); err != nil {
		return nil, err
	}
	return &out, nil
}
