package local_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
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

	if err := os.RemoveAll(root); err != nil {
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

	// Mounted again (here: recreated by the operator), the store works.
	if err := os.Mkdir(root, 0o750); err != nil {
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
