package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wopr-network/opsd/internal/artifact"
	"github.com/wopr-network/opsd/internal/layout"
	"github.com/wopr-network/opsd/internal/restore"
	"github.com/wopr-network/opsd/internal/state"
	"github.com/wopr-network/opsd/internal/storage/local"
)

// heldRestoreDaemon starts a daemon whose admin container restores are held by do (a stand-in
// for the restore's work) and returns it with the URL that restores tenant_busy.
func heldRestoreDaemon(t *testing.T, do func(ctx context.Context, t *restore.Tracker) (restore.Report, error)) (*Main, string, string) {
	t.Helper()
	dir, cfgPath := writeLocalConfig(t, "adm", fmt.Sprintf(`http:
  admin_token: %s
`, token), `  - {name: noop, kind: noop, schedule: "0 2 * * *"}
`)
	store, _ := local.New(filepath.Join(dir, "store"))
	key := "nightly/adm/tenant_busy/tenant_busy_20261125.tar.gz"
	if _, err := artifact.Store(context.Background(), store, bytes.NewReader([]byte("archive")), artifact.Options{}, artifact.Manifest{Key: key, Kind: "container", Target: "tenant_busy"}); err != nil {
		t.Fatal(err)
	}
	old := containerRestore
	t.Cleanup(func() { containerRestore = old })
	containerRestore = func(m *Main, _ *layout.Layout, containerID, key string, _ restore.HostAccess) *restore.Run {
		return &restore.Run{Kind: restore.KindContainer, Target: containerID, Key: key, RequestedBy: "api", State: m.state, Do: do}
	}
	m, base := startDaemon(t, cfgPath)
	return m, base + "/api/admin/backups/tenant_busy/restore", `{"remotePath":"` + key + `"}`
}

// restoreRecord reads GET /api/admin/restores/{id}.
func restoreRecord(t *testing.T, m *Main, id int64) state.Restore {
	t.Helper()
	_, b := getAuth(t, fmt.Sprintf("http://%s/api/admin/restores/%d", m.Addr(), id), token)
	var rec state.Restore
	json.Unmarshal([]byte(b), &rec)
	return rec
}

func startedID(t *testing.T, body string) int64 {
	t.Helper()
	var started struct{ ID int64 }
	if err := json.Unmarshal([]byte(body), &started); err != nil || started.ID == 0 {
		t.Fatalf("no restore id in %s", body)
	}
	return started.ID
}

// TestAdminRestoreConflict: while a restore of a container runs, a second admin restore of the
// same container gets 409 naming the running one; once it finished, a new one is accepted.
func TestAdminRestoreConflict(t *testing.T) {
	entered, hold := make(chan string, 4), make(chan struct{})
	m, url, body := heldRestoreDaemon(t, func(ctx context.Context, tr *restore.Tracker) (restore.Report, error) {
		entered <- "tenant_busy"
		<-hold
		return restore.Report{}, nil
	})
	code, b := postBody(t, url, token, body)
	if code != 202 {
		t.Fatalf("first restore: %d %s", code, b)
	}
	id := startedID(t, b)
	<-entered
	code, b = postBody(t, url, token, body)
	if code != 409 || !strings.Contains(b, fmt.Sprintf("a restore of tenant_busy is already running (id %d)", id)) {
		t.Fatalf("second restore while the first runs: %d %s", code, b)
	}
	close(hold)
	eventually(t, "the first restore to finish", 10*time.Second, func() bool {
		return restoreRecord(t, m, id).Outcome == state.OutcomeSuccess
	})
	eventually(t, "the second restore to be accepted", 10*time.Second, func() bool {
		code, _ := postBody(t, url, token, body)
		return code == 202
	})
	<-entered
}

// TestAdminRestoreCancelAndBoundedClose: DELETE /api/admin/restores/{id} cancels a running
// admin restore (recorded canceled in the restores and in the run history, counted in
// opsd_restore_runs_total); a restore of a finished or unknown id is refused; Close cancels a
// restore still running and returns within its context's deadline.
func TestAdminRestoreCancelAndBoundedClose(t *testing.T) {
	entered := make(chan struct{}, 4)
	m, url, body := heldRestoreDaemon(t, func(ctx context.Context, tr *restore.Tracker) (restore.Report, error) {
		tr.Phase("download")
		entered <- struct{}{}
		<-ctx.Done() // the work stops at cancellation and rolls back
		return restore.Report{}, &restore.RolledBackError{Err: fmt.Errorf("restore tenant_busy: %w", ctx.Err()), What: "the original tenant_busy is back"}
	})
	base := "http://" + m.Addr().String()
	code, b := postBody(t, url, token, body)
	if code != 202 {
		t.Fatalf("restore: %d %s", code, b)
	}
	id := startedID(t, b)
	<-entered
	if code, _ := request(t, http.MethodDelete, fmt.Sprintf("%s/api/admin/restores/%d", base, id), "", ""); code != 401 {
		t.Fatalf("cancel without a token: %d", code)
	}
	if code, b := request(t, http.MethodDelete, fmt.Sprintf("%s/api/admin/restores/%d", base, id), token, ""); code != 202 {
		t.Fatalf("cancel: %d %s", code, b)
	}
	var rec state.Restore
	eventually(t, "the restore to end", 10*time.Second, func() bool {
		rec = restoreRecord(t, m, id)
		return rec.Outcome != state.OutcomeRunning
	})
	if rec.Outcome != state.OutcomeCanceled || !strings.Contains(rec.Error, "rolled back: the original tenant_busy is back") || rec.RunID == 0 {
		t.Fatalf("cancelled restore: %+v", rec)
	}
	// The restore's row is written before its run's metrics are counted: wait for the counter.
	eventually(t, "opsd_restore_runs_total after a cancel", 10*time.Second, func() bool {
		return strings.HasSuffix(metricLine(t, base, `opsd_restore_runs_total{kind="container",outcome="canceled"}`), " 1")
	})
	runs, _ := m.state.Runs(context.Background(), "restore_container:tenant_busy", 5)
	if len(runs) != 1 || runs[0].Outcome != state.OutcomeCanceled || runs[0].Kind != "restore_container" || !strings.Contains(runs[0].Phases, "download") {
		t.Fatalf("run history: %+v", runs)
	}
	if code, b := request(t, http.MethodDelete, fmt.Sprintf("%s/api/admin/restores/%d", base, id), token, ""); code != 409 || !strings.Contains(b, "not running (canceled)") {
		t.Fatalf("cancel of a finished restore: %d %s", code, b)
	}
	if code, _ := request(t, http.MethodPost, base+"/api/admin/restores/999/cancel", token, ""); code != 404 {
		t.Fatalf("cancel of an unknown restore: %d", code)
	}

	// Close with a restore running: it is cancelled, and Close returns within its deadline.
	code, b = postBody(t, url, token, body)
	if code != 202 {
		t.Fatalf("second restore: %d %s", code, b)
	}
	id = startedID(t, b)
	<-entered
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := m.Close(ctx); err != nil || ctx.Err() != nil {
		t.Fatalf("Close with a restore running: %v (deadline passed: %v)", err, ctx.Err())
	}
	st, err := state.Open(context.Background(), filepath.Join(filepath.Dir(m.cfg().State.Path), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if r, _ := st.GetRestore(context.Background(), id); r.Outcome != state.OutcomeCanceled {
		t.Fatalf("restore running at Close: %+v", r)
	}
}
