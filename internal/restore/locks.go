package restore

import (
	"context"
	"os"
	"path/filepath"
	"strings"

	"github.com/wopr-network/opsd/internal/health"
	"github.com/wopr-network/opsd/internal/state"
)

// LocksExist reports whether a restore's liveness lock (state.db.restore-ID.lock, created by
// state.StartRestore in whichever process restores) lies beside the state database at statePath
// (or the directory cannot be read).
func LocksExist(statePath string) bool {
	entries, err := os.ReadDir(filepath.Dir(statePath))
	if err != nil {
		return true
	}
	for _, e := range entries {
		if isLockName(statePath, e.Name()) {
			return true
		}
	}
	return false
}

// isLockName reports whether name (in the state database's directory) is a restore's liveness lock.
func isLockName(statePath, name string) bool {
	return strings.HasPrefix(name, filepath.Base(statePath)+".restore-") && strings.HasSuffix(name, ".lock")
}

// Dependency is restore bookkeeping as a health dependency: each check reports the restores a
// process that is gone left running (ReportInterrupted sets their problems, naming the safety
// copies), so a CLI restore that dies while the daemon runs is reported. It is polled while a
// restore's liveness lock lies beside the state database (one is running, or died unreported)
// and woken through wake when one is created (WatchLocks); where there are no file events, at
// every interval.
func Dependency(ctx context.Context, st *state.Store, rep Reporting, wake func()) health.Dependency {
	quiet := func() bool { return false }
	if path := st.Path(); path != "" {
		if watching := WatchLocks(ctx, path, wake); watching != nil {
			quiet = func() bool { return watching() && !LocksExist(path) }
		}
	}
	return health.Dependency{Name: "restores", What: "restore bookkeeping", Check: func(ctx context.Context) string {
		ReportInterrupted(ctx, st, rep)
		return ""
	}, Quiet: quiet}
}
