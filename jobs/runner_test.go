package jobs

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/wopr-network/opsd/internal/schedule"
	"github.com/wopr-network/opsd/internal/state"
	"github.com/wopr-network/opsd/internal/telemetry"
	"github.com/wopr-network/opsd/internal/telemetry/sentrytest"
)

type funcJob struct {
	name string
	run  func(ctx context.Context) (Result, error)
}

func (f funcJob) Name() string                            { return f.name }
func (f funcJob) Kind() string                            { return "func" }
func (f funcJob) Run(ctx context.Context) (Result, error) { return f.run(ctx) }

func TestRunnerRecordsSuccessAndTargets(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	j := funcJob{"backup", func(ctx context.Context) (Result, error) {
		return Result{Bytes: 42, Targets: []TargetResult{
			{Name: "auth", Status: TargetOK, Tracked: true, StatusKind: "sqlite", Key: "platform/x/auth.db", Bytes: 42},
			{Name: "maybe", Status: TargetSkipped, Tracked: true, StatusKind: "sqlite", Note: "optional"},
		}}, nil
	}}
	o := r.runner.Run(ctx, j, time.Minute, TriggerManual)
	if !o.OK() || o.Err != nil {
		t.Fatalf("outcome = %+v", o)
	}
	last, err := r.state.LastRun(ctx, "backup")
	if err != nil || last.Outcome != state.OutcomeSuccess || last.Bytes != 42 || last.Trigger != TriggerManual {
		t.Fatalf("job_runs = %+v, %v", last, err)
	}
	if v := testutil.ToFloat64(r.metrics.JobRuns.WithLabelValues("backup", "func", "success")); v != 1 {
		t.Fatalf("runs_total = %v", v)
	}
	if v := testutil.ToFloat64(r.metrics.JobLastSuccess.WithLabelValues("backup", "func")); v < float64(time.Now().Add(-time.Minute).Unix()) {
		t.Fatalf("last_success = %v", v)
	}
	all, _ := r.state.ListBackups(ctx, time.Now(), time.Hour)
	if len(all) != 1 || all[0].ContainerID != "auth" || !all[0].LastBackupSuccess || all[0].NodeID != "node-1" {
		t.Fatalf("backup_status = %+v (skipped targets must not be tracked)", all)
	}
	if ts, ok := r.metrics.Backups.Get("auth"); !ok || ts.SizeBytes != 42 || !ts.LastOK {
		t.Fatalf("tracker = %+v", ts)
	}
}

func TestRunnerFailedTargetFailsRun(t *testing.T) {
	r := newRig(t)
	j := funcJob{"backup", func(ctx context.Context) (Result, error) {
		return Result{Targets: []TargetResult{
			{Name: "auth", Status: TargetOK, Tracked: true, StatusKind: "sqlite"},
			{Name: "billing", Status: TargetFailed, Tracked: true, StatusKind: "sqlite", Err: errors.New("integrity check failed")},
		}}, nil
	}}
	o := r.runner.Run(context.Background(), j, time.Minute, TriggerManual)
	if o.OK() || o.Err == nil || !strings.Contains(o.Err.Error(), "billing") {
		t.Fatalf("outcome = %+v", o)
	}
	b, _ := r.state.GetBackup(context.Background(), "billing", time.Now(), time.Hour)
	if b.LastBackupSuccess || b.LastBackupError == nil || *b.LastBackupError != "integrity check failed" {
		t.Fatalf("billing status = %+v", b)
	}
}

func TestRunnerOverlapIsSkippedAndCounted(t *testing.T) {
	r := newRig(t)
	release := make(chan struct{})
	started := make(chan struct{})
	j := funcJob{"slow", func(ctx context.Context) (Result, error) {
		close(started)
		<-release
		return Result{}, nil
	}}
	done := make(chan Outcome, 1)
	if err := r.runner.Start(context.Background(), j, time.Minute, TriggerSchedule, func(o Outcome) { done <- o }); err != nil {
		t.Fatal(err)
	}
	<-started
	o := r.runner.Run(context.Background(), j, time.Minute, TriggerSchedule)
	if !errors.Is(o.Err, ErrAlreadyRunning) {
		t.Fatalf("overlapping run: %v", o.Err)
	}
	if v := testutil.ToFloat64(r.metrics.JobSkipped.WithLabelValues("slow", "func", "overlap")); v != 1 {
		t.Fatalf("skipped_total = %v", v)
	}
	close(release)
	if o := <-done; !o.OK() {
		t.Fatalf("first run: %+v", o)
	}
	runs, _ := r.state.Runs(context.Background(), "slow", 10)
	if len(runs) != 1 {
		t.Fatalf("recorded %d runs, want 1 (the skipped one is counted, not recorded)", len(runs))
	}
}

func TestRunnerTimeoutAndPanic(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	o := r.runner.Run(ctx, &Noop{JobName: "sleepy", Sleep: time.Minute}, 50*time.Millisecond, TriggerManual)
	if o.Run.Outcome != state.OutcomeTimeout || !strings.Contains(o.Err.Error(), "timed out after 50ms") {
		t.Fatalf("timeout outcome = %+v", o)
	}
	o = r.runner.Run(ctx, funcJob{"bad", func(context.Context) (Result, error) { panic("nil map") }}, time.Minute, TriggerManual)
	if o.Run.Outcome != state.OutcomeFailure || !strings.Contains(o.Err.Error(), "panic: nil map") {
		t.Fatalf("panic outcome = %+v", o)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	o = r.runner.Run(cctx, &Noop{JobName: "cancelled", Sleep: time.Minute}, time.Minute, TriggerManual)
	if o.Err == nil {
		t.Fatal("cancelled run succeeded")
	}
}

func mustSchedule(t *testing.T, spec string) schedule.Schedule {
	s, err := schedule.Parse(spec)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSchedulerRunsReschedulesAndRemoves(t *testing.T) {
	r := newRig(t)
	s, err := NewScheduler(r.runner)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	spec := Spec{Job: &Noop{JobName: "tick"}, Schedule: mustSchedule(t, "@every 1s"), Timeout: time.Minute, Enabled: true, Fingerprint: "a"}
	if err := s.Apply([]Spec{spec}); err != nil {
		t.Fatal(err)
	}
	s.Start(ctx)
	defer s.Shutdown(ctx)
	deadline := time.Now().Add(60 * time.Second)
	for {
		if runs, _ := r.state.Runs(ctx, "tick", 5); len(runs) > 0 && runs[0].Outcome == state.OutcomeSuccess {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the @every 1s job did not run within 60s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if v := testutil.ToFloat64(r.metrics.JobExpectedInterval.WithLabelValues("tick", "noop")); v != 1 {
		t.Fatalf("expected interval = %v", v)
	}
	spec.Schedule, spec.Fingerprint = mustSchedule(t, "0 3 * * *"), "b"
	if err := s.Apply([]Spec{spec}); err != nil {
		t.Fatal(err)
	}
	jobs := s.Jobs(ctx)
	if len(jobs) != 1 || jobs[0].Schedule != "0 3 * * *" || jobs[0].NextRun == nil || jobs[0].NextRun.Hour() != 3 {
		t.Fatalf("after reschedule: %+v", jobs)
	}
	if err := s.Apply(nil); err != nil {
		t.Fatal(err)
	}
	if jobs := s.Jobs(ctx); len(jobs) != 0 {
		t.Fatalf("after removal: %+v", jobs)
	}
	if err := s.Trigger("tick"); !errors.Is(err, ErrUnknownJob) {
		t.Fatalf("trigger removed job: %v", err)
	}
}

func TestSchedulerCatchUp(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	// Both jobs last ran two days ago; a daily firing passed while "opsd was down".
	twoDaysAgo := time.Now().Add(-48 * time.Hour)
	for _, name := range []string{"missed", "no-catch-up"} {
		id, _ := r.state.StartRun(ctx, name, "noop", TriggerSchedule, twoDaysAgo)
		fin := twoDaysAgo.Add(time.Second)
		r.state.FinishRun(ctx, state.Run{ID: id, Job: name, FinishedAt: &fin, Outcome: state.OutcomeSuccess})
	}
	s, _ := NewScheduler(r.runner)
	daily := mustSchedule(t, "0 3 * * *")
	s.Apply([]Spec{
		{Job: &Noop{JobName: "missed"}, Schedule: daily, Timeout: time.Minute, Enabled: true, CatchUp: true},
		{Job: &Noop{JobName: "no-catch-up"}, Schedule: daily, Timeout: time.Minute, Enabled: true},
	})
	s.Start(ctx)
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	last, _ := r.state.LastRun(ctx, "missed")
	if last.Trigger != TriggerCatchUp || last.Outcome != state.OutcomeSuccess {
		t.Fatalf("missed job: %+v", last)
	}
	if last, _ := r.state.LastRun(ctx, "no-catch-up"); last.Trigger == TriggerCatchUp || !last.StartedAt.Equal(twoDaysAgo.Truncate(time.Millisecond)) {
		t.Fatalf("job without catch_up ran: %+v", last)
	}
}

// TestSentryCheckInsAndJobErrors: a scheduled job sends cron check-ins (in progress, then error)
// and its failure is an error event tagged job, kind, node, target; the config's secret never
// reaches Sentry.
func TestSentryCheckInsAndJobErrors(t *testing.T) {
	srv := sentrytest.New(t)
	r := newRig(t)
	const secret = "spaces-secret-XYZ123"
	sn, err := telemetry.NewSentry(telemetry.SentryOptions{DSN: srv.DSN(), Node: "node-1"}, telemetry.NewRedactor(secret))
	if err != nil {
		t.Fatal(err)
	}
	r.runner.Sentry = sn
	r.runner.SetMonitor("nightly", telemetry.Monitor{Slug: "nightly", Cron: "0 3 * * *", Timezone: "UTC", MaxRuntime: time.Hour})
	j := funcJob{"nightly", func(ctx context.Context) (Result, error) {
		return Result{Targets: []TargetResult{{Name: "billing", Status: TargetFailed, Err: errors.New("upload with key " + secret + " failed")}}}, nil
	}}
	r.runner.Run(context.Background(), j, time.Minute, TriggerSchedule)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sn.Flush(ctx)
	body := srv.All()
	for _, want := range []string{`"monitor_slug":"nightly"`, `"status":"in_progress"`, `"status":"error"`, `"crontab"`,
		`"job":"nightly"`, `"kind":"func"`, `"target":"billing"`, `"node":"node-1"`, `"source":"opsd"`, "[redacted]"} {
		if !strings.Contains(body, want) {
			t.Errorf("sentry lacks %s:\n%s", want, body)
		}
	}
	if strings.Contains(body, secret) {
		t.Fatal("a secret reached Sentry")
	}
}

func TestRunnerIdleCalledWhenTheLastRunEnds(t *testing.T) {
	r := newRig(t)
	var calls atomic.Int32
	r.runner.Idle = func() { calls.Add(1) }
	releaseA, releaseB := make(chan struct{}), make(chan struct{})
	job := func(name string, started, release chan struct{}) Job {
		return funcJob{name, func(ctx context.Context) (Result, error) {
			close(started)
			<-release
			return Result{}, nil
		}}
	}
	// done is called after Idle would have been: the counts below are final when it returns.
	done := make(chan Outcome, 2)
	for _, name := range []string{"a", "b"} {
		started, release := make(chan struct{}), releaseA
		if name == "b" {
			release = releaseB
		}
		if err := r.runner.Start(context.Background(), job(name, started, release), time.Minute, TriggerSchedule, func(o Outcome) { done <- o }); err != nil {
			t.Fatal(err)
		}
		<-started
	}
	close(releaseA)
	<-done
	if n := calls.Load(); n != 0 {
		t.Fatalf("Idle called %d times while b runs", n)
	}
	close(releaseB)
	<-done
	if n := calls.Load(); n != 1 {
		t.Fatalf("Idle called %d times after the last run ended, want 1", n)
	}
	// A run alone is the last one too.
	if o := r.runner.Run(context.Background(), job("c", make(chan struct{}), releaseA), time.Minute, TriggerManual); !o.OK() {
		t.Fatalf("c: %+v", o)
	}
	if n := calls.Load(); n != 2 {
		t.Fatalf("Idle called %d times after c, want 2", n)
	}
}
