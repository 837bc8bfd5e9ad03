package jobs

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/wopr-network/opsd/internal/state"
)

// DryRunner is a job that can be told to only plan (prune --dry-run).
type DryRunner interface {
	Job
	IsDryRun() bool
}

// IsDryRun reports whether the prune only plans.
func (p *Prune) IsDryRun() bool { return p.cfg.DryRun }

// isDryRun reports whether j only plans (a prune with dry_run: true in its config).
func isDryRun(j Job) bool {
	d, ok := j.(DryRunner)
	return ok && d.IsDryRun()
}

// DryRunPrefix starts the recorded summary of a scheduled or triggered run of a job configured
// as a dry run (prune with dry_run: true): the run is in the history, marked as what it was.
const DryRunPrefix = state.DryRunPrefix

// dryRunSummary marks a dry run's summary. A dry run is recorded in job_runs (its schedule
// ran), but it is not a successful run of the job: the job's last-success time does not move,
// so a prune left in dry_run still shows as one that has not pruned, and no prune counter moves.
func dryRunSummary(dry bool, summary string) string {
	if !dry {
		return summary
	}
	return DryRunPrefix + summary
}

// Plan runs a job that only plans (a dry run) in the foreground. A plan is not a run of the
// job: nothing is recorded in job_runs or backup_status, no metric moves and nothing goes to
// Sentry, so a dry run never passes for a successful prune. The outcome says whether planning
// succeeded.
func (r *Runner) Plan(ctx context.Context, j Job, timeout time.Duration) Outcome {
	started := time.Now()
	runCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	res, err := safeRun(runCtx, j)
	if err == nil {
		err = res.TargetsError("targets")
	}
	finished := time.Now()
	run := state.Run{Job: j.Name(), Kind: j.Kind(), Trigger: TriggerCLI, StartedAt: started, FinishedAt: &finished, Outcome: state.OutcomeSuccess, Summary: res.Summary}
	if err != nil {
		run.Outcome = state.OutcomeFailure
		if errors.Is(runCtx.Err(), context.DeadlineExceeded) && ctx.Err() == nil {
			run.Outcome, err = state.OutcomeTimeout, fmt.Errorf("timed out after %s: %w", timeout, err)
		}
		run.Error = err.Error()
	}
	r.Log.Info().Str("job", j.Name()).Str("kind", j.Kind()).Str("outcome", run.Outcome).Int64("duration_ms", finished.Sub(started).Milliseconds()).Msg("dry run finished (not recorded)")
	return Outcome{Run: run, Result: res, Err: err}
}
