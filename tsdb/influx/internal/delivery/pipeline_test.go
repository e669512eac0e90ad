package delivery

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// heldServer stands in for InfluxDB's write endpoint and holds the
// request of the record "a" until the request of "b" has been answered
// (or 5 s passed): a drainer that sends one delivery at a time never
// sends b meanwhile. With fail set, it answers a's first request 503.
type heldServer struct {
	fail    bool
	bDone   chan struct{} // closed when b's first request is answered
	once    sync.Once
	mu      sync.Mutex
	posts   []string // each request's lines, joined by "|", as answered
	overlap bool     // b was answered while a was held
	failed  bool     // a was answered 503
	held    int      // requests of a being held
}

func (s *heldServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	first, _, _ := strings.Cut(string(body), "\n")
	status := http.StatusNoContent
	if strings.HasPrefix(first, "a ") {
		s.mu.Lock()
		s.held++
		s.mu.Unlock()
		defer func() {
			s.mu.Lock()
			s.held--
			s.mu.Unlock()
		}()
		select {
		case <-s.bDone:
		case <-time.After(5 * time.Second):
		}
		s.mu.Lock()
		if s.fail && !s.failed {
			status, s.failed = http.StatusServiceUnavailable, true
		}
		s.mu.Unlock()
	}
	s.mu.Lock()
	if strings.HasPrefix(first, "b ") && s.held > 0 {
		s.overlap = true
	}
	s.posts = append(s.posts, strings.ReplaceAll(strings.TrimSpace(string(body)), "\n", "|"))
	s.mu.Unlock()
	if strings.HasPrefix(first, "b ") {
		s.once.Do(func() { close(s.bDone) })
	}
	if status != http.StatusNoContent {
		w.Header().Set("Retry-After", "0")
		http.Error(w, `{"error":"busy"}`, status)
		return
	}
	w.WriteHeader(status)
}

// runHeld submits record a, and record b once a's request is in flight,
// to a writer of srv, and answers what OnDelivered saw, in order.
func runHeld(t *testing.T, srv *heldServer) []string {
	t.Helper()
	srv.bDone = make(chan struct{})
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	var mu sync.Mutex
	var seen []string
	w := openAt(t, hs.URL, func(o *Options) {
		o.OnDelivered = func(lps [][]byte) {
			mu.Lock()
			defer mu.Unlock()
			for _, lp := range lps {
				seen = append(seen, strings.TrimSpace(string(lp)))
			}
		}
	})

	errs := make(chan error, 2)
	go func() { errs <- w.Submit(context.Background(), []byte("a f=1i 1\n")) }()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		srv.mu.Lock()
		n := len(srv.posts)
		srv.mu.Unlock()
		if records, _ := w.Backlog(); records == 1 && n == 0 || time.Now().After(deadline) {
			break // a is in the outbox; its request goes out now
		}
	}
	time.Sleep(50 * time.Millisecond)
	go func() { errs <- w.Submit(context.Background(), []byte("b f=2i 2\n")) }()
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	// After a failure the callers return once their records are durable;
	// the drainer delivers them after its backoff.
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if records, _ := w.Backlog(); records == 0 {
			break
		}
	}
	if records, _ := w.Backlog(); records != 0 {
		t.Errorf("%d records left in the outbox", records)
	}
	mu.Lock()
	defer mu.Unlock()
	return slices.Clone(seen)
}

// TestDeliveriesOverlap: a record appended while an earlier one's request
// is in flight goes out at once, not after it; the earlier one is still
// reported delivered first, and each once.
func TestDeliveriesOverlap(t *testing.T) {
	srv := &heldServer{}
	seen := runHeld(t, srv)
	if !srv.overlap {
		t.Errorf("b was sent after a's request was answered; requests: %q", srv.posts)
	}
	if want := []string{"a f=1i 1", "b f=2i 2"}; !slices.Equal(seen, want) {
		t.Errorf("OnDelivered saw %q, want %q", seen, want)
	}
}

// TestFailedDeliveryResendsTheOnesAfterIt: when the request of a fails
// while b's, sent after it, succeeds, b is not reported delivered before
// a: both are sent again, in order, and each reported once.
func TestFailedDeliveryResendsTheOnesAfterIt(t *testing.T) {
	srv := &heldServer{fail: true}
	seen := runHeld(t, srv)
	if !srv.overlap {
		t.Fatalf("b was sent after a's request was answered; requests: %q", srv.posts)
	}
	if want := []string{"a f=1i 1", "b f=2i 2"}; !slices.Equal(seen, want) {
		t.Errorf("OnDelivered saw %q, want %q", seen, want)
	}
	sent := map[string]int{}
	for _, p := range srv.posts {
		for l := range strings.SplitSeq(p, "|") {
			sent[l]++
		}
	}
	if sent["a f=1i 1"] < 2 || sent["b f=2i 2"] < 2 {
		t.Errorf("requests %q: want a and b sent twice each at least", srv.posts)
	}
}
