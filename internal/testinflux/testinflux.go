// Package testinflux starts a real InfluxDB 1.8 server (influxd) for tests:
// every port on a free loopback port, every folder in a temporary directory,
// Flux enabled, so that stores are tested against the database they run on,
// through the same v2 compatibility API that InfluxDB 2.x serves.
//
// The binary is $OMNIMEMORY_INFLUXD or <module root>/.tools/bin/influxd, which
// scripts/provision.sh installs. When it is missing, tests skip with a message
// naming that script, except under CI=true, where they fail: CI must never
// skip them.
//
// One server per test package is the usual shape: Shared starts it on first
// use and RunMain stops it when the package's tests are done. Tests that stop
// and restart the server (outage tests) take their own with Start. Each test
// takes its own database from NewDatabase, so tests sharing a server never see
// each other's data.
package testinflux

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/omnimemory/omnimemory-metrics/internal/testtools"
	"github.com/omnimemory/omnimemory-metrics/internal/tools"
)

// EnvBinary names the environment variable that may point at influxd.
const EnvBinary = "OMNIMEMORY_INFLUXD"

// ErrNoBinary: no influxd binary was found. Start skips (or fails under CI)
// on it; StartServer returns it wrapped.
var ErrNoBinary = testtools.ErrMissing

// startTimeout bounds how long a start waits for /ping.
const startTimeout = 60 * time.Second

// Server is one influxd process and its temporary directory. Stop and Restart
// keep the directory and ports, so data written before a Stop is served again
// after Restart.
type Server struct {
	// URL is the HTTP base URL, e.g. http://127.0.0.1:40123.
	URL string

	binary string
	dir    string
	config string
	logf   string
	owned  bool // dir was created by StartServer and is removed by Close

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd exits
}

// Binary answers the path of the influxd to run ($OMNIMEMORY_INFLUXD, else
// <module root>/.tools/bin/influxd), or an error wrapping ErrNoBinary.
func Binary() (string, error) {
	return testtools.Find("influxd")
}

// Start starts a server for t and stops it when t ends. Without a binary it
// skips t, or fails it when $CI is "true".
func Start(t testing.TB) *Server {
	t.Helper()
	s, err := StartServer()
	if err != nil {
		skipOrFatal(t, err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("testinflux: %v", err)
		}
	})
	return s
}

func skipOrFatal(t testing.TB, err error) {
	t.Helper()
	testtools.SkipOrFatal(t, fmt.Errorf("testinflux: %w", err))
}

// StartServer starts influxd in a new temporary directory and waits until it
// answers /ping. Close stops it and removes the directory.
func StartServer() (*Server, error) {
	bin, err := Binary()
	if err != nil {
		return nil, err
	}
	// A free port may be taken by someone else before influxd binds it:
	// then start again on fresh ports.
	var errs []error
	for range 3 {
		dir, err := os.MkdirTemp("", "testinflux-")
		if err != nil {
			return nil, err
		}
		s, err := newServer(bin, dir)
		if err == nil {
			s.owned = true
			if err = s.Restart(); err == nil {
				return s, nil
			}
		}
		os.RemoveAll(dir)
		errs = append(errs, err)
	}
	return nil, errors.Join(errs...)
}

func newServer(bin, dir string) (*Server, error) {
	httpPort, err := tools.FreePort()
	if err != nil {
		return nil, err
	}
	rpcPort, err := tools.FreePort()
	if err != nil {
		return nil, err
	}
	s := &Server{
		URL:    fmt.Sprintf("http://127.0.0.1:%d", httpPort),
		binary: bin,
		dir:    dir,
		config: filepath.Join(dir, "influxdb.conf"),
		logf:   filepath.Join(dir, "influxd.log"),
	}
	conf := tools.InfluxdConfig(dir, rpcPort, httpPort)
	if err := os.WriteFile(s.config, []byte(conf), 0o600); err != nil {
		return nil, err
	}
	return s, nil
}

// Restart starts the server again after Stop, on the same ports and data. On
// a running server it does nothing.
func (s *Server) Restart() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return nil
	}
	logFile, err := os.OpenFile(s.logf, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	cmd := exec.Command(s.binary, "run", "-config", s.config)
	cmd.Dir = s.dir
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.Env = append(os.Environ(), "INFLUXDB_CONFIG_PATH="+s.config)
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return fmt.Errorf("start influxd: %w", err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		logFile.Close()
		close(done)
	}()
	s.cmd, s.done = cmd, done

	deadline := time.Now().Add(startTimeout)
	for {
		if err := s.ping(); err == nil {
			return nil
		}
		select {
		case <-done:
			s.cmd = nil
			return fmt.Errorf("influxd exited during start: %s", s.logTail())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.stopLocked(syscall.SIGKILL)
			return fmt.Errorf("influxd did not answer /ping within %s: %s", startTimeout, s.logTail())
		}
	}
}

func (s *Server) ping() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.URL+"/ping", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent && resp.StatusCode != http.StatusOK {
		return fmt.Errorf("ping: %s", resp.Status)
	}
	return nil
}

// Stop stops the server gracefully (SIGTERM, then SIGKILL after 10 s) and
// keeps its data for Restart. Stopping a stopped server does nothing.
func (s *Server) Stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stopLocked(syscall.SIGTERM)
}

// Kill stops the server abruptly (SIGKILL), as a crash would.
func (s *Server) Kill() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stopLocked(syscall.SIGKILL)
}

func (s *Server) stopLocked(sig os.Signal) error {
	if s.cmd == nil {
		return nil
	}
	cmd, done := s.cmd, s.done
	s.cmd, s.done = nil, nil
	_ = cmd.Process.Signal(sig)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
	return nil
}

// Close stops the server and removes its directory.
func (s *Server) Close() error {
	err := s.Stop()
	if s.owned {
		if rerr := os.RemoveAll(s.dir); rerr != nil {
			err = errors.Join(err, rerr)
		}
	}
	return err
}

// Running reports whether the process runs (it may not yet answer).
func (s *Server) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cmd != nil
}

// logTail answers the end of influxd's log, for error messages.
func (s *Server) logTail() string {
	b, _ := os.ReadFile(s.logf)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return strings.TrimSpace(string(b))
}

// Query runs one InfluxQL statement through /query (POST) and fails on an
// HTTP error or a statement error in the answer.
func (s *Server) Query(ctx context.Context, q string) error {
	form := url.Values{"q": {q}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.URL+"/query", strings.NewReader(form.Encode()))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || bytes.Contains(body, []byte(`"error"`)) {
		return fmt.Errorf("influxql %q: %s: %s", q, resp.Status, bytes.TrimSpace(body))
	}
	return nil
}

// CreateDatabase creates the database name (a no-op when it exists).
func (s *Server) CreateDatabase(ctx context.Context, name string) error {
	return s.Query(ctx, `CREATE DATABASE "`+strings.ReplaceAll(name, `"`, `\"`)+`"`)
}

var dbSeq atomic.Int64

// NewDatabase creates a database with a name unique to this process and
// answers it; it is dropped when t ends (when the server still runs).
func (s *Server) NewDatabase(t testing.TB) string {
	t.Helper()
	var r [4]byte
	_, _ = rand.Read(r[:])
	name := fmt.Sprintf("test_%d_%s", dbSeq.Add(1), hex.EncodeToString(r[:]))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.CreateDatabase(ctx, name); err != nil {
		t.Fatalf("testinflux: %v", err)
	}
	t.Cleanup(func() {
		if !s.Running() {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = s.Query(ctx, `DROP DATABASE "`+name+`"`)
	})
	return name
}

// NewBucket creates a database as NewDatabase does and answers its v2
// compatibility bucket name, "<database>/autogen".
func (s *Server) NewBucket(t testing.TB) string {
	t.Helper()
	return s.NewDatabase(t) + "/autogen"
}

var shared struct {
	mu  sync.Mutex
	srv *Server
	err error
}

// Shared answers the package's shared server, started on first use; RunMain
// stops it. Without a binary it skips t (fails it under CI=true). Tests that
// stop the server must not use it: take one from Start instead.
func Shared(t testing.TB) *Server {
	t.Helper()
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.srv == nil && shared.err == nil {
		shared.srv, shared.err = StartServer()
	}
	if shared.err != nil {
		skipOrFatal(t, shared.err)
	}
	if !shared.srv.Running() {
		t.Fatal("testinflux: the shared server was stopped; tests that stop it must use Start")
	}
	return shared.srv
}

// RunMain runs the package's tests and then stops the shared server, if one
// was started. Use it from TestMain: os.Exit(testinflux.RunMain(m)).
func RunMain(m *testing.M) int {
	code := m.Run()
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.srv != nil {
		if err := shared.srv.Close(); err != nil {
			fmt.Fprintf(os.Stderr, "testinflux: %v\n", err)
		}
		shared.srv = nil
	}
	return code
}
