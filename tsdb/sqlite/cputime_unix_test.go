//go:build unix

package sqlite

import (
	"syscall"
	"time"
)

// processCPU answers the CPU time (user and system) the process has used
// so far, so that a benchmark can report CPU per operation apart from the
// time spent waiting for fsync, which varies with the disk's other work.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
