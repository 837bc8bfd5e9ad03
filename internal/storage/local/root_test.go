package local_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wopr-network/opsd/internal/storage"
	"github.com/wopr-network/opsd/internal/storage/local"
)

// TestRootGoneIsAnError: once the store's root directory is gone (an unmounted disk, a removed
// directory) the probe fails and so does every operation, naming ErrRootGone; nothing recreates
// the root. The probe said the store was fine (the probe key is "not found" either way), a put
// recreated the root on whatever disk held its parent, and lists and reads answered as if every
// backup had been deleted.
func TestRootGoneIsAnError(t *testing.T) {
	ctx := context.Background()
	root := filepath.Join(t.TempDir(), "store")
	s, err := local.New(root)
	if err != nil {
		t.Fatal(err)
	}
	const key = "platform/20261201/auth-20261201.db"
	if _, err := s.Put(ctx, key, bytes.NewReader([]byte("db")), storage.PutOptions{Size: 2}); err != nil {
		t.Fatal(err)
	}
	if err := storage.Probe(ctx, s); err != nil {
		t.Fatalf("probe of a working store: %v", err)
	}
	if _, err := s.Stat(ctx, "platform/none"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("missing key of a working store: %v, want not found", err)
	}

	disk := root + ".disk" // the unmounted disk: its content is elsewhere
	if err := os.Rename(root, disk); err != nil {
		t.Fatal(err)
	}
	if err := storage.Probe(ctx, s); !errors.Is(err, local.ErrRootGone) {
		t.Fatalf("probe with the root gone: %v, want ErrRootGone", err)
	}
	checks := map[string]error{}
	_, checks["put"] = s.Put(ctx, "platform/20261202/auth-20261202.db", bytes.NewReader([]byte("db")), storage.PutOptions{Size: 2})
	_, checks["stat"] = s.Stat(ctx, key)
	_, _, checks["get"] = s.Get(ctx, key)
	_, checks["copy"] = s.Copy(ctx, key, "pre-restore/x")
	checks["list"] = s.List(ctx, "platform/", func(storage.ObjectInfo) error { return nil })
	checks["delete"] = s.Delete(ctx, key)
	for op, err := range checks {
		if !errors.Is(err, local.ErrRootGone) || errors.Is(err, storage.ErrNotFound) {
			t.Errorf("%s with the root gone: %v, want ErrRootGone", op, err)
		}
	}
	if _, err := os.Stat(root); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the root was recreated: %v", err)
	}

	// The empty mount point is not the store either.
	if err := os.Mkdir(root, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := storage.Probe(ctx, s); !errors.Is(err, local.ErrRootGone) {
		t.Fatalf("probe of the empty mount point: %v, want ErrRootGone", err)
	}
	if _, err := s.Put(ctx, key, bytes.NewReader([]byte("db")), storage.PutOptions{Size: 2}); !errors.Is(err, local.ErrRootGone) {
		t.Fatalf("put into the empty mount point: %v, want ErrRootGone", err)
	}

	// Mounted again, the store works, with what it held.
	if err := os.Remove(root); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(disk, root); err != nil {
		t.Fatal(err)
	}
	if err := storage.Probe(ctx, s); err != nil {
		t.Fatalf("probe once the root is back: %v", err)
	}
	if _, err := s.Put(ctx, key, bytes.NewReader([]byte("db")), storage.PutOptions{Size: 2}); err != nil {
		t.Fatal(err)
	}
	rc, _, err := s.Get(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(rc)
	rc.Close()
	if string(b) != "db" {
		t.Fatalf("read back %q", b)
	}
}

// TestUnmountedAtStartIsRefused: a disk that did not mount at boot leaves the empty mount point.
// An opsd that used the store there before refuses it (naming the memo to delete to start a new
// store) instead of making it a new, empty store on the wrong disk, where every backup would look
// deleted; mounted again, it opens. A first start creates the store, and the marker is no key.
func TestUnmountedAtStartIsRefused(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	root, memo := filepath.Join(dir, "mnt", "backups"), filepath.Join(dir, "state.db.local-store")
	s, err := local.Open(root, memo)
	if err != nil {
		t.Fatal(err)
	}
	const key = "platform/20261201/auth-20261201.db"
	if _, err := s.Put(ctx, key, bytes.NewReader([]byte("db")), storage.PutOptions{Size: 2}); err != nil {
		t.Fatal(err)
	}
	var keys []string
	if err := s.List(ctx, "", func(o storage.ObjectInfo) error { keys = append(keys, o.Key); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(keys) != 1 || keys[0] != key {
		t.Fatalf("listing: %v, want only %s (the marker is no key)", keys, key)
	}
	if _, err := s.Put(ctx, local.MarkerName, bytes.NewReader([]byte("x")), storage.PutOptions{Size: 1}); err == nil {
		t.Fatal("the marker could be overwritten as a key")
	}

	// Reboot with the disk not mounted: the mount point is an empty directory.
	if err := os.Rename(root, root+".disk"); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(root, 0o750); err != nil {
		t.Fatal(err)
	}
	_, err = local.Open(root, memo)
	if !errors.Is(err, local.ErrRootGone) || !strings.Contains(err.Error(), memo) || !strings.Contains(err.Error(), "not mounted") {
		t.Fatalf("open of the empty mount point: %v, want ErrRootGone naming %s", err, memo)
	}
	if _, err := os.Stat(filepath.Join(root, local.MarkerName)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a marker was written into the empty mount point: %v", err)
	}

	// Another store's disk mounted there is refused too.
	other := filepath.Join(dir, "other")
	if _, err := local.New(other); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(root); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(other, root); err != nil {
		t.Fatal(err)
	}
	if _, err := local.Open(root, memo); !errors.Is(err, local.ErrRootGone) {
		t.Fatalf("open of another store: %v, want ErrRootGone", err)
	}

	// The right disk mounted: it opens with its backups.
	if err := os.Rename(root, other); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(root+".disk", root); err != nil {
		t.Fatal(err)
	}
	s, err = local.Open(root, memo)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Stat(ctx, key); err != nil {
		t.Fatalf("the backup after mounting: %v", err)
	}

	// An operator who deletes the memo accepts a new, empty store.
	if err := os.Rename(root, root+".disk"); err != nil {
		t.Fatal(err)
	}
	os.Remove(memo)
	if _, err := local.Open(root, memo); err != nil {
		t.Fatalf("a new store after deleting the memo: %v", err)
	}
}
