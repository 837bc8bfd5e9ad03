package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wopr-network/opsd/internal/demo"
)

// TestAdminAPIAndHealthTransitions: the admin API's shapes and auth, and /health going degraded
// when a target goes stale and back to ok after a success.
func TestAdminAPIAndHealthTransitions(t *testing.T) {
	dir := t.TempDir()
	paths, err := demo.Create(context.Background(), dir, 100)
	if err != nil {
		t.Fatal(err)
	}
	billing := paths["billing"]
	moved := billing + ".away"
	os.Rename(billing, moved) // billing is missing at first: its backup fails
	cfgPath := filepath.Join(dir, "opsd.yaml")
	writeConfig(t, cfgPath, fmt.Sprintf(`node_id: admin
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
jobs:
  - name: platform-db-backup
    kind: sqlite_backup
    schedule: "0 3 * * *"
    databases:
      - {name: auth, path: %q}
      - {name: billing, path: %q}
`, token, dir, dir, paths["auth"], billing))
	m, base := startDaemon(t, cfgPath)
	ctx := context.Background()

	for _, path := range []string{"/api/admin/backups", "/api/admin/backups/alerts/stale", "/api/admin/backups/auth", "/api/admin/backups/auth/snapshots", "/admin/health", "/api/alerts"} {
		if code, body := getAuth(t, base+path, ""); code != 401 || body != `{"error":"Authentication required"}`+"\n" {
			t.Fatalf("%s without a token: %d %s", path, code, body)
		}
		if code, body := getAuth(t, base+path, "nope"); code != 401 || body != `{"error":"Invalid or expired token"}`+"\n" {
			t.Fatalf("%s with a wrong token: %d %s", path, code, body)
		}
	}
	run := func() {
		if code, _ := post(t, base+"/api/jobs/platform-db-backup/run", token); code != 202 {
			t.Fatalf("trigger: %d", code)
		}
		eventually(t, "the run", 10*time.Second, func() bool { return !m.runner.IsRunning("platform-db-backup") && lastOutcome(m) != "" })
	}
	run()
	if _, body := get(t, base+"/health"); body != `{"status":"degraded","service":"opsd","backups":{"staleCount":1,"totalTracked":2}}`+"\n" {
		t.Fatalf("/health after a failed backup: %s", body)
	}
	_, body := getAuth(t, base+"/api/admin/backups?stale=true", token)
	var list struct {
		Backups []map[string]any
		Total   int
		Stale   int `json:"staleCount"`
	}
	json.Unmarshal([]byte(body), &list)
	if list.Total != 1 || list.Stale != 1 || list.Backups[0]["containerId"] != "billing" || list.Backups[0]["isStale"] != true ||
		!strings.Contains(list.Backups[0]["lastBackupError"].(string), "database file not found") || list.Backups[0]["lastBackupAt"] != nil {
		t.Fatalf("?stale=true: %s", body)
	}
	for _, k := range []string{"containerId", "nodeId", "lastBackupAt", "lastBackupSizeMb", "lastBackupPath", "lastBackupSuccess", "lastBackupError", "totalBackups", "createdAt", "updatedAt", "isStale"} {
		if _, ok := list.Backups[0][k]; !ok {
			t.Fatalf("entry lacks %s: %s", k, body)
		}
	}
	_, body = getAuth(t, base+"/api/admin/backups/alerts/stale", token)
	if !strings.Contains(body, `"count":1`) || !strings.Contains(body, `"containerId":"billing"`) {
		t.Fatalf("stale alerts: %s", body)
	}
	today := time.Now().UTC().Format("20060102")
	_, body = getAuth(t, base+"/api/admin/backups/auth/snapshots", token)
	if !strings.Contains(body, `"path":"platform/`+today+`/auth-`+today+`.db"`) || !strings.Contains(body, `"containerId":"auth"`) {
		t.Fatalf("snapshots: %s", body)
	}
	if code, _ := getAuth(t, base+"/api/admin/backups/nope", token); code != 404 {
		t.Fatalf("unknown target: %d", code)
	}
	m.evaluator.EvaluateOnce(ctx, time.Now())
	_, body = getAuth(t, base+"/admin/health", token)
	if !strings.Contains(body, `"gateway":null`) || !strings.Contains(body, `{"name":"stale-backups","firing":true,"message":"1 stale backup targets: billing"}`) {
		t.Fatalf("/admin/health: %s", body)
	}
	// The database comes back; the next backup succeeds and /health is ok again.
	os.Rename(moved, billing)
	run()
	if _, body := get(t, base+"/health"); body != `{"status":"ok","service":"opsd","backups":{"staleCount":0,"totalTracked":2}}`+"\n" {
		t.Fatalf("/health after a good backup: %s", body)
	}
	m.evaluator.EvaluateOnce(ctx, time.Now())
	if _, body := getAuth(t, base+"/api/alerts", token); !strings.Contains(body, `"name":"stale-backups","firing":false`) {
		t.Fatalf("/api/alerts: %s", body)
	}
}

func lastOutcome(m *Main) string {
	r, err := m.state.LastRun(context.Background(), "platform-db-backup")
	if err != nil || r.Outcome == "running" {
		return ""
	}
	return r.Outcome
}
