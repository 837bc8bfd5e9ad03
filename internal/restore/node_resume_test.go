package restore

import (
	"archive/tar"
	"bytes"
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"

	"github.com/wopr-network/opsd/internal/docker"
	"github.com/wopr-network/opsd/internal/docker/dockertest"
	"github.com/wopr-network/opsd/internal/layout"
	"github.com/wopr-network/opsd/internal/storage/local"
)

// TestRestoreNodeRerunNeverRemovesAContainerThatRan: a node restore is re-run (to retry the
// containers that failed) after a restored container has served its tenant and stopped (or, for
// one exported stopped, was started since). The re-run must not take it for a restore cut short:
// it is never removed, with what its tenant wrote since, and the report says why; a container
// created and never started (cut short between create and start) is still redone.
func TestRestoreNodeRerunNeverRemovesAContainerThatRan(t *testing.T) {
	dc := dockertest.Client(t)
	img := dockertest.EnsureImage(t, dc)
	ctx := context.Background()
	prefix := dockertest.Unique("tenant_rr")
	ran, started, cut := prefix+"ran", prefix+"started", prefix+"cut"
	t.Cleanup(func() {
		for _, n := range []string{ran, started, cut} {
			dc.Remove(ctx, n)
		}
		removeImagesOf(dc, ran, started, cut)
	})
	store, err := local.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	fs := dockertest.RootFS(t)
	for _, c := range []struct {
		name    string
		running bool
	}{{ran, true}, {started, false}, {cut, true}} {
		storeExport(t, store, "nightly/lost/"+c.name+"/"+c.name+"_20261130.tar.gz", c.name, docker.Spec{Version: docker.SpecVersion, Name: c.name, Image: img,
			Running: c.running, Config: &container.Config{Cmd: []string{"/bin/sh", "-c", "exec sleep 3600"}}, HostConfig: &container.HostConfig{NetworkMode: "none"}}, fs)
	}
	o := NodeOptions{Store: store, Layout: layout.Default(), Engine: dc, FromNode: "lost", Parallel: 2, Probe: 100 * time.Millisecond}
	if _, err := RestoreNode(ctx, o); err != nil {
		t.Fatal(err)
	}
	ids := map[string]string{}
	for _, n := range []string{ran, started, cut} {
		d, err := dc.Inspect(ctx, n, false)
		if err != nil {
			t.Fatal(err)
		}
		ids[n] = d.ID
	}
	// The tenant of ran writes, then its container stops; started is started by its tenant.
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Name: "since-restore.txt", Mode: 0o644, Size: 5, Typeflag: tar.TypeReg})
	tw.Write([]byte("hello"))
	tw.Close()
	if err := dc.CopyTo(ctx, ids[ran], "/", &buf); err != nil {
		t.Fatal(err)
	}
	if err := dc.Stop(ctx, ids[ran], time.Second); err != nil {
		t.Fatal(err)
	}
	if err := dc.Start(ctx, ids[started]); err != nil {
		t.Fatal(err)
	}
	// cut: as if opsd died between its create and its start.
	spec, _ := dc.Inspect(ctx, ids[cut], false)
	dc.Remove(ctx, ids[cut])
	id, err := dc.CreateNetworked(ctx, cut, spec.Raw.Config, spec.Raw.HostConfig, nil)
	if err != nil {
		t.Fatal(err)
	}
	ids[cut] = id

	rep, _ := RestoreNode(ctx, o)
	out := map[string]RecreateResult{}
	for _, c := range rep.Containers {
		out[c.Name] = c
	}
	for _, n := range []string{ran, started} {
		d, err := dc.Inspect(ctx, n, false)
		if err != nil || d.ID != ids[n] {
			t.Errorf("%s was removed by the re-run (now %q, %v): %+v", n, d.ID, err, out[n])
		}
	}
	if c := out[ran]; c.Outcome != "failed" || !strings.Contains(c.Error, "has run") {
		t.Errorf("re-run's report of %s (ran, then stopped): %+v", ran, c)
	}
	if c := out[started]; c.Outcome != "skipped" {
		t.Errorf("re-run's report of %s (started since): %+v", started, c)
	}
	if d, err := dc.Inspect(ctx, cut, false); err != nil || d.ID == ids[cut] || !d.Running || out[cut].Outcome != "restored" {
		t.Errorf("%s (cut short before its start) was not redone: %+v %v", cut, out[cut], err)
	}
}

// removeImagesOf removes the images restores of these containers imported (opsd-restore/NAME:*).
func removeImagesOf(dc *docker.Client, names ...string) {
	for _, n := range names {
		out, _ := exec.Command("docker", "images", "-q", "--filter", "reference=opsd-restore/"+strings.ToLower(n)).Output()
		for _, id := range strings.Fields(string(out)) {
			dc.RemoveImage(context.Background(), id)
		}
	}
}
