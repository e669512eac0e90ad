package client

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Errors of the Batcher.
var (
	// ErrQueueFull: MaxPending operations are waiting. Add answers it
	// (wrapped with the context's error) when its context ends before room
	// frees up; TryAdd at once.
	ErrQueueFull = errors.New("batcher: queue full")
	// ErrClosed: the batcher was closed and takes nothing more.
	ErrClosed = errors.New("batcher: closed")
)

// BatchOptions tune a Batcher. Zero fields take the defaults.
type BatchOptions struct {
	// MaxOps is the most operations sent in one request (default 1000, at
	// most MaxBatchOperations; larger values are lowered to it). A request
	// leaves as soon as MaxOps operations wait.
	MaxOps int
	// FlushInterval is the longest an operation waits before it is sent
	// (default 1s).
	FlushInterval time.Duration
	// MaxPending bounds the operations held, waiting or being sent
	// (default 10*MaxOps, at least MaxOps). When it is reached, Add blocks
	// until room frees up or its context ends, and TryAdd answers
	// ErrQueueFull.
	MaxPending int
	// OnError is called with the operations the batcher gives up on and
	// why: those the service rejected (a 422 drops only the bad items, each
	// reported with its own *APIError; the others are sent again), and
	// those still unsent when Close ends. Operations that failed for a
	// transient reason are kept and sent again, not reported here. It runs
	// on the batcher's goroutine: it must return quickly and must not call
	// Add, Flush or Close. When nil, the client's logger records the loss.
	OnError func(err error, ops []Operation)
}

func (o BatchOptions) withDefaults() BatchOptions {
	if o.MaxOps <= 0 {
		o.MaxOps = 1000
	}
	o.MaxOps = min(o.MaxOps, MaxBatchOperations)
	if o.FlushInterval <= 0 {
		o.FlushInterval = time.Second
	}
	if o.MaxPending <= 0 {
		o.MaxPending = 10 * o.MaxOps
	}
	o.MaxPending = max(o.MaxPending, o.MaxOps)
	return o
}

// BatchStats count what a Batcher did.
type BatchStats struct {
	// Pending are the operations held: waiting or being sent.
	Pending int
	// Sent are the operations the service accepted; Dropped those given up
	// (reported to OnError).
	Sent, Dropped uint64
}

// maxPause bounds the pause of the background sends after repeated
// transient failures.
const maxPause = 30 * time.Second

// Batcher gathers operations and records them with TrackOperations, in
// requests of up to MaxOps, from one goroutine: at most one request is in
// flight. Every operation gets its operation id when it is added and keeps
// it through every retry, so nothing is stored twice. Operations that fail
// for a transient reason (see IsRetryable) after the client's own retries
// are kept, at the head of the queue, and sent again by the next flush;
// background sends then pause, longer after each failure in a row (up to
// 30s, or the server's Retry-After). It is safe for concurrent use.
type Batcher struct {
	c    *Client
	opts BatchOptions

	mu       sync.Mutex
	pending  []Operation // waiting, oldest first
	inflight int         // taken by the sender, not yet settled
	closed   bool
	room     chan struct{} // closed, and replaced, whenever room frees up

	kick     chan struct{}     // a full request is waiting
	requests chan flushRequest // Flush and Close
	done     chan struct{}     // the sender has stopped

	// ctx is the context of every send; Close cancels it when its own
	// context ends.
	ctx    context.Context
	cancel context.CancelFunc

	sent, dropped atomic.Uint64

	closeOnce sync.Once
	closeErr  error
}

type flushRequest struct {
	final  bool // Close: give up what cannot be sent, then stop
	result chan error
}

// NewBatcher starts a batcher sending through c. Close it to send what it
// holds and stop its goroutine.
func NewBatcher(c *Client, opts BatchOptions) *Batcher {
	ctx, cancel := context.WithCancel(context.Background())
	b := &Batcher{
		c:        c,
		opts:     opts.withDefaults(),
		room:     make(chan struct{}),
		kick:     make(chan struct{}, 1),
		requests: make(chan flushRequest),
		done:     make(chan struct{}),
		ctx:      ctx,
		cancel:   cancel,
	}
	go b.run()
	return b
}

// Add queues op, giving it an operation id when it has none. When
// MaxPending operations are held it blocks until room frees up or ctx ends
// (then the error matches both ErrQueueFull and ctx's error); when there is
// room it queues op even if ctx has ended. After Close it answers
// ErrClosed.
func (b *Batcher) Add(ctx context.Context, op Operation) error {
	op, err := prepare(op)
	if err != nil {
		return err
	}
	for {
		room, err := b.enqueue(op)
		if room == nil {
			return err
		}
		select {
		case <-room:
		case <-ctx.Done():
			return fmt.Errorf("%w: %w", ErrQueueFull, ctx.Err())
		}
	}
}

// TryAdd is Add that never blocks: ErrQueueFull when MaxPending operations
// are held.
func (b *Batcher) TryAdd(op Operation) error {
	op, err := prepare(op)
	if err != nil {
		return err
	}
	room, err := b.enqueue(op)
	if room != nil {
		return ErrQueueFull
	}
	return err
}

// enqueue queues op and answers nil, nil; or, when the batcher is full,
// the channel closed when room frees up.
func (b *Batcher) enqueue(op Operation) (<-chan struct{}, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, ErrClosed
	}
	if len(b.pending)+b.inflight >= b.opts.MaxPending {
		return b.room, nil
	}
	b.pending = append(b.pending, op)
	if len(b.pending) >= b.opts.MaxOps {
		select {
		case b.kick <- struct{}{}:
		default:
		}
	}
	return nil, nil
}

// Flush sends every operation added before the call, and answers nil when
// the service took them all. Otherwise it answers the errors met: the
// operations of a transient failure stay queued for the next flush; those
// rejected were given to OnError. Ending ctx stops the wait, not the send.
func (b *Batcher) Flush(ctx context.Context) error {
	req := flushRequest{result: make(chan error, 1)}
	select {
	case b.requests <- req:
	case <-b.done:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-req.result:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close stops taking operations, sends every one held (one pass, with the
// client's retries), gives what could not be sent to OnError, and stops the
// batcher's goroutine. When ctx ends first, the request in flight is
// abandoned and what is left is given up. It answers nil when everything
// was sent; later calls answer the first call's result.
func (b *Batcher) Close(ctx context.Context) error {
	b.closeOnce.Do(func() {
		b.mu.Lock()
		b.closed = true
		b.wakeLocked() // blocked Adds answer ErrClosed
		b.mu.Unlock()
		req := flushRequest{final: true, result: make(chan error, 1)}
		var ctxErr error
		select {
		case b.requests <- req:
		case <-ctx.Done():
			ctxErr = ctx.Err()
			b.cancel() // end the send in flight; the final pass then gives up at once
			b.requests <- req
		}
		select {
		case err := <-req.result:
			b.closeErr = errors.Join(ctxErr, err)
		case <-ctx.Done():
			b.cancel()
			b.closeErr = errors.Join(ctx.Err(), <-req.result)
		}
		b.cancel()
	})
	<-b.done
	return b.closeErr
}

// Stats answers what the batcher holds and did so far.
func (b *Batcher) Stats() BatchStats {
	b.mu.Lock()
	pending := len(b.pending) + b.inflight
	b.mu.Unlock()
	return BatchStats{Pending: pending, Sent: b.sent.Load(), Dropped: b.dropped.Load()}
}

// run is the sender: the only goroutine that sends, so at most one request
// is in flight.
func (b *Batcher) run() {
	defer close(b.done)
	ticker := time.NewTicker(b.opts.FlushInterval)
	defer ticker.Stop()
	var failures int
	var pauseUntil time.Time
	// settle records the outcome of a background or explicit send.
	settle := func(stall *stallError) {
		if stall == nil {
			failures, pauseUntil = 0, time.Time{}
			return
		}
		failures++
		pause := b.opts.FlushInterval
		for i := 1; i < failures && pause < maxPause; i++ {
			pause *= 2
		}
		pause = max(min(pause, maxPause), stall.retryAfter)
		pauseUntil = time.Now().Add(pause)
		b.c.logger.Warn("batcher: send failed, operations kept for the next flush",
			"pending", b.Stats().Pending, "pause", pause, "err", stall.err)
	}
	for {
		select {
		case <-ticker.C:
			if time.Now().Before(pauseUntil) {
				continue
			}
			stall, _ := b.send(b.held(), false)
			settle(stall)
		case <-b.kick:
			if time.Now().Before(pauseUntil) {
				continue
			}
			stall, _ := b.send(b.held(), true)
			settle(stall)
		case req := <-b.requests:
			stall, err := b.send(b.held(), false)
			settle(stall)
			if req.final {
				err = errors.Join(err, b.giveUpRest(stall))
			}
			req.result <- err
			if req.final {
				return
			}
		}
	}
}

// held answers how many operations wait (none is in flight while the
// sender asks).
func (b *Batcher) held() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.pending)
}

// stallError is a transient failure that stopped a send: its operations
// are back in the queue.
type stallError struct {
	err        error
	retryAfter time.Duration
}

// send sends up to limit waiting operations, oldest first, in requests of
// up to MaxOps; fullOnly sends only full requests. It stops at the first
// transient failure (stall), whose operations go back to the head of the
// queue. err joins every failure met.
func (b *Batcher) send(limit int, fullOnly bool) (stall *stallError, err error) {
	var errs []error
	for limit > 0 {
		chunk := b.take(min(limit, b.opts.MaxOps), fullOnly)
		if chunk == nil {
			break
		}
		limit -= len(chunk)
		keep, err := b.deliver(chunk)
		b.putBack(len(chunk), keep)
		if err != nil {
			errs = append(errs, err)
		}
		if len(keep) > 0 {
			stall = &stallError{err: err}
			if ae := (*APIError)(nil); errors.As(err, &ae) {
				stall.retryAfter = ae.RetryAfter
			}
			break
		}
	}
	return stall, errors.Join(errs...)
}

// take moves up to n waiting operations in flight; fullOnly takes nothing
// unless a full request waits.
func (b *Batcher) take(n int, fullOnly bool) []Operation {
	b.mu.Lock()
	defer b.mu.Unlock()
	if fullOnly && len(b.pending) < b.opts.MaxOps {
		return nil
	}
	n = min(n, len(b.pending))
	if n == 0 {
		return nil
	}
	chunk := slices.Clone(b.pending[:n])
	b.pending = b.pending[n:]
	if len(b.pending) == 0 {
		b.pending = nil
	}
	b.inflight += n
	return chunk
}

// putBack settles n operations in flight: keep go back to the head of the
// queue, the others (sent or dropped) free their room.
func (b *Batcher) putBack(n int, keep []Operation) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.inflight -= n
	if len(keep) > 0 {
		b.pending = append(slices.Clip(keep), b.pending...)
	}
	if len(keep) < n {
		b.wakeLocked()
	}
}

// wakeLocked wakes every Add waiting for room.
func (b *Batcher) wakeLocked() {
	close(b.room)
	b.room = make(chan struct{})
}

// giveUpRest drops every operation still waiting after the final pass.
func (b *Batcher) giveUpRest(stall *stallError) error {
	b.mu.Lock()
	rest := b.pending
	b.pending = nil
	b.wakeLocked()
	b.mu.Unlock()
	if len(rest) == 0 {
		return nil
	}
	why := ErrClosed
	if stall != nil {
		why = fmt.Errorf("%w: %w", ErrClosed, stall.err)
	}
	err := fmt.Errorf("%d operations not sent: %w", len(rest), why)
	b.drop(err, rest)
	return err
}

// deliver sends ops in one request and answers those to send again later
// (a transient failure, or the batcher closing) with the error. Operations
// rejected for good are dropped: a 422 that names items drops only those
// and sends the others again; a 413 splits the request in two.
func (b *Batcher) deliver(ops []Operation) (keep []Operation, err error) {
	_, err = b.c.TrackOperations(b.ctx, ops)
	if err == nil {
		b.sent.Add(uint64(len(ops)))
		return nil, nil
	}
	if IsRetryable(err) || b.ctx.Err() != nil {
		return ops, err
	}
	var ae *APIError
	if errors.As(err, &ae) {
		switch {
		case ae.StatusCode == http.StatusRequestEntityTooLarge && len(ops) > 1:
			half := len(ops) / 2
			keep, err1 := b.deliver(ops[:half])
			if len(keep) > 0 {
				return append(keep, ops[half:]...), err1
			}
			keep, err2 := b.deliver(ops[half:])
			return keep, errors.Join(err1, err2)
		case ae.StatusCode == http.StatusUnprocessableEntity:
			if bad := badItems(ae, len(ops)); bad != nil {
				rest := make([]Operation, 0, len(ops)-len(bad))
				for i, op := range ops {
					if fields, ok := bad[i]; ok {
						b.drop(itemError(ae, fields), []Operation{op})
					} else {
						rest = append(rest, op)
					}
				}
				err := fmt.Errorf("%d of %d operations rejected: %w", len(bad), len(ops), ae)
				if len(rest) == 0 {
					return nil, err
				}
				keep, restErr := b.deliver(rest)
				return keep, errors.Join(err, restErr)
			}
		}
	}
	b.drop(err, ops)
	return nil, err
}

// badItems groups the field errors of a batch's 422 by item index; nil
// when any error is not about one item.
func badItems(ae *APIError, n int) map[int][]FieldError {
	bad := map[int][]FieldError{}
	for _, f := range ae.Fields {
		if len(f.Loc) < 3 || f.Loc[0] != "body" || f.Loc[1] != "operations" {
			return nil
		}
		i, ok := f.Loc[2].(int)
		if !ok || i < 0 || i >= n {
			return nil
		}
		bad[i] = append(bad[i], f)
	}
	if len(bad) == 0 {
		return nil
	}
	return bad
}

// itemError is the 422 of one item of a batch, its fields located as in
// the 422 of a single operation (["body", field]).
func itemError(ae *APIError, fields []FieldError) *APIError {
	e := &APIError{Method: ae.Method, Path: ae.Path, StatusCode: ae.StatusCode}
	msgs := make([]string, len(fields))
	for i, f := range fields {
		f.Loc = append([]any{"body"}, f.Loc[3:]...)
		e.Fields = append(e.Fields, f)
		msgs[i] = f.String()
	}
	e.Detail = strings.Join(msgs, "; ")
	return e
}

// drop gives ops up, to OnError or the log.
func (b *Batcher) drop(err error, ops []Operation) {
	b.dropped.Add(uint64(len(ops)))
	if b.opts.OnError != nil {
		b.opts.OnError(err, ops)
		return
	}
	b.c.logger.Error("batcher: operations dropped", "count", len(ops), "err", err)
}
