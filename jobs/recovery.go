package jobs

import (
	"context"
	"strings"
	"time"

	"github.com/wopr-network/opsd/internal/artifact"
	"github.com/wopr-network/opsd/internal/health"
	"github.com/wopr-network/opsd/internal/metrics"
	"github.com/wopr-network/opsd/internal/state"
)

// RecoverInterrupted marks the runs a previous process left "running" as interrupted and counts
// each as a failed run (RecordInterrupted). The runs of a CLI command that is running against
// the same state database now are live, not interrupted: they are left alone. specs are the
// configured jobs.
func (r *Runner) RecoverInterrupted(ctx context.Context, specs []Spec) error {
	cli, release, err := state.CLIsRunning(r.State.Path())
	if err != nil {
		return err
	}
	defer release()
	var keep []string
	if cli {
		keep = []string{TriggerCLI}
	}
	runs, err := r.State.MarkInterruptedRuns(ctx, time.Now(), keep...)
	if err != nil {
		return err
	}
	byName := map[string]Job{}
	for _, sp := range specs {
		byName[sp.Job.Name()] = sp.Job
	}
	marked := map[string]bool{}
	for _, run := range runs {
		r.RecordInterrupted(ctx, run, byName[run.Job])
		marked[run.Job] = true
	}
	// A job with a run an earlier start found interrupted and no successful run since: /health
	// keeps saying so across restarts (the problem lives in memory), whatever failed or was
	// cancelled after it; only a success clears it. Only a run opsd did not survive
	// (state.InterruptedError) counts: a platform run cancelled for a lost coordination session
	// is recorded interrupted too, but it never was a problem (its tick is retried elsewhere),
	// and this node may not run the job again for a long time.
	for _, sp := range specs {
		name := sp.Job.Name()
		if marked[name] || r.Problems == nil {
			continue
		}
		crashed, err := r.State.LastCrashed(ctx, name)
		if err != nil {
			continue
		}
		// Any successful run clears it, a dry run too, as in the running process (Runner's
		// record): else a job left in dry_run raised it again at every restart, forever.
		if ok, err := r.State.LastSucceeded(ctx, name); err == nil && !ok.StartedAt.Before(crashed.StartedAt) {
			continue
		}
		at := crashed.StartedAt
		if crashed.FinishedAt != nil {
			at = *crashed.FinishedAt
		}
		r.Problems.Set("interrupted:"+name, interruptedProblem(name, at))
	}
	if len(runs) > 0 {
		r.Log.Warn().Int("runs", len(runs)).Msg("marked runs left running by a previous process as interrupted")
	}
	// Writers killed between publishing an artifact and writing its manifest: finished in the
	// background (the store may be slow or away; prune finishes them otherwise).
	recovering := map[string]bool{}
	for _, run := range runs {
		ur, ok := byName[run.Job].(uploadRecoverer)
		if !ok || recovering[run.Job] {
			continue
		}
		recovering[run.Job] = true
		go func(job string) {
			defer func() {
				if p := recover(); p != nil { // a bug here must not take the starting daemon down
					r.Log.Error().Err(artifact.PanicError(p)).Str("job", job).Msg("cannot finish the uploads opsd did not survive (prune finishes them)")
				}
			}()
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Minute)
			defer cancel()
			done, err := ur.RecoverUploads(rctx)
			for _, d := range done {
				if d.Wrote {
					r.Log.Warn().Str("job", job).Str("key", d.Key).Msg("finished an upload opsd did not survive: wrote its manifest")
				}
			}
			if err != nil {
				r.Log.Error().Err(err).Str("job", job).Msg("cannot finish the uploads opsd did not survive (prune finishes them)")
			}
		}(run.Job)
	}
	// Containers a killed export paused stay paused (the tenant's bot down) until unpaused.
	for _, sp := range specs {
		pr, ok := sp.Job.(interface {
			RecoverPaused(context.Context) ([]string, error)
		})
		if !ok {
			continue
		}
		names, err := pr.RecoverPaused(ctx)
		for _, n := range names {
			r.Log.Warn().Str("job", sp.Job.Name()).Str("target", n).Msg("unpaused a container an export opsd did not survive left paused")
		}
		if err != nil {
			r.Log.Error().Err(err).Str("job", sp.Job.Name()).Msg("cannot unpause the containers an export opsd did not survive left paused")
		}
	}
	return nil
}

// WithRecordFailures returns infos where a job whose last run could not be recorded (the state
// database's disk is full: a "record:<job>" problem) shows that failure, not its last recorded
// run.
func WithRecordFailures(infos []Info, p *health.Problems) []Info {
	byName := map[string]string{}
	for _, pr := range p.List() {
		if job, ok := strings.CutPrefix(pr.Name, "record:"); ok {
			byName[job] = pr.Error
		}
	}
	for i := range infos {
		if msg, ok := byName[infos[i].Name]; ok {
			infos[i].LastOutcome, infos[i].LastError = "failure", msg
		}
	}
	return infos
}

// SeedTargetMetrics seeds the per-target metrics from the state database, so staleness survives
// a restart.
func SeedTargetMetrics(ctx context.Context, st *state.Store, m *metrics.Metrics) error {
	all, err := st.ListBackups(ctx, time.Now(), time.Hour)
	if err != nil {
		return err
	}
	for _, b := range all {
		m.Backups.Set(b.ContainerID, targetState(b))
	}
	return nil
}

// RetireRemovedJobs stops tracking the backup status of jobs not in names (removed from the
// config), so their targets do not stay stale forever.
func (r *Runner) RetireRemovedJobs(ctx context.Context, names []string) {
	gone, err := r.State.RetireJobsExcept(ctx, names, time.Now())
	if err != nil {
		r.Log.Error().Err(err).Msg("cannot retire the backup status of removed jobs")
	}
	for _, b := range gone {
		r.Metrics.Backups.DeleteFor(b.Job, b.ContainerID)
		r.Log.Info().Str("job", b.Job).Str("target", b.ContainerID).Msg("job removed from the config; stopped tracking its target")
	}
}
