package exporter

import (
	"context"
	"encoding/json"
	"errors"

	"github.com/omnimemory/omnimemory-metrics/client/api"
	"github.com/omnimemory/omnimemory-metrics/tsdb"
)

// MaxConcurrentExports bounds the exports served at once: each holds a
// store reader for as long as its client takes.
const MaxConcurrentExports = 2

// ErrExportsBusy: MaxConcurrentExports exports are running; the export was
// not started and may be retried later.
var ErrExportsBusy = errors.New("too many exports in progress")

// Operations lists and exports stored operations.
type Operations struct {
	store tsdb.OperationReader
	slots chan struct{}
}

// NewOperations reads operations from store.
func NewOperations(store tsdb.OperationReader) *Operations {
	return &Operations{store: store, slots: make(chan struct{}, MaxConcurrentExports)}
}

// QueryOperations answers one page of the operations matching f.
func (o *Operations) QueryOperations(ctx context.Context, f tsdb.OperationFilter) (tsdb.OperationPage, error) {
	return o.store.QueryOperations(ctx, f)
}

// ExportOperations hands fn every operation matching f, oldest first, in
// constant memory (see tsdb.OperationReader), or answers ErrExportsBusy at
// once when MaxConcurrentExports run already.
func (o *Operations) ExportOperations(ctx context.Context, f tsdb.OperationFilter, fn func(*tsdb.Operation) error) error {
	select {
	case o.slots <- struct{}{}:
		defer func() { <-o.slots }()
	default:
		return ErrExportsBusy
	}
	f.Limit, f.Offset = 0, 0
	return o.store.ExportOperations(ctx, f, fn)
}

// APIOperation answers the stored operation op as the API answers it: an
// item of GET /metrics/tool-operations, and the heart of a line of the
// NDJSON export and of an event of the live stream (APIExportedOperation),
// all come from this one conversion.
func APIOperation(op *tsdb.Operation) api.Operation {
	params := op.Parameters
	if len(params) == 0 {
		params = json.RawMessage("{}")
	}
	return api.Operation{
		ID:              op.ID,
		SessionID:       op.SessionID,
		ToolName:        op.ToolName,
		OperationMode:   op.OperationMode,
		Parameters:      params,
		FilePath:        op.FilePath,
		TokensOriginal:  op.TokensOriginal,
		TokensActual:    op.TokensActual,
		TokensPrevented: op.TokensPrevented,
		ResponseTimeMs:  op.ResponseTimeMs,
		ToolID:          op.ToolID,
		CreatedAt:       op.CreatedAt.UTC(),
	}
}

// APIExportedOperation answers the stored operation op as a line of the
// NDJSON export and an event of the live stream carry it: the list's item
// and whether the tool answered from its cache (null when it did not say).
func APIExportedOperation(op *tsdb.Operation) api.ExportedOperation {
	return api.ExportedOperation{Operation: APIOperation(op), CacheHit: op.CacheHit}
}
