// Package dockertest gives tests a real Docker engine: a tiny image built with `docker import`
// from a root filesystem holding Debian's static busybox (no registry is reachable), and
// containers run from it that are removed when the test ends. The engine is shared: tests name
// their containers with Unique, every container is labelled with this process's run id, and
// only the containers a test created are ever removed.
package dockertest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"

	"github.com/wopr-network/opsd/internal/docker"
)

// Image is the reference of the test image.
const Image = "opsd-test/busybox:latest"

// Label is set on every container Run creates; its value is RunID.
const Label = "opsd.test.run"

var (
	once    sync.Once
	onceErr error
	// RunID identifies this test process's containers (random, 8 hex digits).
	RunID = func() string {
		b := make([]byte, 4)
		rand.Read(b)
		return hex.EncodeToString(b)
	}()
)

// Unique returns prefix with this process's run id appended ("tenant_opsdcli_" gives
// "tenant_opsdcli_1a2b3c4d_"): names under it collide with no other run on the same engine,
// and a job selecting containers by that prefix sees only this run's.
func Unique(prefix string) string { return prefix + RunID + "_" }

// Client returns a client for the engine, skipping the test when none answers (failing it when
// OPSD_TEST_REQUIRE_DOCKER=1, as .ci/test sets).
func Client(t testing.TB) *docker.Client {
	t.Helper()
	c, err := docker.New("")
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err = c.Ping(ctx)
		cancel()
	}
	if err != nil {
		if os.Getenv("OPSD_TEST_REQUIRE_DOCKER") == "1" {
			t.Fatalf("OPSD_TEST_REQUIRE_DOCKER=1 but the Docker engine does not answer: %v", err)
		}
		t.Skipf("no Docker engine: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// RootFS is the minimal busybox root filesystem as a tar.
func RootFS(t testing.TB) []byte {
	t.Helper()
	b, err := docker.BusyboxRootFS()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// EnsureImage imports the test image once per process.
func EnsureImage(t testing.TB, c *docker.Client) string {
	t.Helper()
	once.Do(func() {
		_, onceErr = c.Import(context.Background(), bytes.NewReader(RootFS(t)), Image)
	})
	if onceErr != nil {
		t.Fatalf("import test image: %v", onceErr)
	}
	return Image
}

// Run creates and starts a container from the test image running cmd (sh -c), labelled
// Label=RunID, and removes it (by its id) at the end of the test. A container that already has
// the name is not this test's: Run fails rather than remove it.
func Run(t testing.TB, c *docker.Client, name string, labels map[string]string, cmd string) string {
	t.Helper()
	img := EnsureImage(t, c)
	ctx := context.Background()
	all := map[string]string{Label: RunID}
	for k, v := range labels {
		all[k] = v
	}
	id, err := c.Create(ctx, name, &container.Config{Image: img, Cmd: []string{"/bin/sh", "-c", cmd}, Labels: all, Env: []string{"WOPR_TEST=1"}}, &container.HostConfig{})
	if err != nil {
		t.Fatalf("create test container %s: %v (a container of that name that this test did not create is left alone: name test containers with dockertest.Unique)", name, err)
	}
	t.Cleanup(func() {
		c.Remove(context.Background(), id)
		removeRestoredImages(c, name)
	})
	if err := c.Start(ctx, id); err != nil {
		t.Fatal(err)
	}
	return id
}

// removeRestoredImages removes the images restores of the container created (opsd-restore/NAME:*),
// so that restore tests leave no images behind on a shared engine.
func removeRestoredImages(c *docker.Client, name string) {
	out, err := exec.Command("docker", "images", "-q", "--filter", "reference=opsd-restore/"+strings.ToLower(name)).Output()
	if err != nil {
		return
	}
	for _, img := range strings.Fields(string(out)) {
		c.RemoveImage(context.Background(), img)
	}
}
