package exporter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/omnimemory/omnimemory-metrics/client/api"
	"github.com/omnimemory/omnimemory-metrics/tsdb"
)

// Errors Track returns besides a store's own.
var (
	// ErrOverloaded: the writer's queue is full; the request was not stored
	// and may be retried after a short wait.
	ErrOverloaded = errors.New("ingest queue full")
	// ErrClosed: the tracker is shutting down and takes nothing new.
	ErrClosed = errors.New("tracker closed")
	// ErrDeadline: the request waited for the writer until its write
	// deadline (a store that stalls); it was not stored and may be
	// retried. It is a tsdb.ErrUnavailable.
	ErrDeadline = fmt.Errorf("%w: the store took no write within the write deadline", tsdb.ErrUnavailable)
)

// TrackerOptions tune the writer. Zero values take the defaults.
type TrackerOptions struct {
	// QueueSize bounds the requests waiting for the writer (default 4096).
	QueueSize int
	// MaxBatch bounds the operations committed in one store write (default
	// api.MaxBatchOperations: a whole batch request fits in one).
	MaxBatch int
	// WriteTimeout bounds how long a request waits for its commit, its time
	// in the queue included (default 30s): a request still queued at its
	// deadline is answered ErrDeadline without being written, and a commit
	// ends at the earliest deadline of its requests.
	WriteTimeout time.Duration
	// TracerProvider makes the commit spans, linked to the spans of the
	// requests they commit (no-op when nil).
	TracerProvider trace.TracerProvider
	// BulkWriters, when above 0, are writers of their own for the requests
	// of at least BulkOperations operations (a batch request's), so that
	// as many large commits run at once beside the one writer of the
	// small requests. Only a store that takes concurrent transactions
	// gains from them: PostgreSQL, where one batch's COPY then runs while
	// another's commit waits for its WAL flush. Small requests keep one
	// writer: their commits touch the same rollup rows, whose row locks
	// would chain concurrent commits one after another, each smaller.
	BulkWriters int
	// BulkOperations is the size from which a request goes to the bulk
	// writers (default 1000).
	BulkOperations int
	// Publish, when set, is handed the operations of every successful
	// commit (retries marked Duplicate) once their requests have been
	// answered: the live stream's Publish. It must not wait, and may not
	// keep the slice.
	Publish func(ops []tsdb.Operation)
}

func (o TrackerOptions) withDefaults() TrackerOptions {
	if o.QueueSize <= 0 {
		o.QueueSize = 4096
	}
	if o.MaxBatch <= 0 {
		o.MaxBatch = api.MaxBatchOperations
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = 30 * time.Second
	}
	if o.TracerProvider == nil {
		o.TracerProvider = noop.NewTracerProvider()
	}
	if o.BulkOperations <= 0 {
		o.BulkOperations = 1000
	}
	return o
}

// Tracker is the ingest path: it hands operations to a single writer
// goroutine that commits every request waiting at that moment in one store
// write (group commit), so that concurrent requests share one transaction and
// one fsync (large requests may have writers of their own: see
// TrackerOptions.BulkWriters). Track returns only once its operations are
// durable.
type Tracker struct {
	store   tsdb.OperationWriter
	metrics *Metrics
	opts    TrackerOptions
	logger  *slog.Logger
	tracer  trace.Tracer

	mu     sync.RWMutex // guards closed and sends on queue and bulk against Close
	closed bool
	queue  chan *writeRequest
	bulk   chan *writeRequest // requests of BulkOperations or more; nil without BulkWriters
	done   chan struct{}
}

type writeRequest struct {
	ops      []tsdb.Operation
	deadline time.Time         // past it the request is answered without a write
	span     trace.SpanContext // of the request, for links and exemplars
	result   chan error        // the writer sends one answer, then forgets the request
}

// requestPool recycles the requests of Track with their result channels:
// under single-operation ingest every POST would allocate both. A request
// goes back once its answer is received, or when it was never queued.
var requestPool = sync.Pool{New: func() any { return &writeRequest{result: make(chan error, 1)} }}

func releaseRequest(req *writeRequest) {
	*req = writeRequest{result: req.result}
	requestPool.Put(req)
}

// NewTracker starts the writer. Close stops it.
func NewTracker(store tsdb.OperationWriter, metrics *Metrics, opts TrackerOptions, logger *slog.Logger) *Tracker {
	opts = opts.withDefaults()
	t := &Tracker{
		store:   store,
		metrics: metrics,
		opts:    opts,
		logger:  logger.With("component", "tracker"),
		tracer:  opts.TracerProvider.Tracer("github.com/omnimemory/omnimemory-metrics/exporter"),
		queue:   make(chan *writeRequest, opts.QueueSize),
		done:    make(chan struct{}),
	}
	var writers sync.WaitGroup
	writers.Go(func() { t.run(t.queue) })
	capacity := opts.QueueSize
	if opts.BulkWriters > 0 {
		t.bulk = make(chan *writeRequest, opts.QueueSize)
		capacity += opts.QueueSize
		for range opts.BulkWriters {
			writers.Go(func() { t.run(t.bulk) })
		}
	}
	metrics.queueCapacity.Set(float64(capacity))
	go func() {
		writers.Wait()
		close(t.done)
	}()
	return t
}

// Track stores ops (all or none) and answers once they are durable; ops that
// the store already held (a client's retry) come back marked Duplicate. It
// answers ErrOverloaded at once when the queue is full, ErrClosed after
// Close, or the store's error. It waits for the commit even when ctx ends
// first, so that an answer never hides an operation that was stored.
func (t *Tracker) Track(ctx context.Context, ops ...tsdb.Operation) error {
	if len(ops) == 0 {
		return nil
	}
	req := requestPool.Get().(*writeRequest)
	req.ops, req.deadline, req.span = ops, time.Now().Add(t.opts.WriteTimeout), trace.SpanContextFromContext(ctx)
	t.mu.RLock()
	if t.closed {
		t.mu.RUnlock()
		releaseRequest(req)
		t.metrics.shed.WithLabelValues("shutting_down").Add(float64(len(ops)))
		return ErrClosed
	}
	queue := t.queue
	if t.bulk != nil && len(ops) >= t.opts.BulkOperations {
		queue = t.bulk
	}
	select {
	case queue <- req:
		t.metrics.queueDepth.Set(float64(t.queued()))
	default:
		t.mu.RUnlock()
		releaseRequest(req)
		t.metrics.shed.WithLabelValues("queue_full").Add(float64(len(ops)))
		return ErrOverloaded
	}
	t.mu.RUnlock()
	_ = ctx // the commit is bounded by WriteTimeout, not by the caller
	err := <-req.result
	span := req.span
	releaseRequest(req)
	if err == nil {
		// Counted here, in the request's goroutine, rather than by the
		// writer, whose goroutine every commit waits for.
		t.metrics.observeAccepted(ops, span)
	}
	return err
}

// Close stops taking requests, commits every request already queued, and
// waits for the writer to finish or ctx to end.
func (t *Tracker) Close(ctx context.Context) error {
	t.mu.Lock()
	if !t.closed {
		t.closed = true
		close(t.queue)
		if t.bulk != nil {
			close(t.bulk)
		}
	}
	t.mu.Unlock()
	select {
	case <-t.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("tracker: waiting for queued writes: %w", ctx.Err())
	}
}

// queued answers how many requests wait for a writer.
func (t *Tracker) queued() int { return len(t.queue) + len(t.bulk) }

// run is a writer of queue: it takes the first waiting request, gathers
// every other one already queued (up to MaxBatch operations), and commits
// them together.
func (t *Tracker) run(queue chan *writeRequest) {
	var batch []*writeRequest
	var ops []tsdb.Operation
	var carry *writeRequest
	for {
		first := carry
		carry = nil
		if first == nil {
			var ok bool
			if first, ok = <-queue; !ok {
				return
			}
		}
		batch = append(batch[:0], first)
		ops = append(ops[:0], first.ops...)
	gather:
		for len(ops) < t.opts.MaxBatch {
			select {
			case req, ok := <-queue:
				if !ok {
					break gather
				}
				if len(ops)+len(req.ops) > t.opts.MaxBatch {
					carry = req
					break gather
				}
				batch = append(batch, req)
				ops = append(ops, req.ops...)
			default:
				break gather
			}
		}
		t.metrics.queueDepth.Set(float64(t.queued()))
		batch, ops = t.dropExpired(batch, ops)
		if len(batch) > 0 {
			err := t.commit(batch, ops)
			for _, req := range batch {
				req.result <- err
			}
			if err == nil && t.opts.Publish != nil {
				t.opts.Publish(ops) // durable and acknowledged: never before
			}
		}
		clear(batch)
	}
}

// dropExpired answers ErrDeadline to the requests of batch whose deadline
// has passed while they waited (behind a commit that stalled), and answers
// the batch and operations left.
func (t *Tracker) dropExpired(batch []*writeRequest, ops []tsdb.Operation) ([]*writeRequest, []tsdb.Operation) {
	now := time.Now()
	kept, keptOps, i := batch[:0], ops[:0], 0
	for _, req := range batch {
		n := len(req.ops)
		if now.Before(req.deadline) {
			kept = append(kept, req)
			keptOps = append(keptOps, ops[i:i+n]...)
		} else {
			t.metrics.shed.WithLabelValues("deadline").Add(float64(n))
			req.result <- ErrDeadline
		}
		i += n
	}
	return kept, keptOps
}

// commit writes ops, the operations of batch, in one store write, under a
// span linked to every request's span.
func (t *Tracker) commit(batch []*writeRequest, ops []tsdb.Operation) error {
	links := make([]trace.Link, 0, len(batch))
	for _, req := range batch {
		if req.span.IsValid() {
			links = append(links, trace.Link{SpanContext: req.span})
		}
	}
	ctx, span := t.tracer.Start(context.Background(), "ingest.commit", trace.WithLinks(links...),
		trace.WithAttributes(attribute.Int("omnimemory.batch.size", len(ops)), attribute.Int("omnimemory.batch.requests", len(batch))))
	defer span.End()
	deadline := batch[0].deadline // the earliest of the batch
	for _, req := range batch[1:] {
		if req.deadline.Before(deadline) {
			deadline = req.deadline
		}
	}
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	start := time.Now()
	err := t.store.WriteOperations(ctx, ops)
	t.metrics.commitDuration.Observe(time.Since(start).Seconds())
	if err != nil {
		t.metrics.writeErrors.Inc()
		reason := "store_error"
		if errors.Is(err, tsdb.ErrBacklogFull) {
			reason = "store_full"
		}
		t.metrics.shed.WithLabelValues(reason).Add(float64(len(ops)))
		t.logger.Error("store write failed", "operations", len(ops), "err", err)
		return storeWriteError(fmt.Sprintf("%d operations", len(ops)), err)
	}
	t.metrics.batchSize.Observe(float64(len(ops)))
	// The store marked retries Duplicate in ops; hand the marks back to each
	// request (their ops are consecutive in ops), whose Track counts the
	// new ones.
	i := 0
	for _, req := range batch {
		copy(req.ops, ops[i:i+len(req.ops)])
		i += len(req.ops)
	}
	return nil
}

// storeWriteError answers the error of a store write of what that failed
// with err: a store that did not answer within the write deadline is a
// fault of the store, to retry (tsdb.ErrUnavailable), not of the request.
func storeWriteError(what string, err error) error {
	if errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, tsdb.ErrUnavailable) {
		return fmt.Errorf("%w: storing %s: no answer within the write deadline: %w", tsdb.ErrUnavailable, what, err)
	}
	return fmt.Errorf("storing %s: %w", what, err)
}
