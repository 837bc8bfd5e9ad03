package jobs

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/wopr-network/opsd/internal/state"
)

type oneOffJob struct{ funcJob }

func (oneOffJob) OneOff() {}

// TestRunnerOneOffRestore: a one-off run (a restore) does not wait for the shared limit, sees
// its run id in its context, is in the run history, and feeds the opsd_restore_* metrics with
// the restore's own outcome instead of the per-job series.
func TestRunnerOneOffRestore(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	// Both slots of the shared limit are held by long runs.
	hold := make(chan struct{})
	defer close(hold)
	for _, n := range []string{"long-1", "long-2"} {
		started := make(chan struct{})
		r.runner.Start(ctx, funcJob{n, func(ctx context.Context) (Result, error) {
			close(started)
			<-hold
			return Result{}, nil
		}}, time.Hour, TriggerManual, nil)
		<-started
	}
	var runID int64
	j := oneOffJob{funcJob{"restore_db:platform", func(ctx context.Context) (Result, error) {
		runID = state.RunIDFrom(ctx)
		return Result{Phases: []Phase{{Name: "download", Duration: time.Second}},
			Restore: &RestoreStats{Kind: "db", Target: "platform", Outcome: state.OutcomeRolledBack}}, errorString("restore: boom (rolled back)")
	}}}
	o := r.runner.Run(ctx, j, time.Minute, TriggerCLI)
	if o.Err == nil || o.Run.ID == 0 || runID != o.Run.ID {
		t.Fatalf("outcome %+v, run id in the context %d", o, runID)
	}
	if v := testutil.ToFloat64(r.metrics.Restore.Runs.WithLabelValues("db", "rolled_back")); v != 1 {
		t.Fatalf("opsd_restore_runs_total{db,rolled_back} = %v", v)
	}
	if v := testutil.ToFloat64(r.metrics.Restore.Phase.WithLabelValues("db", "download")); v != 1 {
		t.Fatalf("opsd_restore_phase_seconds{db,download} = %v", v)
	}
	if n := testutil.CollectAndCount(r.metrics.JobRuns, "opsd_job_runs_total"); n != 0 {
		t.Fatalf("a one-off run fed the per-job series (%d)", n)
	}
	if last, err := r.state.LastRun(ctx, "restore_db:platform"); err != nil || last.Outcome != state.OutcomeFailure {
		t.Fatalf("run history: %+v %v", last, err)
	}
}

type errorString string

func (e errorString) Error() string { return string(e) }
