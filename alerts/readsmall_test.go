package alerts

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// readSmall returns the whole file up to its limit, across reads larger than its first buffer.
func TestReadSmallReadsUpToTheLimit(t *testing.T) {
	dir := t.TempDir()
	big := bytes.Repeat([]byte("0123456789abcdef"), 1000) // 16,000 bytes: several buffer sizes
	p := filepath.Join(dir, "f")
	if err := os.WriteFile(p, big, 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := readSmall(p, 64<<10)
	if err != nil || !bytes.Equal(got, big) {
		t.Fatalf("read %d bytes (%v), want the whole %d", len(got), err, len(big))
	}
	got, err = readSmall(p, 48)
	if err != nil || !bytes.Equal(got, big[:48]) {
		t.Fatalf("limit 48: read %q (%v)", got, err)
	}
	if _, err := readSmall(filepath.Join(dir, "missing"), 10); !os.IsNotExist(err) {
		t.Fatalf("missing file: %v, want not-exist", err)
	}
	if b, err := readSmall("/proc/loadavg", 4096); err == nil && len(b) == 0 {
		t.Fatal("/proc/loadavg read empty")
	}
}
