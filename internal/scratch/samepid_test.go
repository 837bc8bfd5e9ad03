package scratch

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestCleanRemovesAnEarlierProcessWithOurPID: opsd in a container runs under the same PID after
// every restart (PID 1, or the one after Docker's init): a SQLite copy the killed process left
// is named with this process's PID. It was kept as this process's own, so every crash left a
// copy the size of a database in temp_dir until the disk was full. A file named with our PID
// but older than this process is an earlier process's; one made by this process is kept.
func TestCleanRemovesAnEarlierProcessWithOurPID(t *testing.T) {
	dir := t.TempDir()
	old := filepath.Join(dir, Name("auth", ".db"))
	os.WriteFile(old, []byte("a killed run's partial copy"), 0o600)
	before := processStart.Add(-time.Minute)
	if err := os.Chtimes(old, before, before); err != nil {
		t.Fatal(err)
	}
	mine := filepath.Join(dir, Name("billing", ".db"))
	os.WriteFile(mine, []byte("a copy in progress"), 0o600)
	removed, err := Clean([]string{dir}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if len(removed.Paths) != 1 || removed.Paths[0] != old {
		t.Fatalf("removed %v, want only %s", removed.Paths, old)
	}
	if _, err := os.Stat(mine); err != nil {
		t.Fatalf("this process's own file was removed: %v", err)
	}
}
