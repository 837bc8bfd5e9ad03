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

// TestRecreateRefusesHostAccessFromTheBucket: a captured spec asking for privileged mode, every
// capability, the host's network and pid namespaces and a bind of / (as anyone who can write the
// bucket could seal one) is refused on the real engine, naming each item, and nothing is created;
// the node drill's sandbox leaves them out; with the operator's --allow-host-access it is
// recreated as captured, each item in the report.
func TestRecreateRefusesHostAccessFromTheBucket(t *testing.T) {
	dc := dockertest.Client(t)
	img := dockertest.EnsureImage(t, dc)
	ctx := context.Background()
	a := dockertest.Unique("tenant_ha") + "a"
	t.Cleanup(func() {
		dc.Remove(ctx, a)
		removeImagesOf(dc, a)
	})
	store, err := local.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	key := "nightly/lost/" + a + "/" + a + "_20261130.tar.gz"
	storeExport(t, store, key, a, docker.Spec{Version: docker.SpecVersion, Name: a, Image: img, Running: false,
		Config:     &container.Config{Cmd: []string{"/bin/sh"}},
		HostConfig: &container.HostConfig{NetworkMode: "host", PidMode: "host", Privileged: true, Binds: []string{"/:/host"}, CapAdd: []string{"ALL"}}}, nil)
	want := "asks for host access: added capability ALL, bind mount of /, network namespace host, pid namespace host, privileged mode; refused"

	for _, dry := range []bool{true, false} {
		rep, err := RestoreNode(ctx, NodeOptions{Store: store, Layout: layout.Default(), Engine: dc, FromNode: "lost", Parallel: 1, DryRun: dry,
			HostAccess: HostAccess{BindRoots: []string{"/data/instances"}}})
		if err == nil || len(rep.Containers) != 1 || rep.Containers[0].Outcome != "failed" || !strings.Contains(rep.Containers[0].Error, want) {
			t.Fatalf("node restore (dry run %v) of a privileged spec: err %v, report %+v", dry, err, rep.Containers)
		}
		if _, err := dc.Inspect(ctx, a, false); !docker.IsNotFound(err) {
			t.Fatalf("container %s exists after the refused restore (inspect: %v)", a, err)
		}
	}
	if res := Recreate(ctx, RecreateOptions{Store: store, Engine: dc, Key: key, Name: a}); res.Outcome != "failed" || !strings.Contains(res.Error, want) {
		t.Fatalf("recreate of a privileged spec: %+v", res)
	}

	res := Recreate(ctx, RecreateOptions{Store: store, Engine: dc, Key: key, Name: a, HostAccess: HostAccess{Allow: true}})
	if res.Outcome != "restored" || !strings.Contains(strings.Join(res.Warnings, "\n"), "host access allowed by the operator: privileged mode") {
		t.Fatalf("recreate with the operator's allowance: %+v", res)
	}
	d, err := dc.Inspect(ctx, a, false)
	if err != nil || !d.Raw.HostConfig.Privileged {
		t.Fatalf("the allowed spec was not recreated as captured: %v", err)
	}
}

// TestSandboxLeavesOutHostAccess: a drill's sandbox of a spec asking for host access keeps none
// of it.
func TestSandboxLeavesOutHostAccess(t *testing.T) {
	spec := docker.Spec{Name: "tenant_x", HostConfig: &container.HostConfig{NetworkMode: "host", PidMode: "host", Privileged: true,
		Binds: []string{"/:/host"}, CapAdd: []string{"SYS_ADMIN"}, CapDrop: []string{"NET_RAW"}, SecurityOpt: []string{"seccomp=unconfined", "no-new-privileges"},
		Resources: container.Resources{Memory: 64 << 20, Devices: []container.DeviceMapping{{PathOnHost: "/dev/sda", PathInContainer: "/dev/sda"}}}}}
	if access := spec.HostAccess(nil); len(access) != 7 {
		t.Fatalf("host access of the spec: %q", access)
	}
	s := sandboxed(spec, "opsd-drill-x")
	if access := s.HostAccess(nil); len(access) != 0 {
		t.Fatalf("the sandbox keeps host access: %q", access)
	}
	if h := s.HostConfig; h.Memory != 64<<20 || len(h.CapDrop) != 1 || len(h.SecurityOpt) != 1 || h.SecurityOpt[0] != "no-new-privileges" {
		t.Fatalf("the sandbox lost the spec's limits: %+v", h)
	}
}

// TestRestoreNodeRefusesUnknownNames: --only or --exclude naming a container with no backup of
// the node (a typo) refuses the whole node restore before anything is touched: restoring without
// it would restore what was meant to be skipped, or skip what was meant to be restored.
func TestRestoreNodeRefusesUnknownNames(t *testing.T) {
	store, err := local.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"tenant_a", "tenant_b"} {
		storeExport(t, store, "nightly/lost/"+n+"/"+n+"_20261130.tar.gz", n, docker.Spec{Version: docker.SpecVersion, Name: n}, nil)
	}
	for _, o := range []NodeOptions{{Only: []string{"tenant_a", "tenant_typo"}}, {Exclude: []string{"tenant_bb"}}} {
		o.Store, o.Layout, o.FromNode = store, layout.Default(), "lost"
		rep, err := RestoreNode(context.Background(), o)
		if err == nil || len(rep.Containers) != 0 || !strings.Contains(err.Error(), "no container backups of that node named") {
			t.Fatalf("only %v exclude %v: %v, %+v", o.Only, o.Exclude, err, rep.Containers)
		}
	}
}
