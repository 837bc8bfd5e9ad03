package jobs

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/wopr-network/opsd/internal/schedule"
	"github.com/wopr-network/opsd/internal/state"
)

// TestSyncMetricsNewerWins: SyncMetrics takes what another process (another state handle)
// recorded only when it is newer than what the metrics show: an older foreign run or attempt
// never undoes a run of ours, a newer one shows (the job's last run failed, its target stale with
// its last good time kept), and a target retired elsewhere stops being exported.
func TestSyncMetricsNewerWins(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	job := funcJob{name: "b", run: func(context.Context) (Result, error) {
		return Result{Targets: []TargetResult{{Name: "db1", Status: TargetOK, Tracked: true, StatusKind: "sqlite", Bytes: 10}}}, nil
	}}
	s, err := NewScheduler(r.runner)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Apply([]Spec{{Job: job, Schedule: schedule.Schedule{Every: time.Hour}, Timeout: time.Minute}}); err != nil {
		t.Fatal(err)
	}
	other, err := state.Open(ctx, filepath.Join(r.dir, "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	// foreign records a failed run of b, and a failed attempt of db1, that ended at at.
	foreign := func(at time.Time) {
		t.Helper()
		id, err := other.StartRun(ctx, "b", "func", TriggerCLI, at.Add(-time.Second))
		if err != nil {
			t.Fatal(err)
		}
		if err := other.RecordBackup(ctx, state.BackupAttempt{Target: "db1", Job: "b", NodeID: "node-1", Kind: "sqlite", At: at, Error: "disk full"}); err != nil {
			t.Fatal(err)
		}
		if err := other.FinishRun(ctx, state.Run{ID: id, Job: "b", FinishedAt: &at, Outcome: state.OutcomeFailure, Error: "targets: db1 failed"}); err != nil {
			t.Fatal(err)
		}
	}
	lastRunOK := func() float64 { return testutil.ToFloat64(r.metrics.JobLastRunSuccess.WithLabelValues("b", "func")) }

	o := r.runner.Run(ctx, job, time.Minute, TriggerSchedule)
	if !o.OK() || s.SyncMetrics(ctx) != nil {
		t.Fatalf("run: %+v", o)
	}
	ours := *o.Run.FinishedAt
	good, _ := r.metrics.Backups.GetFor("b", "db1")
	if lastRunOK() != 1 || !good.LastOK || good.LastSuccess.UnixMilli() != ours.UnixMilli() {
		t.Fatalf("after our run: last run success %v, target %+v", lastRunOK(), good)
	}

	// Older than our run (it read the database before we recorded): ours stays.
	foreign(ours.Add(-10 * time.Second))
	if err := s.SyncMetrics(ctx); err != nil {
		t.Fatal(err)
	}
	if ts, _ := r.metrics.Backups.GetFor("b", "db1"); lastRunOK() != 1 || !ts.LastOK {
		t.Fatalf("an older foreign failure undid our run: last run success %v, target %+v", lastRunOK(), ts)
	}

	// Newer: it shows, and the last good backup is kept.
	later := ours.Add(10 * time.Second)
	foreign(later)
	if err := s.SyncMetrics(ctx); err != nil {
		t.Fatal(err)
	}
	ts, _ := r.metrics.Backups.GetFor("b", "db1")
	if lastRunOK() != 0 || ts.LastOK || ts.LastSuccess.UnixMilli() != ours.UnixMilli() {
		t.Fatalf("a newer foreign failure: last run success %v, target %+v", lastRunOK(), ts)
	}
	if v := testutil.ToFloat64(r.metrics.JobLastRun.WithLabelValues("b", "func")); v != float64(later.UnixMilli())/1000 {
		t.Fatalf("last run gauge %v, want %v", v, float64(later.UnixMilli())/1000)
	}
	if v := testutil.ToFloat64(r.metrics.JobLastSuccess.WithLabelValues("b", "func")); v != float64(ours.UnixMilli())/1000 {
		t.Fatalf("last success gauge %v, want ours %v", v, float64(ours.UnixMilli())/1000)
	}

	// Retired elsewhere (the target is gone): no longer exported.
	if _, err := other.RetireMissing(ctx, "b", "sqlite", nil, later.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	id, _ := other.StartRun(ctx, "b", "func", TriggerCLI, later)
	end := later.Add(time.Second)
	other.FinishRun(ctx, state.Run{ID: id, Job: "b", FinishedAt: &end, Outcome: state.OutcomeSuccess})
	if err := s.SyncMetrics(ctx); err != nil {
		t.Fatal(err)
	}
	if _, ok := r.metrics.Backups.GetFor("b", "db1"); ok || lastRunOK() != 1 {
		t.Fatalf("after a retirement elsewhere: target still exported %v, last run success %v", ok, lastRunOK())
	}
}
