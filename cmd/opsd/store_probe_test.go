package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wopr-network/opsd/internal/artifact"
	"github.com/wopr-network/opsd/internal/artifact/artifacttest"
	"github.com/wopr-network/opsd/internal/storage"
	"github.com/wopr-network/opsd/internal/storage/storagetest"
)

// probeEverySecond probes the store at every evaluation (every second) here; every 5 minutes by
// default.
var probeEverySecond = Options{StoreProbeInterval: time.Nanosecond, CheckInterval: 200 * time.Millisecond}

// TestIdleStoreOutageInHealth: the object store (a real S3 engine, behind a proxy that cuts
// every connection) dies under a running daemon with nothing to run: /health turns degraded with
// a "store" problem naming the failure and no secret, and ok again once the store answers.
func TestIdleStoreOutageInHealth(t *testing.T) {
	s3cfg := storagetest.RealS3(t)
	storagetest.NewS3(t, s3cfg) // creates the bucket
	proxy := storagetest.NewProxy(t, s3cfg.Endpoint)
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "opsd.yaml")
	writeConfig(t, cfgPath, fmt.Sprintf(`node_id: probe
state:
  path: %s/state.db
alerts:
  interval: 1s
  rules: []
%sjobs:
  - {name: nightly, kind: noop, schedule: "0 3 * * *"}
`, dir, s3StorageYAML(proxy.Addr, s3cfg.Bucket)))
	ctx := context.Background()
	m, base := startDaemonWith(t, cfgPath, probeEverySecond)
	health := func() string {
		_, b := get(t, base+"/health")
		return b
	}
	eventually(t, "/health ok at start", 30*time.Second, func() bool { return strings.Contains(health(), `"status":"ok"`) })

	proxy.Kill()
	var body string
	eventually(t, "/health degraded by the store", time.Minute, func() bool {
		body = health()
		return strings.Contains(body, `"status":"degraded"`) && strings.Contains(body, `"name":"store"`)
	})
	t.Logf("health: %s", body)
	if !strings.Contains(body, "object store unreachable") || !strings.Contains(body, proxy.Addr) {
		t.Fatalf("/health does not say the store is unreachable and where: %s", body)
	}
	if strings.Contains(body, s3cfg.SecretKey) || strings.Contains(body, s3cfg.AccessKey) {
		t.Fatal("/health carries a store credential")
	}

	proxy.Revive(t)
	eventually(t, "/health ok again", time.Minute, func() bool {
		body = health()
		return strings.Contains(body, `"status":"ok"`) && !strings.Contains(body, `"store"`)
	})

	// An upload published just before the store went away, with its manifest not written: the
	// daemon writes it once the store answers (before, readers rejected the key's object until
	// prune's recovery, 6 hours later).
	const key = "platform/20261201/auth-20261201.db"
	hctx := artifact.WithHooks(ctx, artifact.Hooks{Published: func(string) { proxy.Kill() }})
	if _, err := artifact.Store(hctx, m.objStore(), strings.NewReader("the database"), artifact.Options{}, artifact.Manifest{Key: key, Kind: "sqlite", Target: "auth"}); err == nil {
		t.Fatal("an upload whose manifest could not be written succeeded")
	}
	direct := storagetest.NewS3(t, s3cfg)
	if _, err := artifact.ReadManifest(ctx, direct, key); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("manifest before the store answers: %v", err)
	}
	proxy.Revive(t)
	eventually(t, "the manifest written once the store answers", time.Minute, func() bool {
		_, err := artifact.ReadManifest(ctx, direct, key)
		return err == nil
	})
	if n := artifacttest.Check(t, direct, "platform/"); n != 1 {
		t.Fatalf("verified %d artifacts under platform/, want 1", n)
	}
}

// TestLocalStoreRootGoneInHealth: the local store's root directory disappears under a running
// daemon (an unmounted disk): /health turns degraded with a "store" problem, and ok again once the
// directory is back. The probe asked for a key that never exists, and "not found" looked healthy
// whether the root was there or not.
func TestLocalStoreRootGoneInHealth(t *testing.T) {
	dir := t.TempDir()
	root := filepath.Join(dir, "store")
	cfgPath := filepath.Join(dir, "opsd.yaml")
	writeConfig(t, cfgPath, fmt.Sprintf(`node_id: probe
state:
  path: %s/state.db
storage:
  backend: local
  local: {path: %s}
alerts:
  interval: 1s
  rules: []
jobs:
  - {name: nightly, kind: noop, schedule: "0 3 * * *"}
`, dir, root))
	ctx := context.Background()
	m, base := runMain(t, cfgPath, probeEverySecond)
	t.Cleanup(func() { closeMain(m) }) // m: the daemon running at the end
	health := func() string {
		_, b := get(t, base+"/health")
		return b
	}
	eventually(t, "/health ok at start", 30*time.Second, func() bool { return strings.Contains(health(), `"status":"ok"`) })

	disk := root + ".disk" // the unmounted disk, with the backups
	if err := os.Rename(root, disk); err != nil {
		t.Fatal(err)
	}
	var body string
	eventually(t, "/health degraded by the store", time.Minute, func() bool {
		body = health()
		return strings.Contains(body, `"status":"degraded"`) && strings.Contains(body, `"name":"store"`)
	})
	if !strings.Contains(body, "root directory is gone") {
		t.Fatalf("/health does not say the store's directory is gone: %s", body)
	}
	// The empty mount point left behind is not the store.
	if err := os.Mkdir(root, 0o750); err != nil {
		t.Fatal(err)
	}
	m.periodic(ctx, time.Now(), false)
	if body = health(); !strings.Contains(body, `"name":"store"`) {
		t.Fatalf("/health with the empty mount point: %s", body)
	}
	os.Remove(root)
	if err := os.Rename(disk, root); err != nil {
		t.Fatal(err)
	}
	eventually(t, "/health ok again", time.Minute, func() bool {
		body = health()
		return strings.Contains(body, `"status":"ok"`) && !strings.Contains(body, `"store"`)
	})

	// A restart while the disk is not mounted (the empty mount point): the daemon starts degraded
	// instead of making the mount point a new, empty store, and uses the store once it is mounted.
	closeCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	m.Close(closeCtx)
	cancel()
	if err := os.Rename(root, disk); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(root, 0o750); err != nil {
		t.Fatal(err)
	}
	m, base = runMain(t, cfgPath, probeEverySecond)
	if body = health(); !strings.Contains(body, `"name":"store"`) || !strings.Contains(body, "not mounted") {
		t.Fatalf("/health after a restart onto the empty mount point: %s", body)
	}
	if _, err := os.Stat(filepath.Join(root, ".opsd-store")); !os.IsNotExist(err) {
		t.Fatalf("the empty mount point became a store: %v", err)
	}
	os.Remove(root)
	if err := os.Rename(disk, root); err != nil {
		t.Fatal(err)
	}
	eventually(t, "/health ok once the disk is mounted", time.Minute, func() bool {
		body = health()
		return strings.Contains(body, `"status":"ok"`) && !strings.Contains(body, `"store"`)
	})
}
