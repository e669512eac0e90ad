//go:build !linux

package realtools

import (
	"errors"
	"syscall"
)

// procAttr leaves influxd in its parent's process group: without Linux's
// Pdeathsig, a Ctrl-C is what stops it should its parent die outright.
func procAttr() *syscall.SysProcAttr { return nil }

// procAttrAs leaves the credentials alone off Linux: the servers started
// as another user (PostgreSQL as postgres when running as root) are started
// as the current user, and refuse root themselves.
func procAttrAs(uid, gid uint32) *syscall.SysProcAttr { return nil }

// signalTree sends sig to the process alone: its children are not looked
// for here.
func (p *process) signalTree(sig syscall.Signal) error {
	if p.cmd == nil {
		return errors.New("not running")
	}
	return p.cmd.Process.Signal(sig)
}
