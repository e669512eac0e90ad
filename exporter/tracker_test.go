package exporter

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/omnimemory/omnimemory-metrics/tsdb"
)

// stallingWriter is a store whose writes stall: each takes stall, ending
// early when its context ends unless deaf, and then fails.
type stallingWriter struct {
	stall time.Duration
	deaf  bool // ignores its context, as a write stuck in the kernel does

	mu      sync.Mutex
	written map[uuid.UUID]bool // every operation a write was given
}

func (w *stallingWriter) WriteOperations(ctx context.Context, ops []tsdb.Operation) error {
	w.mu.Lock()
	for _, op := range ops {
		w.written[op.ID] = true
	}
	w.mu.Unlock()
	timer := time.NewTimer(w.stall)
	defer timer.Stop()
	if w.deaf {
		<-timer.C
		return errors.New("disk stalled")
	}
	select {
	case <-timer.C:
		return errors.New("disk stalled")
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (w *stallingWriter) saw(id uuid.UUID) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.written[id]
}

func newTestTracker(t *testing.T, w tsdb.OperationWriter, timeout time.Duration) *Tracker {
	tr := NewTracker(w, NewMetrics(prometheus.NewRegistry(), 0, 10), TrackerOptions{WriteTimeout: timeout}, slog.New(slog.DiscardHandler))
	t.Cleanup(func() { _ = tr.Close(context.Background()) })
	return tr
}

// tracked is the outcome of one Track: the operation's id, the error and
// the time the answer took.
type tracked struct {
	id   uuid.UUID
	err  error
	took time.Duration
}

// trackAfter sends one operation after delay.
func trackAfter(tr *Tracker, delay time.Duration, out chan<- tracked) {
	time.Sleep(delay)
	op := tsdb.Operation{ID: uuid.New(), SessionID: uuid.New(), ToolName: "read", OperationMode: "full", ToolID: "t", CreatedAt: time.Now()}
	start := time.Now()
	err := tr.Track(context.Background(), op)
	out <- tracked{op.ID, err, time.Since(start)}
}

// TestRequestsQueuedBehindAStalledCommitAnswerByTheirDeadline: a request
// that arrives while the writer waits on a store that does not answer is
// answered 503-worthy (tsdb.ErrUnavailable) by its own deadline, not one
// whole write timeout after the stalled commit ends.
func TestRequestsQueuedBehindAStalledCommitAnswerByTheirDeadline(t *testing.T) {
	const timeout = time.Second
	w := &stallingWriter{stall: time.Hour, written: map[uuid.UUID]bool{}}
	tr := newTestTracker(t, w, timeout)
	out := make(chan tracked, 2)
	go trackAfter(tr, 0, out)
	go trackAfter(tr, timeout/2, out) // queued behind the first commit
	for range 2 {
		r := <-out
		if !errors.Is(r.err, tsdb.ErrUnavailable) {
			t.Errorf("a write the store did not answer: %v, want tsdb.ErrUnavailable", r.err)
		}
		// The second request, without its own deadline, would wait for the
		// rest of the first commit and then a whole commit of its own.
		if r.took > timeout+400*time.Millisecond {
			t.Errorf("a request waited %v; its write deadline is %v", r.took, timeout)
		}
	}
}

// TestRequestPastItsDeadlineIsNotWritten: behind a commit that outlasts the
// deadline regardless of its context, a queued request is answered
// ErrDeadline and never handed to the store, so its 503 is true.
func TestRequestPastItsDeadlineIsNotWritten(t *testing.T) {
	const timeout = 300 * time.Millisecond
	w := &stallingWriter{stall: 3 * timeout, deaf: true, written: map[uuid.UUID]bool{}}
	tr := newTestTracker(t, w, timeout)
	out := make(chan tracked, 2)
	go trackAfter(tr, 0, out)
	time.Sleep(50 * time.Millisecond) // let the first commit begin
	go trackAfter(tr, 0, out)
	var queued []tracked
	for range 2 {
		r := <-out
		if r.err == nil {
			t.Fatalf("a write to a stalled store succeeded")
		}
		if !w.saw(r.id) {
			queued = append(queued, r)
		}
	}
	if len(queued) != 1 {
		t.Fatalf("%d of 2 requests were never handed to the store, want 1: the one queued behind the stalled commit", len(queued))
	}
	if !errors.Is(queued[0].err, ErrDeadline) || !errors.Is(queued[0].err, tsdb.ErrUnavailable) {
		t.Errorf("the expired request answered %v, want ErrDeadline (a tsdb.ErrUnavailable)", queued[0].err)
	}
}

// gateWriter is a store whose writes wait at a gate: it counts the writes
// in progress and lets them all go when the gate opens.
type gateWriter struct {
	gate chan struct{}

	mu       sync.Mutex
	inFlight int
	most     int
	sizes    []int
}

func (w *gateWriter) WriteOperations(_ context.Context, ops []tsdb.Operation) error {
	w.mu.Lock()
	w.inFlight++
	w.most = max(w.most, w.inFlight)
	w.sizes = append(w.sizes, len(ops))
	w.mu.Unlock()
	<-w.gate
	w.mu.Lock()
	w.inFlight--
	w.mu.Unlock()
	return nil
}

func (w *gateWriter) state() (inFlight, most int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.inFlight, w.most
}

// TestBulkWriters: requests of BulkOperations or more are committed by
// writers of their own, at once, beside the writer of small requests;
// without BulkWriters one commit runs at a time.
func TestBulkWriters(t *testing.T) {
	ops := func(n int) []tsdb.Operation {
		out := make([]tsdb.Operation, n)
		for i := range out {
			out[i] = tsdb.Operation{ID: uuid.New(), SessionID: uuid.New(), ToolName: "read", OperationMode: "full", ToolID: "t", CreatedAt: time.Now()}
		}
		return out
	}
	for _, tc := range []struct {
		bulkWriters, want int
	}{{0, 1}, {2, 3}} {
		w := &gateWriter{gate: make(chan struct{})}
		tr := NewTracker(w, NewMetrics(prometheus.NewRegistry(), 0, 10),
			TrackerOptions{BulkWriters: tc.bulkWriters, BulkOperations: 10}, slog.New(slog.DiscardHandler))
		var wg sync.WaitGroup
		for _, n := range []int{1, 10, 20} {
			wg.Go(func() {
				if err := tr.Track(context.Background(), ops(n)...); err != nil {
					t.Error(err)
				}
			})
		}
		deadline := time.Now().Add(5 * time.Second)
		for {
			inFlight, _ := w.state()
			if inFlight == tc.want || time.Now().After(deadline) {
				break
			}
			time.Sleep(time.Millisecond)
		}
		time.Sleep(20 * time.Millisecond) // a commit too many would show now
		close(w.gate)
		wg.Wait()
		if err := tr.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
		if _, most := w.state(); most != tc.want {
			t.Errorf("BulkWriters %d: %d commits at once, want %d (commit sizes %v)", tc.bulkWriters, most, tc.want, w.sizes)
		}
	}
}
