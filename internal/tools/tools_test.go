package tools

import (
	"errors"
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
	if _, err := os.Stat(filepath.Join(root, "internal", "tools", "tools.go")); err != nil {
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
