package sqlite

import (
	"runtime"
	"testing"

	"modernc.org/sqlite"
)

// TestCommitsSyncWithFdatasync: opening the store switches SQLite's commits
// to fdatasync(2) on Linux, as SQLite's own builds there sync.
func TestCommitsSyncWithFdatasync(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("fdatasync is switched on where the library honours it; this checks Linux")
	}
	prev, err := sqlite.Fdatasync(false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = sqlite.Fdatasync(prev) })
	openTemp(t)
	if !sqlite.FdatasyncEnabled() {
		t.Error("commits sync with fsync after Open")
	}
}
