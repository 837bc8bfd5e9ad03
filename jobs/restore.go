package jobs

import (
	"context"
	"time"

	"github.com/wopr-network/opsd/internal/restore"
)

// RestoreTimeout bounds one restore (a whole node's restore included).
const RestoreTimeout = 24 * time.Hour

// Restore is a restore run as a one-off job of the Runner: recorded in the run history, timed by
// phase, counted in the opsd_restore_* metrics, reported to Sentry when it fails, bounded.
type Restore struct{ R *restore.Run }

// Name is the restore's run name (restore_KIND:TARGET).
func (j Restore) Name() string { return j.R.Name() }

// Kind is restore_KIND.
func (j Restore) Kind() string { return j.R.JobKind() }

// OneOff marks a restore as no configured job.
func (j Restore) OneOff() {}

// Run executes the restore and reports it as a Result: its phases, its outcome and downtime, and
// one target per container (a node restore) or the restored target.
func (j Restore) Run(ctx context.Context) (Result, error) {
	rep, err := j.R.Execute(ctx)
	res := Result{Bytes: rep.Bytes, Summary: rep.Summary, Phases: restorePhases(rep.Phases),
		Restore: &RestoreStats{Kind: j.R.Kind, Target: j.R.Target, Outcome: rep.Outcome, RTO: rep.RTO, Downtime: rep.Downtime}}
	if len(rep.Targets) == 0 {
		t := TargetResult{Name: j.R.Target, Key: j.R.Key, Status: TargetOK, Phases: res.Phases, Duration: rep.RTO}
		if err != nil {
			t.Status, t.Err = TargetFailed, err
		}
		res.Targets = []TargetResult{t}
	}
	for _, t := range rep.Targets {
		tr := TargetResult{Name: t.Name, Key: t.Key, Bytes: t.Bytes, Err: t.Err, Phases: restorePhases(t.Phases), Duration: t.Duration, Status: TargetOK, Note: t.Outcome}
		switch t.Outcome {
		case "failed":
			tr.Status = TargetFailed
		case "skipped", "planned":
			tr.Status = TargetSkipped
		}
		res.Targets = append(res.Targets, tr)
	}
	return res, err
}

func restorePhases(ps []restore.Phase) []Phase {
	out := make([]Phase, len(ps))
	for i, p := range ps {
		out[i] = Phase{Name: p.Name, Duration: p.Duration}
	}
	return out
}
