package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wopr-network/opsd/internal/docker/dockertest"
	"github.com/wopr-network/opsd/internal/state"
)

// TestPruneDryRunIsNotARun: `opsd prune --dry-run` prints the plan but is not recorded as a
// prune run (a dry run must never reset the "last successful prune" the alert rules read); a
// real prune afterwards is.
func TestPruneDryRunIsNotARun(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "opsd.yaml")
	writeConfig(t, cfgPath, freshConfig(dir, "http://127.0.0.1:9/hook"))
	var out, errb bytes.Buffer
	if code := run([]string{"prune", "-c", cfgPath, "--dry-run"}, &out, &errb); code != 0 || !strings.Contains(out.String(), "would delete 0 objects") {
		t.Fatalf("prune --dry-run: exit %d\n%s%s", code, out.String(), errb.String())
	}
	ctx := context.Background()
	st, err := state.Open(ctx, filepath.Join(dir, "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	if r, err := st.LastRun(ctx, "prune"); err == nil {
		t.Fatalf("the dry run was recorded as a run: %+v", r)
	}
	st.Close()
	if code := run([]string{"prune", "-c", cfgPath}, &out, &errb); code != 0 {
		t.Fatalf("prune: exit %d\n%s%s", code, out.String(), errb.String())
	}
	st, err = state.Open(ctx, filepath.Join(dir, "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if r, err := st.LastSuccess(ctx, "prune"); err != nil || r.Trigger != "cli" {
		t.Fatalf("the real prune was not recorded: %+v %v", r, err)
	}
}

// TestDemoRemovesItsImage: the demo's busybox image is its own (tagged per process) and its
// cleanup removes it, so runs of the demo leave no image behind.
func TestDemoRemovesItsImage(t *testing.T) {
	dockertest.Client(t) // skips without an engine (fails under OPSD_TEST_REQUIRE_DOCKER=1)
	var out bytes.Buffer
	ok, cleanup := demoContainer(context.Background(), &out)
	if !ok {
		cleanup()
		t.Fatalf("the demo container did not start: %s", out.String())
	}
	ref := fmt.Sprintf("opsd-demo/busybox:run-%d", os.Getpid())
	if b, err := exec.Command("docker", "image", "inspect", "--format", "{{.Id}}", ref).CombinedOutput(); err != nil {
		cleanup()
		t.Fatalf("the demo image %s is not there while the demo runs: %v %s", ref, err, b)
	}
	cleanup()
	if b, err := exec.Command("docker", "image", "inspect", ref).CombinedOutput(); err == nil {
		t.Fatalf("the demo image %s is still there after cleanup: %s", ref, b)
	}
	if strings.Contains(out.String(), "cannot remove") {
		t.Fatal(out.String())
	}
}
