package realtools

import "syscall"

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
