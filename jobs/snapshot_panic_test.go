package jobs

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wopr-network/opsd/internal/artifact"
	"github.com/wopr-network/opsd/internal/storage"
	"github.com/wopr-network/opsd/internal/storage/local"
)

// TestDirSnapshotSurvivesAPanicInTheTarWriter: a panic while one instance's tree is archived (a
// bug in the walker, on its own goroutine where the Runner cannot recover it) fails that
// instance's snapshot with nothing stored under its key, and the other instance is snapshotted.
func TestDirSnapshotSurvivesAPanicInTheTarWriter(t *testing.T) {
	base := t.TempDir()
	for _, inst := range []string{"inst-ok", "inst-bug"} {
		os.MkdirAll(filepath.Join(base, inst), 0o755)
		os.WriteFile(filepath.Join(base, inst, "notes.md"), []byte("hello "+inst), 0o644)
	}
	t.Cleanup(setSnapshotHook(func(p string) {
		if filepath.Base(p) == "notes.md" && strings.Contains(p, "inst-bug") {
			panic("walker bug")
		}
	}))
	store, _ := local.New(t.TempDir())
	r := newRig(t)
	j := NewDirSnapshot("wopr-home", DirSnapshotConfig{BaseDir: base, Node: "n1", Now: func() time.Time { return day1 }}, store)
	o := r.runner.Run(context.Background(), j, time.Minute, TriggerManual)
	if o.OK() {
		t.Fatal("a run whose walker panicked succeeded")
	}
	for _, tr := range o.Result.Targets {
		if failed := tr.Status == TargetFailed; failed != (tr.Name == "inst-bug") || (failed && !errors.Is(tr.Err, artifact.ErrPanic)) {
			t.Fatalf("target %s: %s %v", tr.Name, tr.Status, tr.Err)
		}
	}
	if _, err := store.Stat(context.Background(), "nightly/n1/inst-bug/inst-bug_20261125.tar.gz"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("the failed instance's key: %v", err)
	}
	if files := archiveFiles(t, store, "nightly/n1/inst-ok/inst-ok_20261125.tar.gz"); files["inst-ok/notes.md"] != "hello inst-ok" {
		t.Fatalf("the other instance's archive: %v", keys(files))
	}
}
