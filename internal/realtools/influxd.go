package realtools

import (
	"bytes"
	"context"
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
	"syscall"
	"time"
)

// InfluxdOptions say where and how StartInfluxd runs influxd.
type InfluxdOptions struct {
	// Dir holds influxd's data, configuration and log. Empty: a new
	// temporary directory, which Close removes.
	Dir string
	// Env is influxd's environment (INFLUXDB_CONFIG_PATH is added). Nil:
	// this process's environment less its INFLUXDB_ settings, which would
	// override the configuration.
	Env []string
}

// influxdStartTimeout bounds how long a start waits for /ping.
const influxdStartTimeout = 60 * time.Second

// Influxd is a real InfluxDB 1.8 server (influxd) on free loopback ports, with
// Flux enabled, so that stores are tested and benchmarked against the
// database they run on, through the same v2 compatibility API that InfluxDB
// 2.x serves. Stop and Restart keep its directory and ports, so data written
// before a Stop is served again after Restart.
type Influxd struct {
	// URL is the HTTP base URL, e.g. http://127.0.0.1:40123.
	URL string

	binary string
	dir    string
	config string
	env    []string
	owned  bool // dir was created by StartInfluxd and is removed by Close

	mu sync.Mutex
	process
}

// StartInfluxd starts influxd (see Find) and waits until it answers /ping,
// at most a minute. Without a binary it answers an error wrapping
// ErrMissing. Close stops it.
func StartInfluxd(ctx context.Context, o InfluxdOptions) (*Influxd, error) {
	bin, err := Find("influxd")
	if err != nil {
		return nil, err
	}
	// A free port may be taken by someone else before influxd binds it:
	// then start again on fresh ports.
	var errs []error
	for range 3 {
		s, err := newInfluxd(bin, o)
		if err == nil {
			if err = s.start(ctx); err == nil {
				return s, nil
			}
			if s.owned {
				os.RemoveAll(s.dir)
			}
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	return nil, errors.Join(errs...)
}

func newInfluxd(bin string, o InfluxdOptions) (*Influxd, error) {
	s := &Influxd{binary: bin, dir: o.Dir}
	if s.dir == "" {
		dir, err := os.MkdirTemp("", "influxd-")
		if err != nil {
			return nil, err
		}
		s.dir, s.owned = dir, true
	} else if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return nil, err
	}
	httpPort, err := FreePort()
	if err == nil {
		var rpcPort int
		if rpcPort, err = FreePort(); err == nil {
			s.URL = fmt.Sprintf("http://127.0.0.1:%d", httpPort)
			s.config = filepath.Join(s.dir, "influxdb.conf")
			s.logf = filepath.Join(s.dir, "influxd.log")
			err = os.WriteFile(s.config, []byte(InfluxdConfig(s.dir, rpcPort, httpPort)), 0o600)
		}
	}
	if err != nil {
		if s.owned {
			os.RemoveAll(s.dir)
		}
		return nil, err
	}
	env := o.Env
	if env == nil {
		for _, kv := range os.Environ() {
			if !strings.HasPrefix(kv, "INFLUXDB_") {
				env = append(env, kv)
			}
		}
	}
	s.env = append(env[:len(env):len(env)], "INFLUXDB_CONFIG_PATH="+s.config)
	return s, nil
}

// Restart starts the server again after Stop, on the same ports and data. On
// a running server it does nothing.
func (s *Influxd) Restart() error { return s.start(context.Background()) }

// start starts influxd unless it runs and waits until it answers /ping.
func (s *Influxd) start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return nil
	}
	cmd := exec.Command(s.binary, "run", "-config", s.config)
	cmd.Dir = s.dir
	cmd.Env = s.env
	cmd.SysProcAttr = procAttr()
	return s.launch(ctx, cmd, "influxd", influxdStartTimeout, s.ping)
}

func (s *Influxd) ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
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
func (s *Influxd) Stop() error { return s.StopWithin(10 * time.Second) }

// StopWithin stops the server as Stop does, with grace instead of 10 s
// between SIGTERM and SIGKILL.
func (s *Influxd) StopWithin(grace time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stopLocked(syscall.SIGTERM, grace)
}

// Kill stops the server abruptly (SIGKILL), as a crash would.
func (s *Influxd) Kill() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stopLocked(syscall.SIGKILL, 0)
}

// stopLocked sends sig and waits for the process to exit, killing it after
// grace.
// Close stops the server and removes its directory if StartInfluxd made it.
func (s *Influxd) Close() error {
	err := s.Stop()
	if s.owned {
		if rerr := os.RemoveAll(s.dir); rerr != nil {
			err = errors.Join(err, rerr)
		}
	}
	return err
}

// Running reports whether the process runs (it may not yet answer).
func (s *Influxd) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cmd != nil
}

// Pid answers the process id of the running influxd (0 when stopped), to
// sample its memory.
func (s *Influxd) Pid() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

// logTail answers the end of influxd's log, for error messages.
// Query runs one InfluxQL statement through /query (POST) and fails on an
// HTTP error or a statement error in the answer.
func (s *Influxd) Query(ctx context.Context, q string) error {
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
func (s *Influxd) CreateDatabase(ctx context.Context, name string) error {
	return s.Query(ctx, `CREATE DATABASE "`+strings.ReplaceAll(name, `"`, `\"`)+`"`)
}

// InfluxdConfig answers a complete influxd 1.8 configuration with every
// folder under dir: loopback only (RPC on rpcPort, HTTP on httpPort), no
// reporting, no self-monitoring, quiet logs, Flux on.
func InfluxdConfig(dir string, rpcPort, httpPort int) string {
	return fmt.Sprintf(influxdConfig, rpcPort,
		filepath.Join(dir, "meta"), filepath.Join(dir, "data"), filepath.Join(dir, "wal"), httpPort)
}

const influxdConfig = `reporting-disabled = true
bind-address = "127.0.0.1:%d"

[meta]
  dir = %q
  logging-enabled = false

[data]
  dir = %q
  wal-dir = %q
  query-log-enabled = false
  trace-logging-enabled = false

[monitor]
  store-enabled = false

[http]
  enabled = true
  bind-address = "127.0.0.1:%d"
  auth-enabled = false
  log-enabled = false
  suppress-write-log = true
  flux-enabled = true
  flux-log-enabled = false
  pprof-enabled = false

[continuous_queries]
  enabled = false
  log-enabled = false

[logging]
  level = "warn"
  suppress-logo = true
`
