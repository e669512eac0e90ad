// Package testtools finds the real programs the tests run against
// (promtool, prometheus, influxd), which scripts/provision.sh installs,
// pinned, into <module root>/.tools/bin.
//
// A test whose tool is missing skips with a message naming that script,
// except under CI=true, where it fails: CI provisions every tool, so CI never
// skips a real-part test.
package testtools

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
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

// Require answers the path of the named tool, or skips t when it is missing
// (fails it under CI=true).
func Require(t testing.TB, name string) string {
	t.Helper()
	p, err := Find(name)
	if err != nil {
		SkipOrFatal(t, err)
	}
	return p
}

// SkipOrFatal skips t for a missing tool outside CI and fails it otherwise.
func SkipOrFatal(t testing.TB, err error) {
	t.Helper()
	if errors.Is(err, ErrMissing) && os.Getenv("CI") != "true" {
		t.Skipf("%v; run scripts/provision.sh (or scripts/test.sh) to run this test", err)
	}
	t.Fatalf("%v", err)
}

// ModuleRoot answers the folder holding go.mod, searching up from the
// working directory (a test runs in its package's folder).
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}
