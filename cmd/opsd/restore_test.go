package main

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wopr-network/opsd/internal/demo"
	"github.com/wopr-network/opsd/internal/docker/dockertest"
	"github.com/wopr-network/opsd/internal/sqlite"
	"github.com/wopr-network/opsd/internal/storage/storagetest"
)

// TestRestoreProceduresOnSeaweedFS: the runbook's Procedure 1 (platform databases) and
// Procedure 2 (a tenant container), each one opsd command, against the integration tier's S3
// engine and the Docker engine.
func TestRestoreProceduresOnSeaweedFS(t *testing.T) {
	s3cfg := storagetest.RealS3(t)
	storagetest.NewS3(t, s3cfg)
	dc := dockertest.Client(t)
	api := dockertest.Run(t, dc, procAPIPrefix+"platform_api", nil, "trap 'exit 0' TERM; sleep 3600 & wait")
	tenantID := dockertest.Run(t, dc, procPrefix+"a", map[string]string{"wopr.tier": "pro"}, "trap 'exit 0' TERM; echo before > /data/before.txt; sleep 3600 & wait")
	health := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"status":"ok","service":"wopr-platform","backups":{"staleCount":0,"totalTracked":0}}`))
	}))
	defer health.Close()
	dir := t.TempDir()
	paths, _ := demo.Create(context.Background(), dir, 300)
	var dbs strings.Builder
	for _, n := range demo.Names {
		fmt.Fprintf(&dbs, "      - {name: %s, path: %q}\n", n, paths[n])
	}
	cfgPath := filepath.Join(dir, "opsd.yaml")
	os.WriteFile(cfgPath, []byte(fmt.Sprintf(`node_id: proc
state:
  path: %s/state.db
storage:
  backend: s3
  s3: {endpoint: %s, bucket: %s, region: us-east-1, access_key: "${OPSD_TEST_S3_ACCESS_KEY}", secret_key: "${OPSD_TEST_S3_SECRET_KEY}", tls: false}
jobs:
  - name: platform-db-backup
    kind: sqlite_backup
    schedule: "0 3 * * *"
    databases:
%s  - {name: containers-nightly, kind: container_export, schedule: "0 2 * * *", name_prefix: `+procPrefix+`}
`, dir, s3cfg.Endpoint, s3cfg.Bucket, dbs.String())), 0o600)
	var out, errb bytes.Buffer
	mustRun := func(args ...string) string {
		out.Reset()
		errb.Reset()
		if code := run(args, &out, &errb); code != 0 {
			t.Fatalf("%v: exit %d\n%s\n%s", args, code, out.String(), errb.String())
		}
		return out.String()
	}
	mustRun("backup", "db", "-c", cfgPath)
	mustRun("backup", "containers", "-c", cfgPath)
	time.Sleep(1100 * time.Millisecond) // safety copies are named by the second

	// Procedure 1: the databases moved on after the backup; restore them.
	before, _ := sqlite.CountRows(context.Background(), paths["billing"], "meter_events")
	db, _ := demo.Open(paths["billing"])
	db.Exec(`DELETE FROM meter_events`)
	db.Close()
	o := mustRun("restore", "db", "-c", cfgPath, "--yes", "--stop-container", procAPIPrefix+"platform_api", "--health-url", health.URL)
	if !strings.Contains(o, "OK  db platform restored") {
		t.Fatalf("restore db output:\n%s", o)
	}
	if n, _ := sqlite.CountRows(context.Background(), paths["billing"], "meter_events"); n != before {
		t.Fatalf("billing has %d rows after Procedure 1, the backup had %d", n, before)
	}
	if d, _ := dc.Inspect(context.Background(), api, false); !d.Running {
		t.Fatal("the platform API container was not started again")
	}
	if m, _ := filepath.Glob(paths["billing"] + ".pre-restore-*"); len(m) != 1 {
		t.Fatalf("safety copies: %v", m)
	}

	// Procedure 2: a file written after the backup is gone after the restore.
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Name: "after.txt", Mode: 0o644, Size: 1, Typeflag: tar.TypeReg})
	tw.Write([]byte("x"))
	tw.Close()
	dc.CopyTo(context.Background(), tenantID, "/data", &buf)
	o = mustRun("restore", "container", "-c", cfgPath, procPrefix+"a", "--replace", "--probe", "1s")
	if !strings.Contains(o, "OK  container "+procPrefix+"a restored from nightly/proc/"+procPrefix+"a/") {
		t.Fatalf("restore container output:\n%s", o)
	}
	d, err := dc.Inspect(context.Background(), procPrefix+"a", false)
	if err != nil || !d.Running || d.ID == tenantID || d.Labels["wopr.tier"] != "pro" {
		t.Fatalf("restored container: %+v %v", d, err)
	}
	rc, _ := dc.Export(context.Background(), d.ID)
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		if h.Name == "data/after.txt" {
			t.Fatal("the file written after the backup survived Procedure 2")
		}
	}
	rc.Close()
	t.Cleanup(func() { dc.Remove(context.Background(), d.ID) })
	o = mustRun("backups", "list", "-c", cfgPath, "--prefix", "pre-restore/")
	if !strings.Contains(o, "pre-restore/proc/billing/") || !strings.Contains(o, "pre-restore/proc/"+procPrefix+"a/") {
		t.Fatalf("backups list:\n%s", o)
	}
}

func TestAdminRestoreEndpoint(t *testing.T) {
	dc := dockertest.Client(t)
	dockertest.Run(t, dc, admPrefix+"a", nil, "trap 'exit 0' TERM; echo a > /data/a.txt; sleep 3600 & wait")
	_, cfgPath := writeLocalConfig(t, "adm", fmt.Sprintf(`http:
  admin_token: %s
`, token), `  - {name: containers-nightly, kind: container_export, schedule: "0 2 * * *", name_prefix: `+admPrefix+`}
`)
	m, base := startDaemon(t, cfgPath)
	ctx := context.Background()
	spec, _ := m.sched.Spec("containers-nightly")
	if o := m.runner.Run(ctx, spec.Job, time.Minute, "test"); !o.OK() {
		t.Fatal(o.Err)
	}
	url := base + "/api/admin/backups/" + admPrefix + "a/restore"
	today := time.Now().UTC().Format("20060102")
	good := "nightly/adm/" + admPrefix + "a/" + admPrefix + "a_" + today + ".tar.gz"
	for _, bad := range []string{"nightly/adm/" + admPrefix + "a/../tenant_other/x.tar.gz", "nightly/adm/tenant_other/tenant_other_" + today + ".tar.gz", "/etc/passwd", "platform/" + today + "/auth-" + today + ".db"} {
		if code, body := postBody(t, url, token, `{"remotePath":"`+bad+`"}`); code != 403 || !strings.Contains(body, `"error":"Forbidden`) {
			t.Fatalf("%s: %d %s", bad, code, body)
		}
	}
	if code, _ := postBody(t, url, "", `{"remotePath":"`+good+`"}`); code != 401 {
		t.Fatalf("no token: %d", code)
	}
	code, body := postBody(t, url, token, `{"remotePath":"`+good+`"}`)
	if code != 202 {
		t.Fatalf("good key: %d %s", code, body)
	}
	var started struct{ ID int64 }
	json.Unmarshal([]byte(body), &started)
	var rec map[string]any
	eventually(t, "the restore to finish", 60*time.Second, func() bool {
		_, b := getAuth(t, fmt.Sprintf("http://%s/api/admin/restores/%d", m.Addr(), started.ID), token)
		json.Unmarshal([]byte(b), &rec)
		return rec["outcome"] != "running"
	})
	if rec["outcome"] != "success" || rec["requestedBy"] != "api" || !strings.HasPrefix(rec["safety"].(string), "pre-restore/adm/"+admPrefix+"a/") {
		t.Fatalf("restore record: %v", rec)
	}
	d, _ := dc.Inspect(ctx, admPrefix+"a", false)
	if !d.Running {
		t.Fatal("the restored container is not running")
	}
	t.Cleanup(func() { dc.Remove(context.Background(), d.ID) })
}

// procPrefix names this run's test containers (unique on a shared engine).
var procPrefix = dockertest.Unique("tenant_opsdproc_")

// procAPIPrefix names this run's test containers (unique on a shared engine).
var procAPIPrefix = dockertest.Unique("opsd_proc_")

// admPrefix names this run's test containers (unique on a shared engine).
var admPrefix = dockertest.Unique("tenant_opsdadm_")
