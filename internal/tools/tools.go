// Package tools finds and configures the real programs this project runs
// beside the service: influxd, promtool, prometheus, which
// scripts/provision.sh installs, pinned, into <module root>/.tools/bin. The
// benchmark tool (cmd/omnimemory-load) and the tests (through
// internal/testtools and internal/testinflux) share it; it imports nothing
// of package testing, so a program may link it.
package tools

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
)

// ErrMissing: the tool is not installed.
var ErrMissing = errors.New("tool not installed")

// Find answers the path of the named tool: $OMNIMEMORY_<NAME> when set, else
// <module root>/.tools/bin/<name>.
func Find(name string) (string, error) {
	if p := os.Getenv("OMNIMEMORY_" + strings.ToUpper(name)); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("%w: $OMNIMEMORY_%s=%s: %v", ErrMissing, strings.ToUpper(name), p, err)
		}
		return p, nil
	}
	root, err := ModuleRoot()
	if err != nil {
		return "", err
	}
	p := filepath.Join(root, ".tools", "bin", name)
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("%w: no %s at %s", ErrMissing, name, p)
	}
	return p, nil
}

// modulePath is this module's path, as go.mod names it.
const modulePath = "github.com/omnimemory/omnimemory-metrics"

// ModuleRoot answers the folder holding this module's go.mod, searching up
// from the working directory (a test runs in its package's folder).
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && strings.Contains(string(b), "module "+modulePath+"\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod of %s above the working directory", modulePath)
		}
		dir = parent
	}
}

// FreePort answers a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
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
