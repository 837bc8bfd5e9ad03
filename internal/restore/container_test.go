package restore

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"

	"github.com/wopr-network/opsd/internal/artifact"
	"github.com/wopr-network/opsd/internal/docker"
	"github.com/wopr-network/opsd/internal/docker/dockertest"
	"github.com/wopr-network/opsd/internal/storage/local"
)

// tenant creates a configured tenant container, backs it up, then writes a file after the backup.
func tenant(t *testing.T, dc *docker.Client, store *local.Store, name string) (string, string) {
	t.Helper()
	ctx := context.Background()
	img := dockertest.EnsureImage(t, dc)
	hostDir := t.TempDir()
	os.WriteFile(filepath.Join(hostDir, "mounted.txt"), []byte("from the host"), 0o644)
	dc.Remove(ctx, name)
	id, err := dc.Create(ctx, name, &container.Config{Image: img, Env: []string{"FOO=bar", "TIER=pro"}, Labels: map[string]string{"wopr.tier": "pro"},
		Cmd: []string{"/bin/sh", "-c", "echo before > /data/before.txt; sleep 3600"}},
		&container.HostConfig{Mounts: []mount.Mount{{Type: mount.TypeBind, Source: hostDir, Target: "/mnt/host"}}, RestartPolicy: container.RestartPolicy{Name: "unless-stopped"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dc.Remove(context.Background(), name) })
	if err := dc.Start(ctx, id); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	key := "nightly/n1/" + name + "/" + name + "_20261125.tar.gz"
	rc, _ := dc.Export(ctx, id)
	if _, err := artifact.Store(ctx, store, rc, artifact.Options{Compression: artifact.Gzip}, artifact.Manifest{Key: key, Kind: "container", Target: name}); err != nil {
		t.Fatal(err)
	}
	rc.Close()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Name: "after.txt", Mode: 0o644, Size: 6, Typeflag: tar.TypeReg})
	tw.Write([]byte("after\n"))
	tw.Close()
	if err := dc.CopyTo(ctx, id, "/data", &buf); err != nil {
		t.Fatal(err)
	}
	return id, key
}

func exportedFiles(t *testing.T, dc *docker.Client, id string) map[string]bool {
	rc, err := dc.Export(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	out := map[string]bool{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		out[h.Name] = true
	}
	return out
}

func TestRestoreContainerOnDocker(t *testing.T) {
	dc := dockertest.Client(t)
	store, _ := local.New(t.TempDir())
	oldID, key := tenant(t, dc, store, "tenant_opsdrest_a")
	res, err := RestoreContainer(context.Background(), ContainerOptions{Store: store, Engine: dc, Name: "tenant_opsdrest_a", Key: key, Node: "n1", StopTimeout: time.Second, Probe: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	d, err := dc.Inspect(context.Background(), "tenant_opsdrest_a", false)
	if err != nil || !d.Running || d.ID == oldID || d.ID != res.NewID {
		t.Fatalf("restored container: %+v %v", d, err)
	}
	files := exportedFiles(t, dc, d.ID)
	if files["data/after.txt"] || !files["data/before.txt"] {
		t.Fatal("the file written after the backup survived, or the backed-up one is missing")
	}
	c := d.Raw.Config
	if !strings.Contains(strings.Join(c.Env, ","), "FOO=bar") || c.Labels["wopr.tier"] != "pro" || d.Raw.HostConfig.RestartPolicy.Name != "unless-stopped" ||
		len(d.Raw.HostConfig.Mounts) != 1 || d.Raw.HostConfig.Mounts[0].Target != "/mnt/host" {
		t.Fatalf("configuration not carried over: env %v labels %v restart %v mounts %v", c.Env, c.Labels, d.Raw.HostConfig.RestartPolicy, d.Raw.HostConfig.Mounts)
	}
	if _, err := dc.Inspect(context.Background(), oldID, false); !docker.IsNotFound(err) {
		t.Fatalf("the old container is still there: %v", err)
	}
	if _, err := artifact.ReadManifest(context.Background(), store, res.SafetyKey); err != nil {
		t.Fatalf("safety export: %v", err)
	}
	dc.Remove(context.Background(), d.ID)
	dc.RemoveImage(context.Background(), res.Image)
}

func TestRestoreContainerFailureAfterStopBringsOriginalBack(t *testing.T) {
	dc := dockertest.Client(t)
	store, _ := local.New(t.TempDir())
	oldID, key := tenant(t, dc, store, "tenant_opsdrest_b")
	_, err := RestoreContainer(context.Background(), ContainerOptions{Store: store, Engine: dc, Name: "tenant_opsdrest_b", Key: key, Node: "n1", StopTimeout: time.Second,
		AfterStop: func() error { return errors.New("injected failure") }})
	if err == nil || !strings.Contains(err.Error(), "rolled back: the original tenant_opsdrest_b is back") {
		t.Fatalf("err = %v", err)
	}
	d, err := dc.Inspect(context.Background(), "tenant_opsdrest_b", false)
	if err != nil || d.ID != oldID || !d.Running {
		t.Fatalf("after rollback: id %s (want %s) running %v err %v", d.ID, oldID, d.Running, err)
	}
	if !exportedFiles(t, dc, d.ID)["data/after.txt"] {
		t.Fatal("the original container lost its state")
	}
}
