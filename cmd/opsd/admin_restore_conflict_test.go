package main

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wopr-network/opsd/internal/artifact"
	"github.com/wopr-network/opsd/internal/restore"
	"github.com/wopr-network/opsd/internal/storage/local"
)

// TestAdminRestoreConflict: while a restore of a container runs, a second admin restore of the
// same container gets 409 naming the running one; once it finished, a new one is accepted.
func TestAdminRestoreConflict(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "opsd.yaml")
	writeConfig(t, cfgPath, fmt.Sprintf(`node_id: adm
http:
  admin_token: %s
state:
  path: %s/state.db
storage:
  backend: local
  local:
    path: %s/store
alerts:
  interval: 1h
  rules: []
jobs:
  - {name: noop, kind: noop, schedule: "0 2 * * *"}
`, token, dir, dir))
	store, _ := local.New(filepath.Join(dir, "store"))
	key := "nightly/adm/tenant_busy/tenant_busy_20261125.tar.gz"
	if _, err := artifact.Store(context.Background(), store, bytes.NewReader([]byte("archive")), artifact.Options{}, artifact.Manifest{Key: key, Kind: "container", Target: "tenant_busy"}); err != nil {
		t.Fatal(err)
	}
	entered, hold := make(chan string, 4), make(chan struct{})
	old := adminRestore
	defer func() { adminRestore = old }()
	adminRestore = func(ctx context.Context, m *Main, id int64, containerID, key string) (restore.ContainerResult, error) {
		entered <- containerID
		<-hold
		return restore.ContainerResult{}, nil
	}
	m, base := startDaemon(t, cfgPath)
	url := base + "/api/admin/backups/tenant_busy/restore"
	body := `{"remotePath":"` + key + `"}`
	if code, b := postBody(t, url, token, body); code != 202 {
		t.Fatalf("first restore: %d %s", code, b)
	}
	<-entered
	code, b := postBody(t, url, token, body)
	if code != 409 || !strings.Contains(b, "a restore of tenant_busy is already running (id 1)") {
		t.Fatalf("second restore while the first runs: %d %s", code, b)
	}
	close(hold)
	eventually(t, "the first restore to finish", 10*time.Second, func() bool {
		_, ok := m.restoring.Load("tenant_busy")
		return !ok
	})
	if code, b := postBody(t, url, token, body); code != 202 {
		t.Fatalf("a restore after the first finished: %d %s", code, b)
	}
	<-entered
}
