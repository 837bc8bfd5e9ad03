package state

import (
	"context"
	"path/filepath"
	"testing"
	"time"
)

// TestStatusPerJobAndTarget: a good hot export of a container does not hide the failed nightly
// of the same container; a row from before per-job status is adopted by the next backup; the
// rows of a removed job are retired.
func TestStatusPerJobAndTarget(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	t0 := time.Now()
	day := 24 * time.Hour
	// A row as an older opsd wrote it (no job).
	if _, err := s.DB().ExecContext(ctx, `INSERT INTO backup_status (container_id, node_id, kind, last_backup_at, last_backup_success, total_backups, created_at, updated_at)
		VALUES ('tenant_a', 'n1', 'container', ?, 1, 5, ?, ?)`, t0.Add(-time.Hour).UnixMilli(), t0.UnixMilli(), t0.UnixMilli()); err != nil {
		t.Fatal(err)
	}
	if err := s.RecordBackup(ctx, BackupAttempt{Target: "tenant_a", Job: "nightly", NodeID: "n1", Kind: "container", At: t0, Error: "docker export: EOF"}); err != nil {
		t.Fatal(err)
	}
	if err := s.RecordBackup(ctx, BackupAttempt{Target: "tenant_a", Job: "hot", NodeID: "n1", Kind: "container", At: t0.Add(time.Minute), Success: true, Path: "latest/tenant_a/latest.tar.gz"}); err != nil {
		t.Fatal(err)
	}
	all, err := s.ListBackups(ctx, t0.Add(2*time.Minute), day)
	if err != nil || len(all) != 2 {
		t.Fatalf("rows: %+v %v", all, err)
	}
	if all[0].Job != "hot" || all[0].IsStale || all[1].Job != "nightly" || !all[1].IsStale || all[1].TotalBackups != 5 {
		t.Fatalf("rows: %+v", all)
	}
	stale, _ := s.ListStale(ctx, t0.Add(2*time.Minute), day)
	if len(stale) != 1 || stale[0].ContainerID != "tenant_a" || stale[0].Job != "nightly" {
		t.Fatalf("the hot export hid the failed nightly: stale = %+v", stale)
	}
	gone, err := s.RetireJobsExcept(ctx, []string{"hot"}, t0)
	if err != nil || len(gone) != 1 || gone[0].Job != "nightly" {
		t.Fatalf("RetireJobsExcept = %+v, %v", gone, err)
	}
	if stale, _ := s.ListStale(ctx, t0.Add(2*time.Minute), day); len(stale) != 0 {
		t.Fatalf("a removed job's target is still stale: %+v", stale)
	}
	// RetireMissing is per job: hot's list does not retire nightly's targets.
	s.RecordBackup(ctx, BackupAttempt{Target: "tenant_b", Job: "nightly", Kind: "container", At: t0, Success: true})
	if got, _ := s.RetireMissing(ctx, "hot", "container", []string{"tenant_a"}, t0); len(got) != 0 {
		t.Fatalf("hot retired %v", got)
	}
}
