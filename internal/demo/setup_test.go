package demo

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/wopr-network/opsd/internal/docker/dockertest"
)

// TestDemoRemovesItsImage: the demo's busybox image is its own (tagged per process) and its
// cleanup removes it, so runs of the demo leave no image behind.
func TestDemoRemovesItsImage(t *testing.T) {
	dockertest.Client(t) // skips without an engine (fails under OPSD_TEST_REQUIRE_DOCKER=1)
	var out bytes.Buffer
	ok, cleanup := StartContainer(context.Background(), &out, fmt.Sprintf("tenant_opsddemoimg_%d", os.Getpid()))
	if !ok {
		cleanup()
		t.Fatalf("the demo container did not start: %s", out.String())
	}
	ref := ImageRef()
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
