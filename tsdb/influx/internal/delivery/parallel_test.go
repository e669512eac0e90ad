package delivery

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// lineServer stands in for InfluxDB's write endpoint: it keeps the lines of
// every request it answers 204, answers 503 to the first fail requests, and
// records how many requests it served at once.
type lineServer struct {
	mu        sync.Mutex
	lines     map[string]int
	requests  int
	fail      atomic.Int64
	inFlight  atomic.Int64
	maxAtOnce atomic.Int64
}

func (s *lineServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	n := s.inFlight.Add(1)
	defer s.inFlight.Add(-1)
	for {
		m := s.maxAtOnce.Load()
		if n <= m || s.maxAtOnce.CompareAndSwap(m, n) {
			break
		}
	}
	body, _ := io.ReadAll(r.Body)
	time.Sleep(20 * time.Millisecond) // long enough for the parts to overlap
	if s.fail.Add(-1) >= 0 {
		w.Header().Set("Retry-After", "0")
		http.Error(w, `{"error":"busy"}`, http.StatusServiceUnavailable)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests++
	for _, l := range bytes.SplitAfter(body, []byte("\n")) {
		if len(l) > 0 {
			s.lines[string(l)]++
		}
	}
	w.WriteHeader(http.StatusNoContent)
}

// openAt opens a writer to the write endpoint at url, with its outbox in
// a temporary folder, after applying each of with to its options.
func openAt(t *testing.T, url string, with ...func(*Options)) *Writer {
	t.Helper()
	o := Options{
		URL: url, Token: "t", Org: "o", Bucket: "b",
		HTTP:      &http.Client{Timeout: 10 * time.Second},
		OutboxDir: filepath.Join(t.TempDir(), "outbox"), OutboxMaxBytes: 256 << 20,
		DeadLetterPath: filepath.Join(t.TempDir(), "dead.lp"),
		WriteTimeout:   30 * time.Second, RequestTimeout: 10 * time.Second,
		RetryMin: time.Millisecond, RetryMax: 10 * time.Millisecond,
		MaxBatchBytes: 4 << 20, SlotKeys: 1024,
		Registerer: prometheus.NewRegistry(),
	}
	for _, f := range with {
		f(&o)
	}
	w, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.Close() })
	return w
}

// submitBig submits a record of 20,000 lines (bigRecord) to a writer of
// srv, and answers the writer and the record.
func submitBig(t *testing.T, srv *lineServer) (*Writer, []byte) {
	t.Helper()
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	w := openAt(t, hs.URL)
	lp := bigRecord(20_000)
	if err := w.Submit(context.Background(), lp); err != nil {
		t.Fatal(err)
	}
	return w, lp
}

// bigRecord answers n distinct lines of line protocol, about 120 bytes each.
func bigRecord(n int) []byte {
	var b []byte
	for i := range n {
		b = fmt.Appendf(b, "m,tag=t%d f=%di,pad=\"%070d\" %d\n", i%97, i, i, 1_700_000_000_000_000_000+int64(i))
	}
	return b
}

// TestLargeDeliveryGoesOutInParallelParts: a record of about 2.4 MB is
// sent as several requests at once, which together hold each of its lines
// once.
func TestLargeDeliveryGoesOutInParallelParts(t *testing.T) {
	srv := &lineServer{lines: map[string]int{}}
	_, lp := submitBig(t, srv)
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if srv.requests < 2 || srv.maxAtOnce.Load() < 2 {
		t.Errorf("%d requests, at most %d at once; want several at once", srv.requests, srv.maxAtOnce.Load())
	}
	want := bytes.SplitAfter(lp, []byte("\n"))
	want = want[:len(want)-1]
	for _, l := range want {
		if srv.lines[string(l)] != 1 {
			t.Fatalf("line %q delivered %d times, want once", l, srv.lines[string(l)])
		}
	}
	if len(srv.lines) != len(want) {
		t.Errorf("%d distinct lines delivered, want %d", len(srv.lines), len(want))
	}
}

// TestParallelPartsRetried: when InfluxDB refuses some of the parts for a
// while, the whole is delivered again after the backoff, and every line
// arrives (some twice: InfluxDB keeps one point per series and time).
func TestParallelPartsRetried(t *testing.T) {
	srv := &lineServer{lines: map[string]int{}}
	srv.fail.Store(3)
	w, lp := submitBig(t, srv)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if records, _ := w.Backlog(); records == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if records, _ := w.Backlog(); records != 0 {
		t.Fatalf("%d records still in the outbox", records)
	}
	srv.mu.Lock()
	defer srv.mu.Unlock()
	lines := bytes.SplitAfter(lp, []byte("\n"))
	missing := slices.IndexFunc(lines[:len(lines)-1], func(l []byte) bool { return srv.lines[string(l)] == 0 })
	if missing >= 0 {
		t.Fatalf("line %d (%q) never delivered", missing, lines[missing])
	}
}
