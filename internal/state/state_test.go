package state

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"
)

func open(t *testing.T, path string) *Store {
	t.Helper()
	s, err := Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestBackupStatusRules(t *testing.T) {
	ctx := context.Background()
	s := open(t, filepath.Join(t.TempDir(), "state.db"))
	t0 := time.Date(2026, 11, 26, 3, 0, 0, 0, time.UTC)
	day := 24 * time.Hour

	// A failure before any success: tracked, stale, no time.
	if err := s.RecordBackup(ctx, BackupAttempt{Target: "tenant_a", NodeID: "n1", Kind: "container", At: t0, Error: "docker unreachable"}); err != nil {
		t.Fatal(err)
	}
	b, err := s.GetBackup(ctx, "tenant_a", t0, day)
	if err != nil || b.LastBackupAt != nil || !b.IsStale || b.TotalBackups != 0 || *b.LastBackupError != "docker unreachable" {
		t.Fatalf("after failure: %+v %v", b, err)
	}
	// Success sets time, size, path.
	s.RecordBackup(ctx, BackupAttempt{Target: "tenant_a", NodeID: "n1", Kind: "container", At: t0, Success: true, SizeBytes: 3 << 20, Path: "nightly/n1/tenant_a/a.tar.gz"})
	b, _ = s.GetBackup(ctx, "tenant_a", t0.Add(time.Hour), day)
	if b.IsStale || *b.LastBackupSizeMB != 3 || *b.LastBackupPath != "nightly/n1/tenant_a/a.tar.gz" || b.TotalBackups != 1 || b.LastBackupError != nil {
		t.Fatalf("after success: %+v", b)
	}
	// Exactly 24h is not stale; strictly more is.
	if b, _ := s.GetBackup(ctx, "tenant_a", t0.Add(day), day); b.IsStale {
		t.Fatal("stale at exactly 24h")
	}
	if b, _ := s.GetBackup(ctx, "tenant_a", t0.Add(day+time.Millisecond), day); !b.IsStale {
		t.Fatal("not stale after 24h")
	}
	// A failure keeps the previous good time and path but makes it stale.
	s.RecordBackup(ctx, BackupAttempt{Target: "tenant_a", NodeID: "n1", Kind: "container", At: t0.Add(time.Hour), Error: "upload failed"})
	b, _ = s.GetBackup(ctx, "tenant_a", t0.Add(2*time.Hour), day)
	if !b.LastBackupAt.Equal(t0) || *b.LastBackupPath != "nightly/n1/tenant_a/a.tar.gz" || b.LastBackupSuccess || !b.IsStale || b.TotalBackups != 1 {
		t.Fatalf("after second failure: %+v", b)
	}
	stale, _ := s.ListStale(ctx, t0.Add(2*time.Hour), day)
	if len(stale) != 1 {
		t.Fatalf("stale = %d", len(stale))
	}
	// Retired targets disappear; a new backup brings them back.
	if err := s.Retire(ctx, "tenant_a", t0); err != nil {
		t.Fatal(err)
	}
	if all, _ := s.ListBackups(ctx, t0, day); len(all) != 0 {
		t.Fatalf("retired target still listed: %+v", all)
	}
	if err := s.Retire(ctx, "tenant_a", t0); !errors.Is(err, ErrNotFound) {
		t.Fatalf("retire twice: %v", err)
	}
	s.RecordBackup(ctx, BackupAttempt{Target: "tenant_a", NodeID: "n1", Kind: "container", At: t0, Success: true})
	if all, _ := s.ListBackups(ctx, t0, day); len(all) != 1 || all[0].TotalBackups != 2 {
		t.Fatalf("after un-retire: %+v", all)
	}
	// RetireMissing retires only the given kind.
	s.RecordBackup(ctx, BackupAttempt{Target: "auth", Kind: "sqlite", At: t0, Success: true})
	got, err := s.RetireMissing(ctx, "", "container", nil, t0)
	if err != nil || len(got) != 1 || got[0] != "tenant_a" {
		t.Fatalf("RetireMissing = %v, %v", got, err)
	}
	if all, _ := s.ListBackups(ctx, t0, day); len(all) != 1 || all[0].ContainerID != "auth" {
		t.Fatalf("after RetireMissing: %+v", all)
	}
}

func TestRunsSurviveReopenAndInterruptedRuns(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "state.db")
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now().Add(-time.Hour)
	id, _ := s.StartRun(ctx, "backup", "sqlite_backup", "schedule", t0)
	fin := t0.Add(time.Minute)
	s.FinishRun(ctx, Run{ID: id, Job: "backup", FinishedAt: &fin, Outcome: OutcomeFailure, Error: "boom"})
	s.StartRun(ctx, "backup", "sqlite_backup", "schedule", t0.Add(2*time.Minute)) // left running: the process "dies"
	s.Close()

	s = open(t, path)
	n, err := s.MarkInterrupted(ctx, time.Now())
	if err != nil || n != 1 {
		t.Fatalf("MarkInterrupted = %d, %v", n, err)
	}
	last, err := s.LastRun(ctx, "backup")
	if err != nil || last.Outcome != OutcomeInterrupted || last.FinishedAt == nil {
		t.Fatalf("last = %+v, %v", last, err)
	}
	if _, err := s.LastSuccess(ctx, "backup"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("LastSuccess = %v", err)
	}
	if n, _ := s.ConsecutiveFailures(ctx, "backup"); n != 2 {
		t.Fatalf("ConsecutiveFailures = %d, want 2", n)
	}
	runs, _ := s.Runs(ctx, "backup", 10)
	if len(runs) != 2 || runs[1].Error != "boom" {
		t.Fatalf("runs = %+v", runs)
	}
}

func TestRefusesNewerSchema(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "state.db")
	s := open(t, path)
	if _, err := s.DB().Exec("PRAGMA user_version = 999"); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if _, err := Open(ctx, path); err == nil {
		t.Fatal("opened a state database from a newer opsd")
	}
}
