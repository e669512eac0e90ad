package handlers_test

import (
	"context"
	"io"
	"log/slog"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/omnimemory/omnimemory-metrics/exporter"
	"github.com/omnimemory/omnimemory-metrics/handlers"
	"github.com/omnimemory/omnimemory-metrics/tsdb"
	"github.com/omnimemory/omnimemory-metrics/tsdb/sqlite"
)

// gatedStore holds every write until the gate opens, so that the writer's
// queue fills up behind it.
type gatedStore struct {
	tsdb.Store
	entered chan struct{} // a write is waiting at the gate
	gate    chan struct{}
}

func (g gatedStore) WriteOperations(ctx context.Context, ops []tsdb.Operation) error {
	select {
	case g.entered <- struct{}{}:
	default:
	}
	<-g.gate
	return g.Store.WriteOperations(ctx, ops)
}

// TestOverloadIsSaidWith503AndRetryAfter fills the writer's bounded queue:
// further POSTs answer 503 with Retry-After at once, are counted as shed,
// and are never stored; the queued ones are stored once the store moves.
func TestOverloadIsSaidWith503AndRetryAfter(t *testing.T) {
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	store, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "m.db"), logger)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	gated := gatedStore{Store: store, entered: make(chan struct{}, 1), gate: make(chan struct{})}
	var once sync.Once
	open := func() { once.Do(func() { close(gated.gate) }) }
	reg := prometheus.NewRegistry()
	h, svc := newStack(gated, exporter.Options{Registerer: reg, Logger: logger, Tracker: exporter.TrackerOptions{QueueSize: 4}}, handlers.Options{})
	srv := httptest.NewServer(h)
	defer srv.Close()
	defer open() // before the server closes, whatever happens
	s := &service{t: t, srv: srv, reg: reg}

	// One request is held by the store, then four wait in the queue.
	var wg sync.WaitGroup
	statuses := make(chan int, 5)
	post := func() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			statuses <- s.do("POST", "/track/tool-operation", op(nil)).status
		}()
	}
	post()
	<-gated.entered
	for i := 0; i < 4; i++ {
		post()
	}
	waitFor(t, func() bool { return testutil.ToFloat64(metricVec(t, reg, "omnimemory_ingest_queue_depth")) == 4 })
	shed := 0
	for i := 0; i < 20; i++ {
		r := s.do("POST", "/track/tool-operation", op(nil))
		if r.status != 503 || r.header.Get("Retry-After") == "" {
			t.Fatalf("POST past the queue's bound: %d, Retry-After %q", r.status, r.header.Get("Retry-After"))
		}
		assertDetail(t, r)
		shed++
	}
	if got := testutil.ToFloat64(metricVec(t, reg, "omnimemory_ingest_shed_operations_total")); got != float64(shed) {
		t.Errorf("shed counter %v, want %d", got, shed)
	}
	open()
	wg.Wait()
	close(statuses)
	for code := range statuses {
		if code != 200 {
			t.Errorf("a queued request answered %d", code)
		}
	}
	page, err := store.QueryOperations(context.Background(), tsdb.OperationFilter{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	if page.Total != 5 {
		t.Errorf("%d operations stored, want the 5 accepted", page.Total)
	}
	if err := svc.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	r := s.do("POST", "/track/tool-operation", op(nil))
	if r.status != 503 || r.header.Get("Retry-After") == "" {
		t.Errorf("POST after shutdown began: %d", r.status)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for i := 0; i < 500; i++ {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("condition never held")
}
