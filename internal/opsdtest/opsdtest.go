// Package opsdtest builds the real opsd binary for tests that run it as a process, and finds
// them a free address to serve on.
package opsdtest

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// Binary builds cmd/opsd into the test's temp dir (the build cache makes it a link step) and
// returns its path.
func Binary(t testing.TB) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "opsd")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/wopr-network/opsd/cmd/opsd")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	return bin
}

// FreeAddr returns a loopback host:port that nothing listens on now.
func FreeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
