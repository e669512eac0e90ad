package client_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/omnimemory/omnimemory-metrics/client"
	"github.com/omnimemory/omnimemory-metrics/exporter"
	"github.com/omnimemory/omnimemory-metrics/handlers"
	"github.com/omnimemory/omnimemory-metrics/tsdb/sqlite"
)

// exampleURL is the service the Example functions call, started by TestMain.
var exampleURL string

func TestMain(m *testing.M) {
	os.Exit(func() int {
		dir, err := os.MkdirTemp("", "omnimemory-client-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		svc, err := startService(filepath.Join(dir, "metrics.db"), "")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer func() {
			if err := svc.close(); err != nil {
				fmt.Fprintln(os.Stderr, err)
			}
		}()
		exampleURL = svc.URL
		return m.Run()
	}())
}

// service is the real omnimemory-metrics HTTP stack on a SQLite file.
type service struct {
	URL     string
	srv     *httptest.Server
	tracker *exporter.Tracker
	store   *sqlite.Store
}

// startService assembles the service as its main does: the SQLite store,
// the tracker and the reporter at 0.015 USD per 1,000 tokens, behind the
// real router; token, when set, is required as a bearer token.
func startService(path, token string) (*service, error) {
	logger := slog.New(slog.DiscardHandler)
	store, err := sqlite.Open(context.Background(), path, logger)
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	reg := prometheus.NewRegistry()
	tracker := exporter.NewTracker(store, exporter.NewMetrics(reg, 0.015, 0), exporter.TrackerOptions{}, logger)
	reporter := exporter.NewReporter(store, exporter.Pricing{PerThousandUSD: 0.015}, nil)
	h := handlers.New(handlers.Options{
		Store: store, Tracker: tracker, Reporter: reporter, Gatherer: reg, Registerer: reg,
		CORSOrigins: []string{"*"}, Logger: logger, APIToken: token,
	})
	srv := httptest.NewServer(h)
	return &service{URL: srv.URL, srv: srv, tracker: tracker, store: store}, nil
}

// close stops the server, drains the writer and closes the store.
func (s *service) close() error {
	s.srv.Close()
	return errors.Join(s.tracker.Close(context.Background()), s.store.Close())
}

// newService starts a service of its own for one test.
func newService(t *testing.T, token string) *service {
	t.Helper()
	s, err := startService(filepath.Join(t.TempDir(), "metrics.db"), token)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.close(); err != nil {
			t.Errorf("close service: %v", err)
		}
	})
	return s
}

// verdict is what a proxy does with one request.
type verdict struct {
	// status, when not 0, is answered by the proxy itself (with retryAfter
	// as Retry-After when set); the service never sees the request.
	status     int
	retryAfter string
	// drop forwards the request, lets the service act on it, and then
	// closes the connection without answering: an answer lost on the way.
	drop bool
	// wait, when not nil, holds the request until it is closed.
	wait <-chan struct{}
}

// proxy stands between a client and a service and fails requests as its
// test decides.
type proxy struct {
	URL    string
	target string
	decide func(n int, r *http.Request) verdict

	mu      sync.Mutex
	hits    map[string]int // by path
	drops   int
	headers []http.Header
}

// newProxy forwards to target; decide is asked about the n-th request
// (from 1) of each path.
func newProxy(t *testing.T, target string, decide func(n int, r *http.Request) verdict) *proxy {
	t.Helper()
	p := &proxy{target: target, decide: decide, hits: map[string]int{}}
	srv := httptest.NewServer(http.HandlerFunc(p.serve))
	t.Cleanup(srv.Close)
	p.URL = srv.URL
	return p
}

func (p *proxy) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	p.mu.Lock()
	p.hits[r.URL.Path]++
	n := p.hits[r.URL.Path]
	p.headers = append(p.headers, r.Header.Clone())
	p.mu.Unlock()
	v := verdict{}
	if p.decide != nil {
		v = p.decide(n, r)
	}
	if v.wait != nil {
		select {
		case <-v.wait:
		case <-r.Context().Done():
			return
		}
	}
	if v.status != 0 {
		if v.retryAfter != "" {
			w.Header().Set("Retry-After", v.retryAfter)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(v.status)
		fmt.Fprintf(w, `{"detail":"proxy answered %d"}`, v.status)
		return
	}
	req, err := http.NewRequestWithContext(r.Context(), r.Method, p.target+r.URL.RequestURI(), bytes.NewReader(body))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	req.Header = r.Header.Clone()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(resp.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	if v.drop {
		p.mu.Lock()
		p.drops++
		p.mu.Unlock()
		panic(http.ErrAbortHandler) // close the connection, answer nothing
	}
	for k, vs := range resp.Header {
		w.Header()[k] = vs
	}
	w.WriteHeader(resp.StatusCode)
	_, _ = w.Write(answer)
}

// count answers the requests seen for path.
func (p *proxy) count(path string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.hits[path]
}

func (p *proxy) dropped() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.drops
}

func (p *proxy) seenHeaders() []http.Header {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]http.Header(nil), p.headers...)
}

// dropFirst loses the answer to the first request of path.
func dropFirst(path string) func(int, *http.Request) verdict {
	return func(n int, r *http.Request) verdict {
		return verdict{drop: r.URL.Path == path && n == 1}
	}
}

// fastRetry retries quickly, so that tests do not wait on backoff.
var fastRetry = client.WithRetry(client.RetryPolicy{InitialBackoff: 5 * time.Millisecond, MaxBackoff: 20 * time.Millisecond})

func newClient(t *testing.T, url string, opts ...client.Option) *client.Client {
	t.Helper()
	c, err := client.New(url, append([]client.Option{fastRetry}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// ctxFor answers a context that ends with the test or after d.
func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}
