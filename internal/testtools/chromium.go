package testtools

import (
	"fmt"
	"os"
	"testing"
)

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

// RequireChromium answers the browser's path, or skips t when it is missing
// (fails it under CI=true).
func RequireChromium(t testing.TB) string {
	t.Helper()
	p, err := FindChromium()
	if err != nil {
		SkipOrFatal(t, err)
	}
	return p
}
