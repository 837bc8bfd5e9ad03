package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSnapshotRestoreAndBackupsList is an operator bringing back one instance's WOPR_HOME: list
// the stored snapshots, restore the newest over a damaged directory (the previous one kept as a
// safety copy), and the mistakes on the way (no instance, no snapshot, no list subcommand).
func TestSnapshotRestoreAndBackupsList(t *testing.T) {
	dir, cfgPath := operatorConfig(t)
	notes := filepath.Join(dir, "instances", "bot-alpha", "memory", "notes.md")
	want, err := os.ReadFile(notes)
	if err != nil {
		t.Fatal(err)
	}
	if code, out, errb := cli("backup", "snapshots", "-c", cfgPath); code != 0 {
		t.Fatalf("backup snapshots: exit %d\n%s%s", code, out, errb)
	}

	code, out, errb := cli("backups", "list", "-c", cfgPath, "--target", "bot-alpha")
	if code != 0 || !strings.Contains(out, "bot-alpha") || strings.Contains(out, "bot-beta") {
		t.Fatalf("backups list --target bot-alpha: exit %d\n%s%s", code, out, errb)
	}
	code, out, errb = cli("backups", "list", "-c", cfgPath, "-o", "json")
	var list struct {
		Backups []struct{ Key string }
		Count   int
	}
	if err := json.Unmarshal([]byte(out), &list); code != 0 || err != nil || list.Count < 2 || len(list.Backups) != list.Count {
		t.Fatalf("backups list -o json: exit %d, %v\n%s%s", code, err, out, errb)
	}

	// The instance is damaged; the newest snapshot brings it back.
	if err := os.WriteFile(notes, []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, out, errb := cli("restore", "snapshot", "-c", cfgPath, "bot-alpha"); code != 0 {
		t.Fatalf("restore snapshot bot-alpha: exit %d\n%s%s", code, out, errb)
	}
	if got, err := os.ReadFile(notes); err != nil || string(got) != string(want) {
		t.Fatalf("after the restore notes.md = %q, %v; want %q", got, err, want)
	}
	if kept, _ := filepath.Glob(filepath.Join(dir, "instances", "bot-alpha.pre-restore-*")); len(kept) != 1 {
		t.Fatalf("safety copies of the damaged directory: %v, want one", kept)
	}
	if code, out, _ := cli("restores", "-c", cfgPath, "-o", "json"); code != 0 || !strings.Contains(out, `"bot-alpha"`) {
		t.Fatalf("restores -o json does not list the snapshot restore (exit %d):\n%s", code, out)
	}

	for _, c := range []struct {
		args     []string
		code     int
		contains string
	}{
		{[]string{"restore", "snapshot", "-c", cfgPath}, 2, "Usage: opsd restore snapshot -c FILE INSTANCE"},
		{[]string{"restore", "snapshot", "-c", cfgPath, "bot-gamma"}, 1, "no snapshot of bot-gamma"},
		{[]string{"backups", "-c", cfgPath}, 2, "Usage: opsd backups list"},
		{[]string{"backups", "list", "-c", filepath.Join(dir, "absent.yaml")}, 1, "absent.yaml"},
	} {
		code, out, errb := cli(c.args...)
		if code != c.code || !strings.Contains(out+errb, c.contains) {
			t.Errorf("opsd %s: exit %d (want %d), want %q in:\n%s%s", strings.Join(c.args, " "), code, c.code, c.contains, out, errb)
		}
	}
}
