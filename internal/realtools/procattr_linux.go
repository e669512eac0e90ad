package realtools

import (
	"errors"
	"syscall"
)

// procAttr puts influxd in a process group of its own, so that a Ctrl-C
// meant for the program (or go test) that started it reaches that program
// only, which then stops influxd in order; Pdeathsig kills influxd should
// that program die outright.
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// procAttrAs is procAttr for a process that runs as user uid and group gid
// (the credentials change before Pdeathsig is set, so it survives).
func procAttrAs(uid, gid uint32) *syscall.SysProcAttr {
	a := procAttr()
	a.Credential = &syscall.Credential{Uid: uid, Gid: gid, NoSetGroups: true}
	return a
}

// signalTree sends sig to the process and its children (PostgreSQL's
// backends each lead a session of their own, so a process group does not
// reach them).
func (p *process) signalTree(sig syscall.Signal) error {
	if p.cmd == nil {
		return errors.New("not running")
	}
	pid := p.cmd.Process.Pid
	errs := []error{syscall.Kill(pid, sig)}
	for _, child := range childrenOf(pid) {
		if err := syscall.Kill(child, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// childrenOf answers the processes whose parent is pid.
func childrenOf(pid int) []int {
	parents, _ := ParentPIDs()
	var out []int
	for child, parent := range parents {
		if parent == pid {
			out = append(out, child)
		}
	}
	return out
}
