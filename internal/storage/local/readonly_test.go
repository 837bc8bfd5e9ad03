package local

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/wopr-network/opsd/internal/storage"
)

// TestReadOnlyStoreWithoutMarkerOpens: an older opsd's store (no marker) on a disk mounted
// read-only to restore from cannot take a marker; it opens anyway, unmarked, its backups
// readable, and a vanished directory is still noticed. Nothing is remembered for it.
func TestReadOnlyStoreWithoutMarkerOpens(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	root, memo := filepath.Join(dir, "old-disk"), filepath.Join(dir, "state.db.local-store")
	const key = "platform/20261130/auth-20261130.db"
	if err := os.MkdirAll(filepath.Join(root, "platform", "20261130"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, filepath.FromSlash(key)), []byte("db"), 0o644); err != nil {
		t.Fatal(err)
	}
	testHookCreateMarker = func(string) error { return &os.PathError{Op: "open", Path: MarkerName, Err: syscall.EROFS} }
	t.Cleanup(func() { testHookCreateMarker = nil })
	s, err := Open(root, memo)
	if err != nil {
		t.Fatalf("open of a read-only store without a marker: %v", err)
	}
	rc, _, err := s.Get(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(rc)
	rc.Close()
	if string(b) != "db" {
		t.Fatalf("read %q", b)
	}
	if err := storage.Probe(ctx, s); err != nil {
		t.Fatalf("probe: %v", err)
	}
	if _, err := os.Stat(memo); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("an unmarked store was remembered: %v", err)
	}
	if err := os.Rename(root, root+".gone"); err != nil {
		t.Fatal(err)
	}
	if err := storage.Probe(ctx, s); !errors.Is(err, ErrRootGone) {
		t.Fatalf("probe with the directory gone: %v, want ErrRootGone", err)
	}
}
