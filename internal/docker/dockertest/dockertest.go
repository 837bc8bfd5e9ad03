// Package dockertest gives tests a real Docker engine: a tiny image built with `docker import`
// from a root filesystem holding Debian's static busybox (no registry is reachable), and
// containers run from it that are removed when the test ends.
package dockertest

import (
	"bytes"
	"context"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"

	"github.com/wopr-network/opsd/internal/docker"
)

// Image is the reference of the test image.
const Image = "opsd-test/busybox:latest"

var (
	once    sync.Once
	onceErr error
)

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

// Run creates and starts a container from the test image running cmd (sh -c), removed at the
// end of the test.
func Run(t testing.TB, c *docker.Client, name string, labels map[string]string, cmd string) string {
	t.Helper()
	img := EnsureImage(t, c)
	ctx := context.Background()
	c.Remove(ctx, name)
	id, err := c.Create(ctx, name, &container.Config{Image: img, Cmd: []string{"/bin/sh", "-c", cmd}, Labels: labels, Env: []string{"WOPR_TEST=1"}}, &container.HostConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Remove(context.Background(), id) })
	if err := c.Start(ctx, id); err != nil {
		t.Fatal(err)
	}
	return id
}
