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
	"os"
	"testing"

	"github.com/omnimemory/omnimemory-metrics/internal/tools"
)

// ErrMissing: the tool is not installed.
var ErrMissing = tools.ErrMissing

// Find answers the path of the named tool: $OMNIMEMORY_<NAME> when set, else
// <module root>/.tools/bin/<name>.
func Find(name string) (string, error) { return tools.Find(name) }

// ModuleRoot answers the folder holding the module's go.mod.
func ModuleRoot() (string, error) { return tools.ModuleRoot() }

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
