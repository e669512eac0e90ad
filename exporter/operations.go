package exporter

import (
	"context"
	"errors"

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
