package jobs

import (
	"context"
	"testing"
	"time"

	"github.com/wopr-network/opsd/internal/health"
	"github.com/wopr-network/opsd/internal/state"
)

// TestInterruptedProblemClearedByADryRunStaysCleared: a prune left in dry_run whose run opsd
// did not survive gets "interrupted:<job>"; its next (dry) run succeeds and clears it in the
// running process (Runner.record clears it on any success). A restart must not raise it again:
// a dry run is never a "last success" (state.LastSuccess), so the problem came back at every
// restart, forever, for a job that only ever dry-runs.
func TestInterruptedProblemClearedByADryRunStaysCleared(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	sp := Spec{Job: &Noop{JobName: "prune"}, Enabled: true}
	restart := func() *Runner {
		t.Helper()
		n := NewRunner(r.state, r.metrics, r.runner.Sentry, r.runner.Log, "node-1", 2)
		n.Problems = &health.Problems{}
		if err := n.RecoverInterrupted(ctx, []Spec{sp}); err != nil {
			t.Fatal(err)
		}
		return n
	}
	hasProblem := func(n *Runner) bool {
		for _, p := range n.Problems.List() {
			if p.Name == "interrupted:prune" {
				return true
			}
		}
		return false
	}
	t0 := time.Now().Add(-time.Hour)
	if _, err := r.state.StartRun(ctx, "prune", "noop", TriggerSchedule, t0); err != nil {
		t.Fatal(err)
	}
	if n := restart(); !hasProblem(n) {
		t.Fatalf("after the crash: problems %+v", n.Problems.List())
	}
	at := t0.Add(time.Minute)
	id, err := r.state.StartRun(ctx, "prune", "noop", TriggerSchedule, at)
	if err != nil {
		t.Fatal(err)
	}
	end := at.Add(time.Second)
	if err := r.state.FinishRun(ctx, state.Run{ID: id, Job: "prune", Outcome: state.OutcomeSuccess, FinishedAt: &end,
		Summary: dryRunSummary(true, "would delete 3 objects")}); err != nil {
		t.Fatal(err)
	}
	if n := restart(); hasProblem(n) {
		t.Fatalf("a successful dry run (which clears the problem in the running process) left it raised at the restart: %+v", n.Problems.List())
	}
}
