package jobs

import (
	"context"
	"testing"
	"time"

	"github.com/wopr-network/opsd/internal/state"
)

// TestHistoryIsBounded: with keep_runs 3, a job's history keeps its 3 newest runs, plus its
// newest success when that is older (what "last success" reads), and its 3 newest reports.
func TestHistoryIsBounded(t *testing.T) {
	r := newRig(t)
	r.runner.SetKeepRuns(3)
	ctx := context.Background()
	ok := &Noop{JobName: "tick"}
	if o := r.runner.Run(ctx, ok, time.Minute, TriggerManual); !o.OK() {
		t.Fatal(o.Err)
	}
	fail := &Noop{JobName: "tick", Fail: true}
	for i := 0; i < 6; i++ {
		r.runner.Run(ctx, fail, time.Minute, TriggerManual)
	}
	runs, err := r.state.Runs(ctx, "tick", 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) != 4 {
		t.Fatalf("%d runs kept, want 3 newest + the last success", len(runs))
	}
	if last, err := r.state.LastSuccess(ctx, "tick"); err != nil || last.Outcome != state.OutcomeSuccess {
		t.Fatalf("last success lost: %+v %v", last, err)
	}
	for i := 0; i < 5; i++ {
		r.state.SaveReport(ctx, state.Report{Job: "tick", Kind: "noop", CreatedAt: time.Now().Add(time.Duration(i) * time.Second), Body: "{}"})
	}
	r.runner.Run(ctx, fail, time.Minute, TriggerManual)
	if reps, _ := r.state.Reports(ctx, "tick", 100); len(reps) != 3 {
		t.Fatalf("%d reports kept, want 3", len(reps))
	}
}
