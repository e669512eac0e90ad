package realtools

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestModuleRoot(t *testing.T) {
	root, err := ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "internal", "realtools", "realtools.go")); err != nil {
		t.Fatalf("module root %s does not hold this package: %v", root, err)
	}
}

func TestFind(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "sometool")
	if err := os.WriteFile(bin, nil, 0o700); err != nil {
		t.Fatal(err)
	}
	t.Setenv("OMNIMEMORY_SOMETOOL", bin)
	if p, err := Find("sometool"); err != nil || p != bin {
		t.Fatalf("with $OMNIMEMORY_SOMETOOL: %q, %v", p, err)
	}
	t.Setenv("OMNIMEMORY_SOMETOOL", bin+".missing")
	if _, err := Find("sometool"); !errors.Is(err, ErrMissing) {
		t.Fatalf("with $OMNIMEMORY_SOMETOOL naming nothing: %v, want ErrMissing", err)
	}
	t.Setenv("OMNIMEMORY_SOMETOOL", "")
	if _, err := Find("sometool"); !errors.Is(err, ErrMissing) || !strings.Contains(err.Error(), filepath.Join(".tools", "bin", "sometool")) {
		t.Fatalf("not in .tools/bin: %v, want ErrMissing naming the place", err)
	}
}

func TestInfluxdConfig(t *testing.T) {
	c := InfluxdConfig("/d", 1001, 1002)
	for _, want := range []string{`bind-address = "127.0.0.1:1001"`, `bind-address = "127.0.0.1:1002"`,
		`dir = "/d/meta"`, `dir = "/d/data"`, `wal-dir = "/d/wal"`, `flux-enabled = true`, `reporting-disabled = true`} {
		if !strings.Contains(c, want) {
			t.Errorf("config lacks %s:\n%s", want, c)
		}
	}
}

// fakeTB records how a helper ended a test: its first Skipf, Fatalf or
// Errorf (a real Skipf or Fatalf would not return).
type fakeTB struct{ ended string }

func (f *fakeTB) end(how, format string, args ...any) {
	if f.ended == "" {
		f.ended = how + ": " + fmt.Sprintf(format, args...)
	}
}

func (f *fakeTB) Helper()                           {}
func (f *fakeTB) Cleanup(func())                    {}
func (f *fakeTB) Errorf(format string, args ...any) { f.end("error", format, args...) }
func (f *fakeTB) Fatalf(format string, args ...any) { f.end("fatal", format, args...) }
func (f *fakeTB) Skipf(format string, args ...any)  { f.end("skip", format, args...) }

var _ TB = (testing.TB)(nil) // every testing.TB is a TB

// TestSkipOrFatal holds the rule: a missing tool skips, naming the script
// that provisions it, except under CI=true, where it fails; any other error
// fails.
func TestSkipOrFatal(t *testing.T) {
	missing := fmt.Errorf("influxd: %w: no influxd at /x", ErrMissing)
	for _, tc := range []struct {
		ci   string
		err  error
		want string
	}{
		{"", missing, "skip: influxd: tool not installed: no influxd at /x; run scripts/provision.sh"},
		{"false", missing, "skip: "},
		{"true", missing, "fatal: influxd: tool not installed"},
		{"", errors.New("influxd exited during start"), "fatal: influxd exited"},
	} {
		t.Setenv("CI", tc.ci)
		var f fakeTB
		SkipOrFatal(&f, tc.err)
		if !strings.HasPrefix(f.ended, tc.want) {
			t.Errorf("CI=%q, %v: %q, want %q...", tc.ci, tc.err, f.ended, tc.want)
		}
	}
}
