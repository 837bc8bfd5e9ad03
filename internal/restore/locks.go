package restore

import (
	"os"
	"path/filepath"
	"strings"
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
