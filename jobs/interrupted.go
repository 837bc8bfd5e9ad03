package jobs

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/wopr-network/opsd/internal/metrics"
	"github.com/wopr-network/opsd/internal/state"
	"github.com/wopr-network/opsd/internal/telemetry"
)

// TrackedTarget is a target whose backup status a job records.
type TrackedTarget struct {
	Name       string
	StatusKind string
}

// TargetLister is implemented by jobs whose tracked targets are known without running them
// (the databases of a sqlite_backup); an interrupted run marks each of them failed.
type TargetLister interface {
	TrackedTargets() []TrackedTarget
}

// interruptedProblem is the /health problem of a job whose last run was interrupted.
func interruptedProblem(job string, at time.Time) string {
	return fmt.Sprintf("the last run of %s was interrupted (opsd stopped during it at %s)", job, at.UTC().Format(time.RFC3339))
}

// RecordInterrupted counts a run that a dead process left "running" (already marked
// interrupted in job_runs) as a failed run everywhere: the job's last-run gauges say failed,
// each target the job tracks gets a failed attempt (so /health is degraded for it), /health
// carries an "interrupted:<job>" problem until the job's next successful run, the error is
// logged and reported to Sentry. j is the job as configured now (nil when it no longer is).
func (r *Runner) RecordInterrupted(ctx context.Context, run state.Run, j Job) {
	at := time.Now()
	if run.FinishedAt != nil {
		at = *run.FinishedAt
	}
	err := fmt.Errorf("%s (run %d, started %s)", state.InterruptedError, run.ID, run.StartedAt.UTC().Format(time.RFC3339))
	log := r.Log.With().Str("job", run.Job).Str("kind", run.Kind).Logger()
	log.Error().Err(err).Msg("run interrupted: counted as a failed run")
	r.gaugeMu.Lock()
	r.Metrics.JobLastRunSuccess.WithLabelValues(run.Job, run.Kind).Set(0)
	r.Metrics.JobLastRun.WithLabelValues(run.Job, run.Kind).Set(float64(at.UnixMilli()) / 1000)
	r.showRun(run.Job, run.Kind, at, false)
	r.gaugeMu.Unlock()
	if r.Problems != nil {
		r.Problems.Set("interrupted:"+run.Job, interruptedProblem(run.Job, at))
	}
	var targets []TrackedTarget
	if tl, ok := j.(TargetLister); ok {
		targets = tl.TrackedTargets()
	}
	if len(targets) == 0 {
		r.Sentry.CaptureJobFailure(telemetry.JobFailure{Job: run.Job, Kind: run.Kind, Err: err})
		return
	}
	var recErrs []error
	for _, t := range targets {
		// The job's own row and series (a row from before status was kept per job becomes the
		// job's): an attempt of no job would be a second row the job's next success never clears.
		a := state.BackupAttempt{Target: t.Name, Job: run.Job, NodeID: r.NodeID, Kind: t.StatusKind, At: at, Success: false, Error: err.Error()}
		if e := r.State.RecordBackup(ctx, a); e != nil {
			recErrs = append(recErrs, e)
		}
		prev, ok := r.Metrics.Backups.GetFor(run.Job, t.Name)
		if !ok {
			if prev, ok = r.Metrics.Backups.GetFor("", t.Name); ok {
				r.Metrics.Backups.DeleteFor("", t.Name) // its row is the job's now
			}
		}
		r.Metrics.Backups.Set(t.Name, metrics.TargetState{Job: run.Job, Kind: t.StatusKind, Node: r.NodeID, LastSuccess: prev.LastSuccess, SizeBytes: prev.SizeBytes, LastOK: false, At: at})
		r.Sentry.CaptureJobFailure(telemetry.JobFailure{Job: run.Job, Kind: run.Kind, Target: t.Name, Err: fmt.Errorf("%s %s: %w", run.Kind, t.Name, err)})
	}
	if e := errors.Join(recErrs...); e != nil {
		log.Error().Err(e).Msg("cannot record the interrupted run's targets")
	}
}
