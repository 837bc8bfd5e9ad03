package jobs

import (
	"context"
	"testing"
	"time"

	"github.com/wopr-network/opsd/internal/health"
	"github.com/wopr-network/opsd/internal/state"
)

// crashedJob is a job's run history in a state database that outlives runners: restart makes a
// new Runner recover it as a daemon's start does.
type crashedJob struct {
	t   *testing.T
	r   *rig
	job string
}

func newCrashedJob(t *testing.T, job string) *crashedJob {
	return &crashedJob{t: t, r: newRig(t), job: job}
}

// crash records a run left running by a process that died.
func (c *crashedJob) crash(at time.Time) {
	c.t.Helper()
	if _, err := c.r.state.StartRun(context.Background(), c.job, "noop", TriggerSchedule, at); err != nil {
		c.t.Fatal(err)
	}
}

// finish records a finished run.
func (c *crashedJob) finish(outcome, summary string, at time.Time) {
	c.t.Helper()
	ctx := context.Background()
	id, err := c.r.state.StartRun(ctx, c.job, "noop", TriggerSchedule, at)
	if err != nil {
		c.t.Fatal(err)
	}
	end := at.Add(time.Second)
	run := state.Run{ID: id, Job: c.job, Outcome: outcome, FinishedAt: &end, Summary: summary}
	if outcome != state.OutcomeSuccess {
		run.Error = "disk full"
	}
	if err := c.r.state.FinishRun(ctx, run); err != nil {
		c.t.Fatal(err)
	}
}

// restart reports whether a new Runner's start raises "interrupted:<job>", with its problems.
func (c *crashedJob) restart() (bool, []health.Problem) {
	c.t.Helper()
	n := NewRunner(c.r.state, c.r.metrics, c.r.runner.Sentry, c.r.runner.Log, "node-1", 2)
	n.Problems = &health.Problems{}
	if err := n.RecoverInterrupted(context.Background(), []Spec{{Job: &Noop{JobName: c.job}, Enabled: true}}); err != nil {
		c.t.Fatal(err)
	}
	for _, p := range n.Problems.List() {
		if p.Name == "interrupted:"+c.job {
			return true, n.Problems.List()
		}
	}
	return false, n.Problems.List()
}

// TestInterruptedProblemOutlivesLaterFailures: a run opsd did not survive keeps its
// "interrupted:<job>" problem until the job succeeds, across restarts, even when failed runs
// come after it (before, a restart looked only at the newest run and dropped the problem).
func TestInterruptedProblemOutlivesLaterFailures(t *testing.T) {
	c := newCrashedJob(t, "backup")
	t0 := time.Now().Add(-time.Hour)
	c.crash(t0)
	if raised, p := c.restart(); !raised {
		t.Fatalf("after the crash: problems %+v", p)
	}
	c.finish(state.OutcomeFailure, "", t0.Add(time.Minute))
	if raised, p := c.restart(); !raised {
		t.Fatalf("a failed run after the crash cleared the problem at a restart: %+v", p)
	}
	c.finish(state.OutcomeSuccess, "", t0.Add(2*time.Minute))
	if raised, p := c.restart(); raised {
		t.Fatalf("a successful run did not clear the problem: %+v", p)
	}
}

// TestInterruptedProblemClearedByADryRunStaysCleared: a prune left in dry_run whose run opsd
// did not survive gets "interrupted:<job>"; its next (dry) run succeeds and clears it in the
// running process (Runner.record clears it on any success). A restart must not raise it again:
// a dry run is never a "last success" (state.LastSuccess), so the problem came back at every
// restart, forever, for a job that only ever dry-runs.
func TestInterruptedProblemClearedByADryRunStaysCleared(t *testing.T) {
	c := newCrashedJob(t, "prune")
	t0 := time.Now().Add(-time.Hour)
	c.crash(t0)
	if raised, p := c.restart(); !raised {
		t.Fatalf("after the crash: problems %+v", p)
	}
	c.finish(state.OutcomeSuccess, dryRunSummary(true, "would delete 3 objects"), t0.Add(time.Minute))
	if raised, p := c.restart(); raised {
		t.Fatalf("a successful dry run (which clears the problem in the running process) left it raised at the restart: %+v", p)
	}
}
