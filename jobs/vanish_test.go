package jobs

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/wopr-network/opsd/internal/storage/local"
)

// TestEveryTargetVanishingAtOnceIsNotASuccess: a dir_snapshot whose base directory is suddenly
// empty (its volume not mounted after a redeploy) finds no instance. That is not "every instance
// was deleted, nothing to do": the run fails, and the instances it backed up stay tracked (with
// their last good backup, so they turn stale), instead of being retired with /health ok while
// nothing is backed up. One instance of two gone is still retired as before.
func TestEveryTargetVanishingAtOnceIsNotASuccess(t *testing.T) {
	base := t.TempDir()
	for _, inst := range []string{"inst-1", "inst-2"} {
		os.MkdirAll(filepath.Join(base, inst), 0o755)
		os.WriteFile(filepath.Join(base, inst, "notes.md"), []byte("hello "+inst), 0o644)
	}
	store, _ := local.New(t.TempDir())
	r := newRig(t)
	ctx := context.Background()
	j := NewDirSnapshot("wopr-home", DirSnapshotConfig{BaseDir: base, Node: "n1"}, store)
	tracked := func() map[string]bool {
		all, err := r.state.ListBackups(ctx, time.Now(), 24*time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]bool{}
		for _, b := range all {
			out[b.ContainerID] = true
		}
		return out
	}
	if o := r.runner.Run(ctx, j, time.Minute, TriggerSchedule); !o.OK() {
		t.Fatal(o.Err)
	}
	// One instance deleted: retired.
	os.RemoveAll(filepath.Join(base, "inst-2"))
	if o := r.runner.Run(ctx, j, time.Minute, TriggerSchedule); !o.OK() {
		t.Fatal(o.Err)
	}
	if got := tracked(); len(got) != 1 || !got["inst-1"] {
		t.Fatalf("after inst-2 was deleted: %v", got)
	}
	// The base directory is empty: the volume is not there.
	os.RemoveAll(filepath.Join(base, "inst-1"))
	o := r.runner.Run(ctx, j, time.Minute, TriggerSchedule)
	if o.OK() {
		t.Errorf("a run that found no instance at all, where inst-1 was backed up before, succeeded: %s", o.Run.Summary)
	}
	if got := tracked(); !got["inst-1"] {
		t.Errorf("inst-1 is no longer tracked after a run that found nothing: %v", got)
	}
	if _, ok := r.metrics.Backups.GetFor("wopr-home", "inst-1"); !ok {
		t.Error("inst-1 has no series after a run that found nothing")
	}
}
