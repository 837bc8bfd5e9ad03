package postgres

import (
	"os"
	"syscall"
	"testing"
)

// TestGrowPipe: pg_dump's output pipe is grown to 1 MiB (fewer wake-ups of pg_dump and opsd).
func TestGrowPipe(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	growPipe(w)
	const fGetPipeSz = 1032
	n, _, errno := syscall.Syscall(syscall.SYS_FCNTL, w.Fd(), fGetPipeSz, 0)
	if errno != 0 {
		t.Skipf("F_GETPIPE_SZ: %v", errno)
	}
	if n < 1<<20 {
		b, _ := os.ReadFile("/proc/sys/fs/pipe-max-size")
		t.Fatalf("pipe holds %d bytes, want 1 MiB (pipe-max-size %s)", n, b)
	}
}
