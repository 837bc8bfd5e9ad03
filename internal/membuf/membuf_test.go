package membuf

import (
	"runtime"
	"testing"
)

// TestAllocReleaseFree: buffers are writable, read as zeros after Release, and Free unmaps them.
func TestAllocReleaseFree(t *testing.T) {
	b := Alloc(1 << 20)
	if len(b) != 1<<20 {
		t.Fatalf("len %d", len(b))
	}
	for i := range b {
		b[i] = 7
	}
	Release(b)
	for i, v := range b {
		if runtime.GOOS != "linux" {
			break // heap buffers elsewhere: Release keeps their bytes
		}
		if v != 0 {
			t.Fatalf("byte %d is %d after Release, want 0", i, v)
		}
	}
	b[5] = 1
	Free(b)
	h := make([]byte, 10) // a heap slice: Free must not crash on it
	Free(h)
}
