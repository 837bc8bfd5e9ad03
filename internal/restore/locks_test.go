package restore

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"
)

// TestRestoreLocks: a restore's liveness lock beside the state database is seen by LocksExist
// and, where there are file events, wakes the watcher when it is created; other files do not count.
func TestRestoreLocks(t *testing.T) {
	dir := t.TempDir()
	statePath := filepath.Join(dir, "state.db")
	if err := os.WriteFile(statePath+"-wal", nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if LocksExist(statePath) {
		t.Fatal("LocksExist with no lock file")
	}
	ctx, cancel := context.WithCancel(context.Background())
	woke := make(chan struct{}, 1)
	watching := WatchLocks(ctx, statePath, func() {
		select {
		case woke <- struct{}{}:
		default:
		}
	})
	if watching == nil && runtime.GOOS == "linux" {
		t.Fatal("no inotify watch on linux")
	}
	if err := os.WriteFile(statePath+".restore-7.lock", nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if !LocksExist(statePath) {
		t.Fatal("LocksExist misses state.db.restore-7.lock")
	}
	if watching == nil {
		cancel()
		return
	}
	select {
	case <-woke:
	case <-time.After(10 * time.Second):
		t.Fatal("no wake-up for a new restore lock")
	}
	if !watching() {
		t.Fatal("watch ended while the directory exists")
	}
	cancel()
	for deadline := time.Now().Add(10 * time.Second); watching(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("watch still running after its context ended")
		}
	}
}
