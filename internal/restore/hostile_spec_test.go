package restore

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/moby/moby/api/types/container"

	"github.com/wopr-network/opsd/internal/artifact"
	"github.com/wopr-network/opsd/internal/docker"
	"github.com/wopr-network/opsd/internal/docker/dockertest"
	"github.com/wopr-network/opsd/internal/layout"
	"github.com/wopr-network/opsd/internal/storage"
	"github.com/wopr-network/opsd/internal/storage/local"
)

// storeExport stores a container export of the filesystem fs (nil: a tiny one) under key with
// spec sealed in its manifest, as an export job (or anyone who can write the bucket) would.
func storeExport(t *testing.T, store storage.Store, key, target string, spec docker.Spec, fs []byte) {
	t.Helper()
	var buf bytes.Buffer
	if fs != nil {
		buf.Write(fs)
	} else {
		tw := tar.NewWriter(&buf)
		tw.WriteHeader(&tar.Header{Name: "bin/", Mode: 0o755, Typeflag: tar.TypeDir})
		tw.Close()
	}
	b, _ := json.Marshal(spec)
	sealed, err := artifact.Seal(b, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := artifact.Store(context.Background(), store, &buf, artifact.Options{Compression: artifact.Gzip},
		artifact.Manifest{Key: key, Kind: "container", Target: target, Node: "lost", Spec: sealed}); err != nil {
		t.Fatal(err)
	}
}

// TestRecreateRefusesASpecNamingAnotherContainer: the archive of tenant A (its key is under A's
// folder, its manifest's target is A) whose captured spec names container B is refused on the
// real engine, by the node restore and by the container restore alike: restoring A never
// creates (or touches) a container of another name.
func TestRecreateRefusesASpecNamingAnotherContainer(t *testing.T) {
	dc := dockertest.Client(t)
	img := dockertest.EnsureImage(t, dc)
	ctx := context.Background()
	prefix := dockertest.Unique("tenant_hs")
	a, b := prefix+"a", prefix+"b"
	t.Cleanup(func() {
		dc.Remove(ctx, a)
		dc.Remove(ctx, b)
		removeImagesOf(dc, a, b)
	})
	store, err := local.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	key := "nightly/lost/" + a + "/" + a + "_20261130.tar.gz"
	storeExport(t, store, key, a, docker.Spec{Version: docker.SpecVersion, Name: b, Image: img, Running: false,
		Config: &container.Config{Cmd: []string{"/bin/sh"}}, HostConfig: &container.HostConfig{NetworkMode: "none"}}, nil)

	rep, err := RestoreNode(ctx, NodeOptions{Store: store, Layout: layout.Default(), Engine: dc, FromNode: "lost", Parallel: 1})
	if err == nil || len(rep.Containers) != 1 || rep.Containers[0].Outcome != "failed" || !strings.Contains(rep.Containers[0].Error, b) {
		t.Errorf("node restore of %s from a spec naming %s: err %v, report %+v", a, b, err, rep.Containers)
	}
	for _, n := range []string{a, b} {
		if _, err := dc.Inspect(ctx, n, false); !docker.IsNotFound(err) {
			t.Errorf("container %s exists after the refused restore (inspect: %v)", n, err)
		}
	}
	res := Recreate(ctx, RecreateOptions{Store: store, Engine: dc, Key: key, Name: a})
	if res.Outcome != "failed" || !strings.Contains(res.Error, b) {
		t.Errorf("recreate of %s from a spec naming %s: %+v", a, b, res)
	}
	if _, err := dc.Inspect(ctx, b, false); !docker.IsNotFound(err) {
		t.Errorf("container %s exists after the refused recreate (inspect: %v)", b, err)
	}
}
