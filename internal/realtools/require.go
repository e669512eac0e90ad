package realtools

import (
	"errors"
	"os"
)

// TB is the part of testing.TB that the helpers for tests use. *testing.T
// and *testing.B satisfy it; taking it instead of testing.TB keeps package
// testing out of the programs that link this package.
type TB interface {
	Helper()
	Cleanup(func())
	Errorf(format string, args ...any)
	Fatalf(format string, args ...any)
	Skipf(format string, args ...any)
}

// Require answers the path of the named tool (see Find), or skips t when it
// is missing (fails it under CI=true; see SkipOrFatal).
func Require(t TB, name string) string {
	t.Helper()
	p, err := Find(name)
	if err != nil {
		SkipOrFatal(t, err)
	}
	return p
}

// RequireChromium answers the browser's path (see FindChromium), or skips t
// when it is missing (fails it under CI=true; see SkipOrFatal).
func RequireChromium(t TB) string {
	t.Helper()
	p, err := FindChromium()
	if err != nil {
		SkipOrFatal(t, err)
	}
	return p
}

// SkipOrFatal ends t on err: a test whose tool is missing (err wraps
// ErrMissing) skips with a message naming scripts/provision.sh, except under
// CI=true, where it fails, since CI provisions every tool and must never skip
// a test of a real part. Any other error fails t.
func SkipOrFatal(t TB, err error) {
	t.Helper()
	if errors.Is(err, ErrMissing) && os.Getenv("CI") != "true" {
		t.Skipf("%v; run scripts/provision.sh (or scripts/test.sh) to run this test", err)
	}
	t.Fatalf("%v", err)
}
