package alerts

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/wopr-network/opsd/internal/metrics"
	"github.com/wopr-network/opsd/internal/state"
)

// TestIdleEvaluationsWriteNothingAndStillSeeChanges: evaluations with nothing new write nothing
// to the state database (so its change token stays put and rules over opsd's records are
// skipped), a run recorded afterwards is still seen at the next evaluation, and a backup that
// turns stale with the clock alone still fires stale_backups.
func TestIdleEvaluationsWriteNothingAndStillSeeChanges(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	now := time.Now()
	run := func(at time.Time, outcome string) {
		id, err := e.st.StartRun(ctx, "nightly", "sqlite_backup", "schedule", at)
		if err != nil {
			t.Fatal(err)
		}
		fin := at
		if err := e.st.FinishRun(ctx, state.Run{ID: id, Job: "nightly", FinishedAt: &fin, Outcome: outcome}); err != nil {
			t.Fatal(err)
		}
	}
	run(now, "failure")
	run(now, "failure")
	if err := e.st.RecordBackup(ctx, state.BackupAttempt{Target: "billing", Job: "nightly", Kind: "sqlite", At: now, Success: true}); err != nil {
		t.Fatal(err)
	}
	e.m.Backups.SetStaleAfter(time.Hour)
	e.m.Backups.Set("billing", metrics.TargetState{Job: "nightly", Kind: "sqlite", LastSuccess: now, LastOK: true})
	ev := NewEvaluator(e.st, e.m, zerolog.Nop(), nil, "node-1", time.Minute)
	ev.SetRules([]Spec{
		{Rule: &StateRule{RuleName: "job-failing", Kind: "job_failing", State: e.st, Failures: 2}},
		{Rule: &StateRule{RuleName: "stale-backups", Kind: "stale_backups", State: e.st, StaleAfter: func() time.Duration { return time.Hour }}},
	})
	firing := func() map[string]bool {
		out := map[string]bool{}
		for _, s := range ev.Statuses() {
			out[s.Name] = s.Firing
		}
		return out
	}
	ev.EvaluateOnce(ctx, now)
	if f := firing(); !f["job-failing"] || f["stale-backups"] {
		t.Fatalf("after two failures: %v", f)
	}
	ev.EvaluateOnce(ctx, now.Add(time.Minute)) // looks again after its own write
	tok := stateToken(e.st)
	if tok == nil {
		t.Fatal("no change token for a WAL database")
	}
	for i := 2; i < 5; i++ {
		ev.EvaluateOnce(ctx, now.Add(time.Duration(i)*time.Minute))
	}
	if got := stateToken(e.st); !bytes.Equal(got, tok) {
		t.Fatal("evaluations with nothing new wrote to the state database")
	}
	run(now.Add(5*time.Minute), "success")
	ev.EvaluateOnce(ctx, now.Add(6*time.Minute))
	if f := firing(); f["job-failing"] {
		t.Fatalf("a successful run recorded after idle evaluations was not seen: %v", f)
	}
	// No commit, but the clock passes the stale threshold: stale_backups is evaluated.
	ev.EvaluateOnce(ctx, now.Add(7*time.Minute))
	ev.EvaluateOnce(ctx, now.Add(2*time.Hour))
	if f := firing(); !f["stale-backups"] {
		t.Fatalf("a backup that went stale with the clock did not fire: %v", f)
	}
}
