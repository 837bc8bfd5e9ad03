package postgres

import "syscall"

// dieWithParent has the kernel SIGKILL the child when opsd dies (Linux's parent-death signal).
func dieWithParent(a *syscall.SysProcAttr) *syscall.SysProcAttr {
	a.Pdeathsig = syscall.SIGKILL
	return a
}
