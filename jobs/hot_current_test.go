package jobs

import (
	"archive/tar"
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/wopr-network/opsd/internal/docker/dockertest"
	"github.com/wopr-network/opsd/internal/state"
	"github.com/wopr-network/opsd/internal/storage/local"
)

// TestHotExportOfAnIdleContainerIsNotStale: a hot export (changed_only) of a container that has
// not changed since its last hot export, 25 hours ago, skips it as unchanged; its hot backup at
// latest/ is checked in the store and is the container as it is now, so the target is fresh,
// not stale. When that backup is gone from the store, the next run exports again.
func TestHotExportOfAnIdleContainerIsNotStale(t *testing.T) {
	dc := dockertest.Client(t)
	r := newRig(t)
	store, _ := local.New(t.TempDir())
	name := exportPrefix + "idle"
	// Its file is written before the first export (not by its command, which may still be
	// starting when the export looks: the second run would then see a change).
	id := dockertest.Run(t, dc, name, nil, "sleep 3600")
	ctx := context.Background()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Name: "one.txt", Mode: 0o644, Size: 4, Typeflag: tar.TypeReg})
	tw.Write([]byte("one\n"))
	tw.Close()
	if err := dc.CopyTo(ctx, id, "/data", &buf); err != nil {
		t.Fatal(err)
	}
	hot := newExport(t, dc, r.state, store, func(c *ContainerExportConfig) { c.ChangedOnly = true })
	first := r.runner.Run(ctx, hot, time.Minute, TriggerSchedule)
	if !first.OK() || first.Result.Targets[0].Status != TargetOK {
		t.Fatalf("first run: %+v %v", first.Result.Targets, first.Err)
	}
	key, size := first.Result.Targets[0].Key, first.Result.Targets[0].Bytes
	// That export was 25 hours ago.
	if err := r.state.RecordBackup(ctx, state.BackupAttempt{Target: name, Job: hot.Name(), NodeID: "node-1", Kind: "container", At: time.Now().Add(-25 * time.Hour), Success: true, SizeBytes: size, Path: key}); err != nil {
		t.Fatal(err)
	}
	stale := func() []string {
		t.Helper()
		list, err := r.state.ListStale(ctx, time.Now(), 24*time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, b := range list {
			out = append(out, b.ContainerID)
		}
		return out
	}
	if s := stale(); len(s) != 1 {
		t.Fatalf("25 hours after its export the target should be stale: %v", s)
	}
	o := r.runner.Run(ctx, hot, time.Minute, TriggerSchedule)
	if !o.OK() || o.Result.Targets[0].SkipReason != "unchanged" || o.Result.Bytes != 0 {
		t.Fatalf("second run: %+v %v", o.Result.Targets, o.Err)
	}
	if s := stale(); len(s) != 0 {
		t.Fatalf("an idle container whose hot backup is current is stale: %v", s)
	}
	if b, ok := r.metrics.Backups.GetFor(hot.Name(), name); !ok || b.SizeBytes != size || !b.LastOK {
		t.Fatalf("metrics of the confirmed backup: %+v", b)
	}

	// The hot backup is gone from the store: unchanged or not, it is exported again.
	if err := store.Delete(ctx, key); err != nil {
		t.Fatal(err)
	}
	o = r.runner.Run(ctx, hot, time.Minute, TriggerSchedule)
	if !o.OK() || o.Result.Targets[0].Status != TargetOK || !strings.Contains(o.Result.Targets[0].Note, "exported again") {
		t.Fatalf("run after the hot backup vanished: %+v %v", o.Result.Targets, o.Err)
	}
	if _, err := store.Stat(ctx, key); err != nil {
		t.Fatalf("the hot backup was not written again: %v", err)
	}
}
