package checks

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/wopr-network/opsd/internal/artifact"
	"github.com/wopr-network/opsd/internal/docker/dockertest"
	"github.com/wopr-network/opsd/internal/state"
	"github.com/wopr-network/opsd/internal/storage"
	"github.com/wopr-network/opsd/internal/storage/local"
	"github.com/wopr-network/opsd/jobs"
)

// leftovers lists this test's drill images and containers (other packages' tests may be drilling
// their own containers on the same engine at the same time).
func leftovers(t *testing.T) string {
	imgs, _ := exec.Command("docker", "images", "-q", "--filter", "reference=opsd-drill/"+drillPrefix+"*").Output()
	cts, _ := exec.Command("docker", "ps", "-aq", "--filter", "name=opsd-drill-"+drillPrefix).Output()
	return strings.TrimSpace(string(imgs) + string(cts))
}

func TestContainerDrillOnDocker(t *testing.T) {
	dc := dockertest.Client(t)
	store, _ := local.New(t.TempDir())
	st, err := state.Open(context.Background(), t.TempDir()+"/state.db")
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	dockertest.Run(t, dc, drillPrefix+"a", nil, "echo a > /data/a.txt; sleep 3600")
	dockertest.Run(t, dc, drillPrefix+"b", nil, "echo b > /data/b.txt; sleep 3600")
	time.Sleep(300 * time.Millisecond)
	exp := jobs.NewContainerExport("export", jobs.ContainerExportConfig{NamePrefix: drillPrefix, Node: "n1", Now: func() time.Time { return day1 }}, dc, st, store)
	if _, err := exp.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	drill := NewContainerDrill("container-drill", ContainerDrillConfig{ProbeCmd: []string{"/bin/sh", "-c", "test -f /data/a.txt || test -f /data/b.txt"}}, dc, store)
	res, err := drill.Run(context.Background())
	if err != nil {
		t.Fatalf("drill: %v\n%s", err, res.Report)
	}
	if !strings.Contains(res.Report, "PASS  "+drillPrefix+"a — ") || !strings.Contains(res.Report, "Result: 2 passed, 0 failed, 0 skipped\n") || res.Drill.RTOTarget != 10*time.Minute {
		t.Fatalf("report:\n%s", res.Report)
	}
	for _, p := range []string{"download", "verify", "import", "start"} {
		found := false
		for _, ph := range res.Targets[0].Phases {
			found = found || ph.Name == p
		}
		if !found {
			t.Fatalf("phase %s missing: %+v", p, res.Targets[0].Phases)
		}
	}
	if l := leftovers(t); l != "" {
		t.Fatalf("drill left images or containers: %s", l)
	}
	// A probe that fails, and one that must stay up.
	res, err = drill.WithTenant(drillPrefix + "a").Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	bad := NewContainerDrill("d", ContainerDrillConfig{Tenant: drillPrefix + "a", ProbeCmd: []string{"/bin/sh", "-c", "exit 3"}}, dc, store)
	if res, err := bad.Run(context.Background()); err == nil || !strings.Contains(res.Report, "exited with code 3") {
		t.Fatalf("failing probe: %v\n%s", err, res.Report)
	}
	up := NewContainerDrill("d", ContainerDrillConfig{Tenant: drillPrefix + "a", ProbeCmd: []string{"/bin/sleep", "30"}, ProbeStaysUp: true, ProbeTimeout: time.Second}, dc, store)
	if res, err := up.Run(context.Background()); err != nil {
		t.Fatalf("stays-up probe: %v\n%s", err, res.Report)
	}
	if l := leftovers(t); l != "" {
		t.Fatalf("drill left images or containers: %s", l)
	}

	// A truncated archive (with a manifest that matches it, so only the tar check can tell).
	key := "nightly/n1/" + drillPrefix + "b/" + drillPrefix + "b_20261125.tar.gz"
	m, _ := artifact.ReadManifest(context.Background(), store, key)
	b := mustRead(t, store, key)
	b = b[:len(b)/2]
	sum := sha256.Sum256(b)
	store.Put(context.Background(), key, bytes.NewReader(b), storage.PutOptions{Size: int64(len(b))})
	m.Size, m.SHA256 = int64(len(b)), hex.EncodeToString(sum[:])
	artifact.WriteManifest(context.Background(), store, m)
	res, err = drill.WithTenant(drillPrefix + "b").Run(context.Background())
	if err == nil || !strings.Contains(res.Report, "FAIL  "+drillPrefix+"b — archive is not a complete tar.gz") {
		t.Fatalf("truncated archive: %v\n%s", err, res.Report)
	}
	if l := leftovers(t); l != "" {
		t.Fatalf("drill left images or containers after a failure: %s", l)
	}
}

// TestOffsiteVerifyContainers: every tenant container on the node needs a recent nightly backup
// (and a hot one when hot backups run); missing ones are reported by key.
func TestOffsiteVerifyContainers(t *testing.T) {
	dc := dockertest.Client(t)
	dockertest.Run(t, dc, verPrefix+"a", nil, "sleep 3600")
	dockertest.Run(t, dc, verPrefix+"b", nil, "sleep 3600")
	store, _ := local.New(t.TempDir())
	ctx := context.Background()
	for _, key := range []string{"nightly/n1/" + verPrefix + "a/" + verPrefix + "a_20261126.tar.gz", "latest/" + verPrefix + "a/latest.tar.gz"} {
		if _, err := artifact.Store(ctx, store, strings.NewReader("x"), artifact.Options{}, artifact.Manifest{Key: key, Kind: "container"}); err != nil {
			t.Fatal(err)
		}
	}
	v := NewOffsiteVerify("offsite", OffsiteVerifyConfig{Prefix: "platform/", Databases: nil, Dates: 1, Containers: dc, NamePrefix: verPrefix,
		Node: "n1", NightlyMaxAge: 26 * time.Hour, HotMaxAge: 7 * time.Hour}, store)
	res, err := v.Run(ctx)
	if err == nil {
		t.Fatal("a container without backups passed verification")
	}
	for _, want := range []string{"MISSING     nightly/n1/" + verPrefix + "b/ — " + verPrefix + "b has no nightly backup with a manifest",
		"MISSING     latest/" + verPrefix + "b/ — " + verPrefix + "b has no hot backup with a manifest"} {
		if !strings.Contains(res.Report, want) {
			t.Fatalf("report lacks %q:\n%s", want, res.Report)
		}
	}
	if strings.Contains(res.Report, verPrefix+"a has") {
		t.Fatalf("a container with fresh backups was reported:\n%s", res.Report)
	}
}

// drillPrefix names this run's test containers (unique on a shared engine).
var drillPrefix = dockertest.Unique("tenant_opsddrill_")

// verPrefix names this run's test containers (unique on a shared engine).
var verPrefix = dockertest.Unique("tenant_opsdver_")

// TestContainerDrillRefusesWhatDoesNotFit: an archive whose manifest says it is larger than the
// free space (a hostile or broken manifest) is refused before a byte is downloaded, naming the
// space, instead of filling the drill host's disk.
func TestContainerDrillRefusesWhatDoesNotFit(t *testing.T) {
	store, err := local.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	key := "nightly/n1/tenant_big/tenant_big_20261130.tar.gz"
	if _, err := store.Put(ctx, key, strings.NewReader("x"), storage.PutOptions{Size: 1}); err != nil {
		t.Fatal(err)
	}
	if err := artifact.WriteManifest(ctx, store, artifact.Manifest{Key: key, Kind: "container", Target: "tenant_big", Node: "n1", Size: 1 << 60, SHA256: "00", Compression: artifact.Gzip}); err != nil {
		t.Fatal(err)
	}
	res, err := NewContainerDrill("d", ContainerDrillConfig{Tenant: "tenant_big", TempDir: t.TempDir()}, nil, store).Run(ctx)
	if err == nil || !strings.Contains(res.Report, "free in") {
		t.Fatalf("drill of an archive larger than the disk: %v\n%s", err, res.Report)
	}
}
