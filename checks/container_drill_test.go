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

func leftovers(t *testing.T) string {
	imgs, _ := exec.Command("docker", "images", "-q", "--filter", "reference=opsd-drill/*").Output()
	cts, _ := exec.Command("docker", "ps", "-aq", "--filter", "label=opsd.drill").Output()
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
	dockertest.Run(t, dc, "tenant_opsddrill_a", nil, "echo a > /data/a.txt; sleep 3600")
	dockertest.Run(t, dc, "tenant_opsddrill_b", nil, "echo b > /data/b.txt; sleep 3600")
	time.Sleep(300 * time.Millisecond)
	exp := jobs.NewContainerExport("export", jobs.ContainerExportConfig{NamePrefix: "tenant_opsddrill_", Node: "n1", Now: func() time.Time { return day1 }}, dc, st, store)
	if _, err := exp.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	drill := NewContainerDrill("container-drill", ContainerDrillConfig{ProbeCmd: []string{"/bin/sh", "-c", "test -f /data/a.txt || test -f /data/b.txt"}}, dc, store)
	res, err := drill.Run(context.Background())
	if err != nil {
		t.Fatalf("drill: %v\n%s", err, res.Report)
	}
	if !strings.Contains(res.Report, "PASS  tenant_opsddrill_a — ") || !strings.Contains(res.Report, "Result: 2 passed, 0 failed, 0 skipped\n") || res.Drill.RTOTarget != 10*time.Minute {
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
	res, err = drill.WithTenant("tenant_opsddrill_a").Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	bad := NewContainerDrill("d", ContainerDrillConfig{Tenant: "tenant_opsddrill_a", ProbeCmd: []string{"/bin/sh", "-c", "exit 3"}}, dc, store)
	if res, err := bad.Run(context.Background()); err == nil || !strings.Contains(res.Report, "exited with code 3") {
		t.Fatalf("failing probe: %v\n%s", err, res.Report)
	}
	up := NewContainerDrill("d", ContainerDrillConfig{Tenant: "tenant_opsddrill_a", ProbeCmd: []string{"/bin/sleep", "30"}, ProbeStaysUp: true, ProbeTimeout: time.Second}, dc, store)
	if res, err := up.Run(context.Background()); err != nil {
		t.Fatalf("stays-up probe: %v\n%s", err, res.Report)
	}
	if l := leftovers(t); l != "" {
		t.Fatalf("drill left images or containers: %s", l)
	}

	// A truncated archive (with a manifest that matches it, so only the tar check can tell).
	key := "nightly/n1/tenant_opsddrill_b/tenant_opsddrill_b_20261125.tar.gz"
	m, _ := artifact.ReadManifest(context.Background(), store, key)
	b := mustRead(t, store, key)
	b = b[:len(b)/2]
	sum := sha256.Sum256(b)
	store.Put(context.Background(), key, bytes.NewReader(b), storage.PutOptions{Size: int64(len(b))})
	m.Size, m.SHA256 = int64(len(b)), hex.EncodeToString(sum[:])
	artifact.WriteManifest(context.Background(), store, m)
	res, err = drill.WithTenant("tenant_opsddrill_b").Run(context.Background())
	if err == nil || !strings.Contains(res.Report, "FAIL  tenant_opsddrill_b — archive is not a complete tar.gz") {
		t.Fatalf("truncated archive: %v\n%s", err, res.Report)
	}
	if l := leftovers(t); l != "" {
		t.Fatalf("drill left images or containers after a failure: %s", l)
	}
}
