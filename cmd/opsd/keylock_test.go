package main

import (
	"context"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/wopr-network/opsd/internal/artifact"
	"github.com/wopr-network/opsd/internal/demo"
)

// TestBackupWaitsForAnotherWriterOfItsKey: `opsd backup db` from the CLI takes its key's lock in
// the state directory, so while another opsd process on the host (the daemon's nightly run)
// writes the same key, it waits, here until its job's timeout ends the wait, and uploads
// nothing; once the key is free it backs up.
func TestBackupWaitsForAnotherWriterOfItsKey(t *testing.T) {
	dir := t.TempDir()
	paths, err := demo.Create(context.Background(), filepath.Join(dir, "live"), 5)
	if err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "opsd.yaml")
	writeConfig(t, cfgPath, fmt.Sprintf(`node_id: op-1
state:
  path: %[1]s/state.db
storage:
  backend: local
  local:
    path: %[1]s/store
jobs:
  - name: platform-db-backup
    kind: sqlite_backup
    schedule: "0 3 * * *"
    timeout: 3s
    temp_dir: %[1]s/tmp
    databases:
      - {name: auth, path: %[2]q}
`, dir, paths["auth"]))
	backup := func() (int, string) {
		code, out, errb := cli("backup", "db", "-c", cfgPath)
		return code, out + errb
	}
	code, out := backup()
	key := regexp.MustCompile(`platform/\S+`).FindString(out)
	if code != 0 || key == "" {
		t.Fatalf("backup db: exit %d:\n%s", code, out)
	}

	// The other process holds the key (lock files in the state directory, as newEnv's).
	release, err := artifact.NewKeyLocks(dir).Lock(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	code, out = backup()
	release()
	if code == 0 || !strings.Contains(out, "wait for another opsd writing "+key+" on this host") || !strings.Contains(out, "waiting for another opsd writing this key") {
		t.Fatalf("backup db while another process writes %s: exit %d:\n%s", key, code, out)
	}
	if code, out = backup(); code != 0 {
		t.Fatalf("backup db once the key is free: exit %d:\n%s", code, out)
	}
}
