package client_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/omnimemory/omnimemory-metrics/client"
)

// exampleURL is the service the Example functions call, started by TestMain.
var exampleURL string

// serviceBinary is the service, built by TestMain from the repository that
// holds this module.
var serviceBinary string

func TestMain(m *testing.M) {
	os.Exit(func() int {
		dir, err := os.MkdirTemp("", "omnimemory-client-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		if serviceBinary, err = buildService(dir); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
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

// serverModule is the module of the service, whose repository holds this
// one.
const serverModule = "module github.com/omnimemory/omnimemory-metrics\n"

// buildService builds ./cmd/omnimemory-metrics of the repository above this
// module into dir. This module cannot import the service's packages (that
// would pull the service's dependencies into every tool that imports the
// client), so its tests run the service as a program, as a tool meets it.
func buildService(dir string) (string, error) {
	root, err := filepath.Abs("..")
	if err != nil {
		return "", err
	}
	if b, err := os.ReadFile(filepath.Join(root, "go.mod")); err != nil || !strings.Contains(string(b), serverModule) {
		return "", fmt.Errorf("the client's tests run the service built from the repository around this module, and %s holds no %s", root, strings.TrimSpace(serverModule))
	}
	bin := filepath.Join(dir, "omnimemory-metrics")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/omnimemory-metrics")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building the service: %v: %s", err, out)
	}
	return bin, nil
}

// service is the real omnimemory-metrics, run as a program on a SQLite file.
type service struct {
	URL  string
	cmd  *exec.Cmd
	done chan error
	log  *bytes.Buffer
}

// startService runs the service on a free loopback port, storing in the
// SQLite file at path, at 0.015 USD per 1,000 tokens (the default); token,
// when set, is required as a bearer token.
func startService(path, token string) (*service, error) {
	cmd := exec.Command(serviceBinary, "--listen", "127.0.0.1:0", "--sqlite-db-path", path)
	for _, kv := range os.Environ() { // no setting of the caller's leaks in
		if !strings.HasPrefix(kv, "OMNIMEMORY_") && !strings.HasPrefix(kv, "INFLUXDB_") &&
			!strings.HasPrefix(kv, "SQLITE_") && !strings.HasPrefix(kv, "DATABASE_URL=") && !strings.HasPrefix(kv, "OTEL_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	if token != "" {
		cmd.Env = append(cmd.Env, "OMNIMEMORY_API_TOKEN="+token)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start the service: %w", err)
	}
	s := &service{cmd: cmd, done: make(chan error, 1), log: &bytes.Buffer{}}
	addr := make(chan string, 1)
	go func() {
		// The service logs the address it serves on ("msg=serving
		// addr=127.0.0.1:PORT"); the rest is kept for error messages.
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			s.log.WriteString(line + "\n")
			if _, rest, ok := strings.Cut(line, "msg=serving addr="); ok {
				a, _, _ := strings.Cut(rest, " ")
				select {
				case addr <- a:
				default:
				}
			}
		}
		s.done <- cmd.Wait()
	}()
	select {
	case a := <-addr:
		s.URL = "http://" + a
		return s, nil
	case err := <-s.done:
		return nil, fmt.Errorf("the service exited at start (%v): %s", err, s.log)
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		return nil, fmt.Errorf("the service did not start within 30s: %s", s.log)
	}
}

// close stops the service as an operator would (SIGTERM: it drains its
// writer and closes the store) and fails when it does not exit cleanly.
func (s *service) close() error {
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-s.done:
		if err != nil {
			return fmt.Errorf("the service exited with %v: %s", err, s.log)
		}
		return nil
	case <-time.After(30 * time.Second):
		_ = s.cmd.Process.Kill()
		return fmt.Errorf("the service did not stop within 30s of SIGTERM: %s", s.log)
	}
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
