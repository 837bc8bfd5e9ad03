package alerts

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/wopr-network/opsd/internal/state"
)

// TestDrillSuccessDoesNotHideAnotherDrillsFailure: two drills of one kind; the newer one passing
// must not resolve the older one's failure.
func TestDrillSuccessDoesNotHideAnotherDrillsFailure(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	now := time.Now()
	rule := &StateRule{RuleName: "drill-failed", Kind: "drill_failed", State: e.st}
	e.st.SaveReport(ctx, state.Report{Job: "drill-tenant-a", Kind: "container_drill", CreatedAt: now, Passed: false, Body: `{"passed":false}`})
	e.st.SaveReport(ctx, state.Report{Job: "drill-tenant-b", Kind: "container_drill", CreatedAt: now.Add(time.Minute), Passed: true, Body: `{"passed":true}`})
	ev, err := rule.Evaluate(ctx, now)
	if err != nil || !ev.Firing || !strings.Contains(ev.Message, "drill-tenant-a failed") {
		t.Fatalf("drill-tenant-a's failure hidden: %+v %v", ev, err)
	}
	// drill-tenant-a passes later: resolved.
	e.st.SaveReport(ctx, state.Report{Job: "drill-tenant-a", Kind: "container_drill", CreatedAt: now.Add(2 * time.Minute), Passed: true, Body: `{"passed":true}`})
	if ev, err := rule.Evaluate(ctx, now); err != nil || ev.Firing {
		t.Fatalf("not resolved: %+v %v", ev, err)
	}
}

// TestRemovedJobStopsFiring: a job removed from the config no longer keeps job_failing or
// drill_failed firing.
func TestRemovedJobStopsFiring(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	now := time.Now()
	jobs := []string{"nightly", "drill"}
	failing := &StateRule{RuleName: "job-failing", Kind: "job_failing", State: e.st, Failures: 1, Jobs: func() []string { return jobs }}
	drill := &StateRule{RuleName: "drill-failed", Kind: "drill_failed", State: e.st, Jobs: func() []string { return jobs }}
	id, _ := e.st.StartRun(ctx, "nightly", "sqlite_backup", "schedule", now)
	e.st.FinishRun(ctx, state.Run{ID: id, Job: "nightly", FinishedAt: &now, Outcome: "failure"})
	e.st.SaveReport(ctx, state.Report{Job: "drill", Kind: "sqlite_drill", CreatedAt: now, Passed: false, Body: `{"passed":false}`})
	if ev, _ := failing.Evaluate(ctx, now); !ev.Firing {
		t.Fatalf("job_failing: %+v", ev)
	}
	if ev, _ := drill.Evaluate(ctx, now); !ev.Firing {
		t.Fatalf("drill_failed: %+v", ev)
	}
	jobs = []string{"other"} // both removed by a reload
	if ev, err := failing.Evaluate(ctx, now); err != nil || ev.Firing {
		t.Fatalf("a removed job keeps job_failing firing: %+v %v", ev, err)
	}
	if ev, err := drill.Evaluate(ctx, now); err != nil || ev.Firing {
		t.Fatalf("a removed drill keeps drill_failed firing: %+v %v", ev, err)
	}
}

// TestUnreadableVerificationReportIsAnError: a report that cannot be read is an evaluation
// error (the alert keeps its state), never "verified clean".
func TestUnreadableVerificationReportIsAnError(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	now := time.Now()
	rule := &StateRule{RuleName: "offsite", Kind: "offsite_missing", State: e.st}
	e.st.SaveReport(ctx, state.Report{Job: "verify", Kind: "offsite_verify", CreatedAt: now, Passed: true, Body: `{"problems":[]}`})
	if ev, err := rule.Evaluate(ctx, now); err != nil || ev.Firing || ev.Message != "the offsite copy verified clean" {
		t.Fatalf("clean report: %+v %v", ev, err)
	}
	for _, body := range []string{`{"problems": [tru`, `{}`} {
		e.st.SaveReport(ctx, state.Report{Job: "verify", Kind: "offsite_verify", CreatedAt: now.Add(time.Minute), Passed: true, Body: body})
		ev, err := rule.Evaluate(ctx, now)
		if err == nil || !strings.Contains(err.Error(), "verify") {
			t.Fatalf("report %s read as %+v, err %v", body, ev, err)
		}
		now = now.Add(time.Minute)
	}
	drill := &StateRule{RuleName: "drill-failed", Kind: "drill_failed", State: e.st}
	e.st.SaveReport(ctx, state.Report{Job: "drill", Kind: "sqlite_drill", CreatedAt: now, Passed: true, Body: `not json`})
	if _, err := drill.Evaluate(ctx, now); err == nil {
		t.Fatal("an unreadable drill report passed")
	}
}

// TestDrillRuleNeverSaysPassedWithoutADrill: with no drill report yet (no drill has run, or
// only removed drills have) the drill rule does not fire and says so; it never claims that the
// last drills passed.
func TestDrillRuleNeverSaysPassedWithoutADrill(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	now := time.Now()
	jobs := []string{"platform-drill"}
	rule := &StateRule{RuleName: "drill-failed", Kind: "drill_failed", State: e.st, Jobs: func() []string { return jobs }}
	ev, err := rule.Evaluate(ctx, now)
	if err != nil || ev.Firing || strings.Contains(ev.Message, "passed") || !strings.Contains(ev.Message, "no drill yet") {
		t.Fatalf("no drill has run: %+v %v", ev, err)
	}
	e.st.SaveReport(ctx, state.Report{Job: "old-drill", Kind: "sqlite_drill", CreatedAt: now, Passed: true, Body: `{"passed":true}`})
	if ev, err := rule.Evaluate(ctx, now); err != nil || ev.Firing || strings.Contains(ev.Message, "passed") {
		t.Fatalf("only a removed drill's report: %+v %v", ev, err)
	}
	e.st.SaveReport(ctx, state.Report{Job: "platform-drill", Kind: "sqlite_drill", CreatedAt: now, Passed: true, Body: `{"passed":true}`})
	if ev, err := rule.Evaluate(ctx, now); err != nil || ev.Firing || ev.Message != "the last drills passed" {
		t.Fatalf("the drill passed: %+v %v", ev, err)
	}
}

// TestVerificationThatFailedToRunIsNotClean: a verification run that failed before it wrote a
// report (the store unreachable) leaves the last clean report the newest: the rule does not fire
// (nothing was found missing), but its message says the newest run did not verify instead of
// "verified clean".
func TestVerificationThatFailedToRunIsNotClean(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	now := time.Now()
	rule := &StateRule{RuleName: "offsite", Kind: "offsite_missing", State: e.st}
	id, err := e.st.StartRun(ctx, "verify", "offsite_verify", "schedule", now.Add(-2*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	fin := now.Add(-time.Hour)
	e.st.FinishRun(ctx, state.Run{ID: id, Job: "verify", FinishedAt: &fin, Outcome: state.OutcomeSuccess})
	e.st.SaveReport(ctx, state.Report{RunID: id, Job: "verify", Kind: "offsite_verify", CreatedAt: fin, Passed: true, Body: `{"problems":[]}`})
	if ev, err := rule.Evaluate(ctx, now); err != nil || ev.Message != "the offsite copy verified clean" {
		t.Fatalf("clean report: %+v %v", ev, err)
	}
	id, _ = e.st.StartRun(ctx, "verify", "offsite_verify", "schedule", now.Add(-time.Minute))
	fin = now
	e.st.FinishRun(ctx, state.Run{ID: id, Job: "verify", FinishedAt: &fin, Outcome: state.OutcomeFailure, Error: "store unreachable"})
	ev, err := rule.Evaluate(ctx, now)
	if err != nil || ev.Firing || !strings.Contains(ev.Message, "verify's newest run") || !strings.Contains(ev.Message, "did not verify: failure") {
		t.Fatalf("after a verification that failed to run: %+v %v", ev, err)
	}
}
