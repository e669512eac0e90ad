//go:build !linux

package realtools

import "syscall"

// procAttr leaves influxd in its parent's process group: without Linux's
// Pdeathsig, a Ctrl-C is what stops it should its parent die outright.
func procAttr() *syscall.SysProcAttr { return nil }
