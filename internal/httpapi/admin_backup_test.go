package httpapi

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/wopr-network/opsd/internal/state"
)

// TestAdminBackupPicksRequestedJob: a container exported nightly and hot has two status rows;
// GET /api/admin/backups/{id}?job= returns the requested job's row (not the first job's), and
// without ?job the failed row is shown, never hidden behind the other job's success.
func TestAdminBackupPicksRequestedJob(t *testing.T) {
	ctx := context.Background()
	st, err := state.Open(ctx, filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	now := time.Now()
	for _, a := range []state.BackupAttempt{
		{Target: "tenant_a", Job: "a-hot", Kind: "container", At: now.Add(-time.Minute), Success: false, Error: "export failed"},
		{Target: "tenant_a", Job: "b-nightly", Kind: "container", At: now.Add(-time.Hour), Success: true, SizeBytes: 1 << 20, Path: "nightly/n/tenant_a/x.tar.gz"},
		{Target: "tenant_b", Job: "a-hot", Kind: "container", At: now, Success: true, SizeBytes: 1 << 20, Path: "latest/tenant_b/latest.tar.gz"},
	} {
		if err := st.RecordBackup(ctx, a); err != nil {
			t.Fatal(err)
		}
	}
	s := New(Options{State: st, StaleAfter: func() time.Duration { return 24 * time.Hour }, Gatherer: prometheus.NewRegistry(),
		AdminToken: func() string { return "tok" }, Log: zerolog.Nop()})
	s.EnableAdmin(AdminOptions{})
	get := func(path string) (int, state.BackupStatus) {
		req := httptest.NewRequest(http.MethodGet, path, nil)
		req.Header.Set("Authorization", "Bearer tok")
		rec := httptest.NewRecorder()
		s.Handler().ServeHTTP(rec, req)
		var b state.BackupStatus
		json.Unmarshal(rec.Body.Bytes(), &b)
		return rec.Code, b
	}
	for _, tc := range []struct {
		path, wantJob string
		wantOK        bool
	}{
		{"/api/admin/backups/tenant_a?job=b-nightly", "b-nightly", true},
		{"/api/admin/backups/tenant_a?job=a-hot", "a-hot", false},
		{"/api/admin/backups/tenant_a", "a-hot", false}, // the failed row, not hidden
		{"/api/admin/backups/tenant_b", "a-hot", true},
	} {
		code, b := get(tc.path)
		if code != 200 || b.ContainerID != tc.path[len("/api/admin/backups/"):len("/api/admin/backups/tenant_a")] || b.Job != tc.wantJob || b.LastBackupSuccess != tc.wantOK {
			t.Fatalf("%s: %d %+v", tc.path, code, b)
		}
	}
	if code, _ := get("/api/admin/backups/tenant_b?job=b-nightly"); code != 404 {
		t.Fatalf("a job that does not back the target up: %d, want 404", code)
	}
	if code, _ := get("/api/admin/backups/nope"); code != 404 {
		t.Fatalf("unknown target: %d, want 404", code)
	}
}

// TestPickBackupNewest: among fresh rows the newest backup wins, whatever the order.
func TestPickBackupNewest(t *testing.T) {
	t1, t2 := time.Unix(100, 0), time.Unix(200, 0)
	rows := []state.BackupStatus{{Job: "old", LastBackupAt: &t1}, {Job: "new", LastBackupAt: &t2}}
	if got := PickBackup(rows).Job; got != "new" {
		t.Fatalf("got %s", got)
	}
	rows[0], rows[1] = rows[1], rows[0]
	if got := PickBackup(rows).Job; got != "new" {
		t.Fatalf("reversed: got %s", got)
	}
}
