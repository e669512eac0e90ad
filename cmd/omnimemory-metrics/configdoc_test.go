package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestConfigurationDoc fails when docs/configuration.md is not what
// configurationDoc generates from settings(), so that the documented
// settings cannot drift from the code; -update rewrites the file.
func TestConfigurationDoc(t *testing.T) {
	path := filepath.Join("..", "..", filepath.FromSlash(configDocPath))
	got := configurationDoc()
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	committed, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run `go test ./cmd/omnimemory-metrics -run TestConfigurationDoc -update`)", err)
	}
	if !bytes.Equal(committed, got) {
		t.Errorf("%s differs from settings() in config.go at line %d:\n committed: %q\n generated: %q\nrun `go test ./cmd/omnimemory-metrics -run TestConfigurationDoc -update` and commit the result",
			configDocPath, diffLine(committed, got), lineAt(committed, diffLine(committed, got)), lineAt(got, diffLine(committed, got)))
	}
}

// TestConfigurationDocCoversSettings: every setting has its row, and every
// note belongs to a setting.
func TestConfigurationDocCoversSettings(t *testing.T) {
	doc := string(configurationDoc())
	envs := map[string]bool{}
	for _, s := range settings() {
		envs[s.env] = true
		if !strings.Contains(doc, "| `"+s.env+"` | `--"+s.flag+"` |") {
			t.Errorf("no row for %s / --%s", s.env, s.flag)
		}
	}
	for env := range settingNotes {
		if !envs[env] {
			t.Errorf("settingNotes has a note for %s, which is no setting", env)
		}
	}
	for _, names := range [][]string{storeSettings, reportSettings} {
		for _, n := range names {
			found := false
			for _, s := range settings() {
				found = found || s.flag == n
			}
			if !found {
				t.Errorf("subcommand setting %q is no setting", n)
			}
		}
	}
}

// diffLine is the 1-based number of the first line where a and b differ.
func diffLine(a, b []byte) int {
	la, lb := strings.Split(string(a), "\n"), strings.Split(string(b), "\n")
	for i := range max(len(la), len(lb)) {
		if i >= len(la) || i >= len(lb) || la[i] != lb[i] {
			return i + 1
		}
	}
	return 0
}

func lineAt(b []byte, n int) string {
	lines := strings.Split(string(b), "\n")
	if n < 1 || n > len(lines) {
		return ""
	}
	return lines[n-1]
}
