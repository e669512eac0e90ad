// Package realtools finds and starts the real programs that the tests and the
// load tool run beside the service (influxd, promtool, prometheus, Chromium),
// as scripts/provision.sh installs them, and links no package testing.
package realtools

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
// <module root>/.tools/bin/<name>, where scripts/provision.sh installs the
// pinned influxd, promtool and prometheus.
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

// DebianChromium is where Debian's chromium package, which
// scripts/provision.sh installs, puts the browser.
const DebianChromium = "/usr/bin/chromium"

// FindChromium answers the path of the browser the page tests drive:
// $OMNIMEMORY_CHROMIUM when set, else Debian's /usr/bin/chromium. It is not
// under .tools/bin: the browser comes from the system's packages, not from
// the Go module proxy.
func FindChromium() (string, error) {
	if p := os.Getenv("OMNIMEMORY_CHROMIUM"); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("%w: $OMNIMEMORY_CHROMIUM=%s: %v", ErrMissing, p, err)
		}
		return p, nil
	}
	if _, err := os.Stat(DebianChromium); err != nil {
		return "", fmt.Errorf("%w: no chromium at %s (Debian's package chromium)", ErrMissing, DebianChromium)
	}
	return DebianChromium, nil
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
