package scratch

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestCleanRemovesOnlyDeadProcessesFiles(t *testing.T) {
	dir := t.TempDir()
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	pid := strconv.Itoa(dead.Process.Pid)
	gone := []string{Prefix + pid + "-auth-1.db", Prefix + pid + "-auth-1.db-journal", Prefix + pid + "-drill-x"}
	kept := []string{Name("auth", ".db"), "notes.db", Prefix + "notapid-x", ".opsd-recent-1.db", "opsd-tmp-", "other-" + Prefix + pid}
	for _, n := range append(append([]string{}, gone...), kept...) {
		if strings.HasSuffix(n, "drill-x") {
			os.MkdirAll(filepath.Join(dir, n, "sub"), 0o700)
			os.WriteFile(filepath.Join(dir, n, "sub", "f"), []byte("12345"), 0o600)
			continue
		}
		os.WriteFile(filepath.Join(dir, n), []byte("123"), 0o600)
	}
	legacy := filepath.Join(dir, ".opsd-billing-1700000000.db")
	os.WriteFile(legacy, []byte("1234"), 0o600)
	old := time.Now().Add(-2 * LegacyMinAge)
	os.Chtimes(legacy, old, old)
	gone = append(gone, filepath.Base(legacy))

	got, err := Clean([]string{dir, dir, filepath.Join(dir, "missing"), ""}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Paths) != len(gone) || got.Bytes != 3+3+5+4 {
		t.Fatalf("removed %v (%d bytes), want %v", got.Paths, got.Bytes, gone)
	}
	for _, n := range gone {
		if _, err := os.Stat(filepath.Join(dir, n)); !os.IsNotExist(err) {
			t.Errorf("%s was kept", n)
		}
	}
	for _, n := range kept {
		if _, err := os.Stat(filepath.Join(dir, n)); err != nil {
			t.Errorf("%s was removed", n)
		}
	}
}
