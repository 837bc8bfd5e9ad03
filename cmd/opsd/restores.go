package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/wopr-network/opsd/internal/httpapi"
	"github.com/wopr-network/opsd/internal/restore"
	"github.com/wopr-network/opsd/internal/state"
	"github.com/wopr-network/opsd/internal/telemetry"
	"github.com/wopr-network/opsd/jobs"
)

// restoreTimeout bounds one restore (a whole node's restore included).
const restoreTimeout = 24 * time.Hour

// restoreJob runs a restore through the jobs Runner: recorded in the run history, timed by
// phase, counted in the opsd_restore_* metrics, reported to Sentry when it fails, bounded.
type restoreJob struct{ r *restore.Run }

func (j restoreJob) Name() string { return j.r.Name() }
func (j restoreJob) Kind() string { return j.r.JobKind() }
func (j restoreJob) OneOff()      {}

func (j restoreJob) Run(ctx context.Context) (jobs.Result, error) {
	rep, err := j.r.Execute(ctx)
	res := jobs.Result{Bytes: rep.Bytes, Summary: rep.Summary, Phases: phases(rep.Phases),
		Restore: &jobs.RestoreStats{Kind: j.r.Kind, Target: j.r.Target, Outcome: rep.Outcome, RTO: rep.RTO, Downtime: rep.Downtime}}
	if len(rep.Targets) == 0 {
		t := jobs.TargetResult{Name: j.r.Target, Key: j.r.Key, Status: jobs.TargetOK, Phases: res.Phases, Duration: rep.RTO}
		if err != nil {
			t.Status, t.Err = jobs.TargetFailed, err
		}
		res.Targets = []jobs.TargetResult{t}
	}
	for _, t := range rep.Targets {
		tr := jobs.TargetResult{Name: t.Name, Key: t.Key, Bytes: t.Bytes, Err: t.Err, Phases: phases(t.Phases), Duration: t.Duration, Status: jobs.TargetOK, Note: t.Outcome}
		switch t.Outcome {
		case "failed":
			tr.Status = jobs.TargetFailed
		case "skipped", "planned":
			tr.Status = jobs.TargetSkipped
		}
		res.Targets = append(res.Targets, tr)
	}
	return res, err
}

func phases(ps []restore.Phase) []jobs.Phase {
	out := make([]jobs.Phase, len(ps))
	for i, p := range ps {
		out[i] = jobs.Phase{Name: p.Name, Duration: p.Duration}
	}
	return out
}

// execRestore runs a restore in the foreground through the Runner (SIGINT cancels it).
func (r *restoreEnv) execRestore(run *restore.Run) jobs.Outcome {
	run.Redact, run.Print = r.redactor.Redact, r.console.Line
	o := r.runner.Run(r.ctx, restoreJob{run}, restoreTimeout, jobs.TriggerCLI)
	if o.Run.ID == 0 {
		run.Abort(r.ctx, o.Err) // never started
	}
	return o
}

// runRestore runs a restore in the foreground and prints how it ended.
func (r *restoreEnv) runRestore(run *restore.Run) int {
	o := r.execRestore(run)
	var outcome string
	var down time.Duration
	if rs := o.Result.Restore; rs != nil {
		outcome, down = rs.Outcome, rs.Downtime
	}
	run.WriteResult(r.stdout, o.Err, outcome, o.Run.FinishedAt.Sub(o.Run.StartedAt), down, r.redactor.Redact)
	if o.Err != nil {
		return 1
	}
	return 0
}

// reportInterrupted reports the restores a process that is gone left running as interrupted
// (restore.ReportInterrupted) and returns them.
func reportInterrupted(ctx context.Context, e *env) []state.Restore {
	return restore.ReportInterrupted(ctx, e.state, restore.Reporting{Log: e.log, Metrics: e.metrics.Restore, Problems: e.problems, Sentry: e.sentry})
}

// startRestoreRun starts a restore in the background through the Runner; release is called once
// it ended. A restore of the same kind and target already running is a conflict.
func (m *Main) startRestoreRun(ctx context.Context, run *restore.Run, release func()) (int64, error) {
	if m.closing.Load() {
		release()
		return 0, fmt.Errorf("%w: opsd is shutting down", httpapi.ErrConflict)
	}
	run.Redact = m.redactor.Redact
	return m.restores.Start(ctx, m.runCtx, run, release, func(rctx context.Context, finish func(int64, error)) error {
		return m.runner.Start(rctx, restoreJob{run}, restoreTimeout, jobs.TriggerManual, func(o jobs.Outcome) { finish(o.Run.ID, o.Err) })
	})
}

// cancelRestore cancels a restore running in this daemon (DELETE /api/admin/restores/{id}).
func (m *Main) cancelRestore(ctx context.Context, id int64) error {
	if err := m.restores.Cancel(ctx, m.state, id); err != nil {
		return err
	}
	m.log.Warn().Int64("restore", id).Msg("restore cancelled by an admin request")
	return nil
}

// cmdRestores lists the recorded restores, newest first; restores a process that is gone left
// running are reported as interrupted first.
func cmdRestores(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("restores", "opsd restores -c FILE [--limit N] [-o json]", stdout, stderr)
	cfgPath := configFlag(fs)
	limit := fs.Int("limit", 20, "how many restores to list")
	out := outputFlag(fs, "table", "json")
	ctx := context.Background()
	cfg, st, code := loadState(ctx, fs, cfgPath, args, stdout, stderr)
	if st == nil {
		return code
	}
	defer st.Close()
	red := telemetry.NewRedactor(cfg.Secrets()...)
	if rs, err := restore.Recover(ctx, st); err != nil {
		fmt.Fprintf(stderr, "opsd: %v\n", err)
	} else {
		for _, r := range rs {
			fmt.Fprintf(stderr, "warning: %s\n", red.Redact(r.Error))
		}
	}
	list, err := st.Restores(ctx, *limit)
	if err != nil {
		fmt.Fprintf(stderr, "opsd: %v\n", err)
		return 1
	}
	if *out == "json" {
		writeJSON(stdout, map[string]any{"restores": list})
		return 0
	}
	restore.WriteRestores(stdout, list, red.Redact)
	return 0
}
