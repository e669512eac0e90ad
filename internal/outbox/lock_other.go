//go:build !(linux || darwin || freebsd || openbsd || netbsd || dragonfly)

package outbox

import (
	"fmt"
	"os"
	"path/filepath"
)

// lockDir opens the folder's LOCK file without locking it: this platform
// has no flock, so keeping to one Outbox per folder is up to the caller.
func lockDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, lockName), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("outbox: lock %s: %w", dir, err)
	}
	return f, nil
}
