//go:build !linux

package postgres

import "syscall"

// dieWithParent is Linux-only: elsewhere (an operator's CLI on macOS) a pg_dump or pg_restore
// may outlive a killed opsd until its pipe or connection ends.
func dieWithParent(a *syscall.SysProcAttr) *syscall.SysProcAttr { return a }
