package config

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestWatchSinceSeesAnEditBeforeItsFirstLook: the file changed between the load and the
// watcher's start; the watcher still reports it (Watch alone would take the edited file as its
// starting point and miss it).
func TestWatchSinceSeesAnEditBeforeItsFirstLook(t *testing.T) {
	path := filepath.Join(t.TempDir(), "opsd.yaml")
	loaded := []byte("node_id: a\n")
	if err := os.WriteFile(path, loaded, 0o600); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(loaded)
	if err := os.WriteFile(path, []byte("node_id: b\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	changed := make(chan struct{}, 1)
	go WatchSince(ctx, path, hex.EncodeToString(sum[:]), 10*time.Millisecond, func() { changed <- struct{}{} })
	select {
	case <-changed:
	case <-time.After(10 * time.Second):
		t.Fatal("an edit made before the watcher started was never reported")
	}
}
