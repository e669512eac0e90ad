package client_test

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/omnimemory/omnimemory-metrics/client"
)

// totalFor answers the operations the service holds for toolID.
func totalFor(t *testing.T, c *client.Client, toolID string) int64 {
	t.Helper()
	page, err := c.QueryOperations(ctxFor(t, 30*time.Second), client.OperationQuery{ToolID: toolID, Limit: 1})
	if err != nil {
		t.Fatal(err)
	}
	return page.Total
}

// TestBatcherConcurrentAddsStoredOnce: 12,345 operations added from 8
// goroutines through a proxy that loses one answer in four are all stored,
// each exactly once, and counted once in the savings.
func TestBatcherConcurrentAddsStoredOnce(t *testing.T) {
	const total, workers, toolID = 12345, 8, "batcher-many"
	svc := newService(t, "")
	p := newProxy(t, svc.URL, func(n int, r *http.Request) verdict {
		return verdict{drop: r.URL.Path == "/track/tool-operations" && n%4 == 1}
	})
	c := newClient(t, p.URL)
	b := client.NewBatcher(c, client.BatchOptions{
		MaxOps: 500, FlushInterval: 20 * time.Millisecond, MaxPending: 2000,
		OnError: func(err error, ops []client.Operation) { t.Errorf("%d operations dropped: %v", len(ops), err) },
	})
	ctx := ctxFor(t, 2*time.Minute)
	session := uuid.New()
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; i < total; i += workers {
				op := sampleOp(session, toolID)
				op.TokensActual = int64(i % 100)
				if err := b.Add(ctx, op); err != nil {
					t.Errorf("Add: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := b.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	st := b.Stats()
	if st.Sent != total || st.Dropped != 0 || st.Pending != 0 {
		t.Errorf("stats %+v, want %d sent", st, total)
	}
	if p.dropped() == 0 {
		t.Errorf("no answer was lost: the test proves nothing")
	}
	if got := totalFor(t, c, toolID); got != total {
		t.Errorf("%d operations stored, want %d", got, total)
	}
	var wantPrevented int64
	for i := range total {
		wantPrevented += 5000 - int64(i%100)
	}
	sv, err := c.APISavings(ctx, client.SavingsQuery{TimeRange: client.Range1h, ToolID: toolID})
	if err != nil {
		t.Fatal(err)
	}
	if sv.TotalOperations != total || sv.TotalTokensPrevented != wantPrevented {
		t.Errorf("savings count %d operations and %d tokens, want %d and %d", sv.TotalOperations, sv.TotalTokensPrevented, total, wantPrevented)
	}
	s, err := c.GetSession(ctx, session)
	if err != nil || s.TotalOperations != total {
		t.Errorf("session %+v %v", s, err)
	}
}

// TestBatcherCloseFlushes: Close sends what is held, however little, and
// then the batcher takes nothing more.
func TestBatcherCloseFlushes(t *testing.T) {
	c := newClient(t, newService(t, "").URL)
	b := client.NewBatcher(c, client.BatchOptions{FlushInterval: time.Hour})
	ctx := ctxFor(t, 30*time.Second)
	for range 7 {
		if err := b.Add(ctx, sampleOp(uuid.New(), "batcher-close")); err != nil {
			t.Fatal(err)
		}
	}
	if got := totalFor(t, c, "batcher-close"); got != 0 {
		t.Fatalf("%d operations sent before a flush was due", got)
	}
	if st := b.Stats(); st.Pending != 7 {
		t.Errorf("stats %+v, want 7 pending", st)
	}
	if err := b.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if got := totalFor(t, c, "batcher-close"); got != 7 {
		t.Errorf("%d operations stored after Close, want 7", got)
	}
	if err := b.Add(ctx, sampleOp(uuid.New(), "batcher-close")); !errors.Is(err, client.ErrClosed) {
		t.Errorf("Add after Close: %v", err)
	}
	if err := b.TryAdd(sampleOp(uuid.New(), "batcher-close")); !errors.Is(err, client.ErrClosed) {
		t.Errorf("TryAdd after Close: %v", err)
	}
	if err := b.Flush(ctx); !errors.Is(err, client.ErrClosed) {
		t.Errorf("Flush after Close: %v", err)
	}
	if err := b.Close(ctx); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// TestBatcherBound: with MaxPending held (one request stuck in flight),
// TryAdd answers ErrQueueFull, Add blocks until its context ends, and a
// blocked Add goes on once the request completes.
func TestBatcherBound(t *testing.T) {
	svc := newService(t, "")
	gate := make(chan struct{})
	p := newProxy(t, svc.URL, func(n int, r *http.Request) verdict {
		if r.URL.Path == "/track/tool-operations" {
			return verdict{wait: gate}
		}
		return verdict{}
	})
	c := newClient(t, p.URL)
	b := client.NewBatcher(c, client.BatchOptions{MaxOps: 10, MaxPending: 20, FlushInterval: time.Hour})
	ctx := ctxFor(t, 30*time.Second)
	for range 20 {
		if err := b.Add(ctx, sampleOp(uuid.New(), "batcher-bound")); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.TryAdd(sampleOp(uuid.New(), "batcher-bound")); !errors.Is(err, client.ErrQueueFull) {
		t.Errorf("TryAdd when full: %v, want ErrQueueFull", err)
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if err := b.Add(short, sampleOp(uuid.New(), "batcher-bound")); !errors.Is(err, client.ErrQueueFull) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Add when full: %v, want ErrQueueFull and the context's error", err)
	}

	added := make(chan error, 1)
	go func() { added <- b.Add(ctx, sampleOp(uuid.New(), "batcher-bound")) }()
	select {
	case err := <-added:
		t.Fatalf("Add did not wait for room: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	close(gate)
	if err := <-added; err != nil {
		t.Fatalf("Add after room freed up: %v", err)
	}
	if err := b.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if got := totalFor(t, c, "batcher-bound"); got != 21 {
		t.Errorf("%d operations stored, want 21", got)
	}
}

// TestBatcherDropsOnlyRejectedItems: one invalid operation is reported and
// dropped; the others of its request are stored.
func TestBatcherDropsOnlyRejectedItems(t *testing.T) {
	c := newClient(t, newService(t, "").URL)
	var mu sync.Mutex
	var rejected []client.Operation
	var rejectErr error
	b := client.NewBatcher(c, client.BatchOptions{FlushInterval: time.Hour, OnError: func(err error, ops []client.Operation) {
		mu.Lock()
		defer mu.Unlock()
		rejected = append(rejected, ops...)
		rejectErr = err
	}})
	ctx := ctxFor(t, 30*time.Second)
	var bad client.Operation
	for i := range 5 {
		op := sampleOp(uuid.New(), "batcher-reject")
		if i == 2 {
			op.ToolName = "write"
			bad = op
		}
		if err := b.Add(ctx, op); err != nil {
			t.Fatal(err)
		}
	}
	err := b.Flush(ctx)
	var ae *client.APIError
	if !errors.As(err, &ae) || ae.StatusCode != http.StatusUnprocessableEntity {
		t.Errorf("Flush: %v, want the 422", err)
	}
	mu.Lock()
	if len(rejected) != 1 || rejected[0].SessionID != bad.SessionID || rejected[0].OperationID == uuid.Nil {
		t.Errorf("rejected %+v, want the bad operation with its id", rejected)
	}
	if !errors.As(rejectErr, &ae) || len(ae.Fields) != 1 || ae.Fields[0].Field() != "body.tool_name" {
		t.Errorf("rejection %v, want the item's own field error", rejectErr)
	}
	mu.Unlock()
	if got := totalFor(t, c, "batcher-reject"); got != 4 {
		t.Errorf("%d operations stored, want 4", got)
	}
	if st := b.Stats(); st.Sent != 4 || st.Dropped != 1 || st.Pending != 0 {
		t.Errorf("stats %+v", st)
	}

	// A request of bad operations only: each is reported on its own.
	for range 2 {
		if err := b.Add(ctx, bad); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Flush(ctx); !errors.As(err, &ae) || ae.StatusCode != http.StatusUnprocessableEntity {
		t.Errorf("Flush of bad operations only: %v", err)
	}
	if st := b.Stats(); st.Sent != 4 || st.Dropped != 3 || st.Pending != 0 {
		t.Errorf("stats %+v", st)
	}
	if err := b.Close(ctx); err != nil {
		t.Errorf("Close: %v", err)
	}
	if len(rejected) != 3 {
		t.Errorf("%d operations reported, want 3", len(rejected))
	}
}

// TestBatcherSplitsTooLargeRequests: a 413 splits the request in halves
// until the service takes them.
func TestBatcherSplitsTooLargeRequests(t *testing.T) {
	svc := newService(t, "")
	p := newProxy(t, svc.URL, func(_ int, r *http.Request) verdict {
		if r.URL.Path == "/track/tool-operations" && r.ContentLength > 2000 { // about 6 operations
			return verdict{status: http.StatusRequestEntityTooLarge}
		}
		return verdict{}
	})
	c := newClient(t, p.URL)
	b := client.NewBatcher(c, client.BatchOptions{MaxOps: 20, FlushInterval: time.Hour})
	ctx := ctxFor(t, 30*time.Second)
	for range 20 {
		if err := b.Add(ctx, sampleOp(uuid.New(), "batcher-split")); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if got := totalFor(t, c, "batcher-split"); got != 20 {
		t.Errorf("%d operations stored, want 20", got)
	}
	if n := p.count("/track/tool-operations"); n != 7 { // 20, 10, 5, 5, 10, 5, 5
		t.Errorf("%d requests, want 7", n)
	}
}

// TestBatcherKeepsOperationsOnTransientFailure: operations whose request
// failed for a transient reason stay queued with their ids, are sent by the
// next flush, and are stored once; what Close cannot send goes to OnError.
func TestBatcherKeepsOperationsOnTransientFailure(t *testing.T) {
	svc := newService(t, "")
	var mu sync.Mutex
	down := true
	p := newProxy(t, svc.URL, func(n int, r *http.Request) verdict {
		mu.Lock()
		defer mu.Unlock()
		if down && r.URL.Path == "/track/tool-operations" {
			if n == 1 {
				return verdict{drop: true} // stored, answer lost
			}
			return verdict{status: http.StatusBadGateway}
		}
		return verdict{}
	})
	c := newClient(t, p.URL, client.WithRetry(client.RetryPolicy{MaxAttempts: 1}))
	var dropped []client.Operation
	b := client.NewBatcher(c, client.BatchOptions{FlushInterval: time.Hour, OnError: func(_ error, ops []client.Operation) {
		dropped = append(dropped, ops...)
	}})
	ctx := ctxFor(t, 30*time.Second)
	for range 5 {
		if err := b.Add(ctx, sampleOp(uuid.New(), "batcher-transient")); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Flush(ctx); !client.IsRetryable(err) {
		t.Errorf("Flush with the answer lost: %v, want a transient error", err)
	}
	if err := b.Flush(ctx); !client.IsRetryable(err) {
		t.Errorf("Flush through a 502: %v, want a transient error", err)
	}
	if st := b.Stats(); st.Pending != 5 || st.Sent != 0 || st.Dropped != 0 {
		t.Errorf("stats %+v, want the 5 operations kept", st)
	}
	mu.Lock()
	down = false
	mu.Unlock()
	if err := b.Flush(ctx); err != nil {
		t.Fatalf("Flush once the service is back: %v", err)
	}
	if got := totalFor(t, c, "batcher-transient"); got != 5 {
		t.Errorf("%d operations stored, want 5: the resent request must be recognised", got)
	}

	mu.Lock()
	down = true
	mu.Unlock()
	for range 3 {
		if err := b.Add(ctx, sampleOp(uuid.New(), "batcher-transient")); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Close(ctx); !errors.Is(err, client.ErrClosed) || !client.IsRetryable(err) {
		t.Errorf("Close with the service down: %v", err)
	}
	if len(dropped) != 3 {
		t.Errorf("OnError got %d operations, want the 3 unsent", len(dropped))
	}
	if st := b.Stats(); st.Sent != 5 || st.Dropped != 3 || st.Pending != 0 {
		t.Errorf("stats %+v", st)
	}
}

// TestBatcherCloseGivesUpWhenContextEnds: a Close whose context ends
// abandons the request in flight and reports what is left.
func TestBatcherCloseGivesUpWhenContextEnds(t *testing.T) {
	svc := newService(t, "")
	gate := make(chan struct{})
	defer close(gate)
	p := newProxy(t, svc.URL, func(int, *http.Request) verdict { return verdict{wait: gate} })
	c := newClient(t, p.URL)
	var mu sync.Mutex
	var dropped int
	b := client.NewBatcher(c, client.BatchOptions{FlushInterval: time.Hour, OnError: func(_ error, ops []client.Operation) {
		mu.Lock()
		dropped += len(ops)
		mu.Unlock()
	}})
	for range 4 {
		if err := b.Add(t.Context(), sampleOp(uuid.New(), "batcher-abandon")); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := b.Close(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Close: %v, want the context's deadline", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("Close took %s", took)
	}
	mu.Lock()
	defer mu.Unlock()
	if dropped != 4 {
		t.Errorf("%d operations reported, want 4", dropped)
	}
}
