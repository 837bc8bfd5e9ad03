package jobs

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/wopr-network/opsd/internal/health"
	"github.com/wopr-network/opsd/internal/metrics"
	"github.com/wopr-network/opsd/internal/state"
)

// fakeCoord is an in-memory Coordinator that records the order of calls.
type fakeCoord struct {
	mu      sync.Mutex
	held    map[string]bool // locks held by other nodes
	down    bool
	claimed map[time.Time]bool
	retake  bool
	events  []string
	lease   *fakeLease
}

type fakeLease struct {
	c    *fakeCoord
	lost chan struct{}
	once sync.Once
}

func (l *fakeLease) Lost() <-chan struct{} { return l.lost }
func (l *fakeLease) Release()              { l.once.Do(func() { l.c.event("release") }) }

func (c *fakeCoord) event(e string) {
	c.mu.Lock()
	c.events = append(c.events, e)
	c.mu.Unlock()
}

func (c *fakeCoord) TryLock(_ context.Context, key string) (Lease, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.down {
		return nil, ErrCoordinationDown
	}
	if c.held[key] {
		return nil, fmt.Errorf("lock %s: %w", key, ErrHeldElsewhere)
	}
	c.events = append(c.events, "lock")
	c.lease = &fakeLease{c: c, lost: make(chan struct{})}
	return c.lease, nil
}

func (c *fakeCoord) Claim(_ context.Context, _ string, at time.Time) (bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.events = append(c.events, "claim")
	if c.claimed[at] {
		return false, nil
	}
	c.claimed[at] = true
	return true, nil
}

func (c *fakeCoord) Finish(_ context.Context, _ string, _ time.Time, outcome string) error {
	c.event("finish " + outcome)
	return nil
}

func (c *fakeCoord) Interrupted(context.Context, string, time.Time) error {
	c.event("interrupted")
	return nil
}

func (c *fakeCoord) Retake(context.Context, string, time.Time) (bool, error) {
	c.event(fmt.Sprintf("retake %v", c.retake))
	return c.retake, nil
}

func (c *fakeCoord) log() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.events...)
}

func platformRig(t *testing.T, sleep time.Duration) (*rig, *Scheduler, *fakeCoord, Spec) {
	t.Helper()
	r := newRig(t)
	s, err := NewScheduler(r.runner)
	if err != nil {
		t.Fatal(err)
	}
	c := &fakeCoord{held: map[string]bool{}, claimed: map[time.Time]bool{}}
	s.Coord = c
	sp := Spec{Job: &Noop{JobName: "prune", Sleep: sleep}, Schedule: mustSchedule(t, "0 3 * * *"), Timeout: time.Minute, Enabled: true, Scope: ScopePlatform}
	if err := s.Apply([]Spec{sp}); err != nil {
		t.Fatal(err)
	}
	return r, s, c, sp
}

func equal(a, b []string) bool { return fmt.Sprint(a) == fmt.Sprint(b) }

// TestPlatformTickUnderTheJobLock: a platform tick takes the job's lock, then claims the tick,
// runs, records the outcome, and only then releases the lock; a tick whose lock is held
// elsewhere, or that another node claimed, is skipped (reason elsewhere) and one with the
// database down is skipped (reason coordination), without running.
func TestPlatformTickUnderTheJobLock(t *testing.T) {
	r, s, c, sp := platformRig(t, 0)
	ctx := context.Background()
	at := time.Date(2026, 11, 30, 3, 0, 0, 0, time.UTC)
	s.runPlatform(ctx, sp, TriggerSchedule, at)
	if got := c.log(); !equal(got, []string{"lock", "claim", "finish success", "release"}) {
		t.Fatalf("calls: %v", got)
	}
	s.runPlatform(ctx, sp, TriggerSchedule, at.Add(10*time.Second)) // a late clock: the same tick
	c.held["job:prune"] = true
	s.runPlatform(ctx, sp, TriggerSchedule, at.Add(24*time.Hour))
	c.held["job:prune"], c.down = false, true
	s.runPlatform(ctx, sp, TriggerSchedule, at.Add(48*time.Hour))
	runs, _ := r.state.Runs(ctx, "prune", 10)
	if len(runs) != 1 {
		t.Fatalf("%d runs for one tick run here", len(runs))
	}
	for reason, want := range map[string]float64{SkipElsewhere: 2, SkipCoordination: 1} {
		if got := testutil.ToFloat64(r.metrics.JobSkipped.WithLabelValues("prune", "noop", reason)); got != want {
			t.Errorf("skipped %s: %v, want %v", reason, got, want)
		}
	}
}

// TestLostSessionInterruptsAndRetryRunsOnce: losing the lease cancels the run, which is recorded
// interrupted, and the tick's claim is left open (Interrupted, no Finish); RetryLost runs a lost
// tick only when the coordinator lets this node take it over.
func TestLostSessionInterruptsAndRetryRunsOnce(t *testing.T) {
	r, s, c, sp := platformRig(t, time.Hour)
	ctx := context.Background()
	at := time.Date(2026, 11, 30, 3, 0, 0, 0, time.UTC)
	done := make(chan struct{})
	go func() { s.runPlatform(ctx, sp, TriggerSchedule, at); close(done) }()
	deadline := time.Now().Add(30 * time.Second)
	for !r.runner.IsRunning("prune") {
		if time.Now().After(deadline) {
			t.Fatal("the run did not start")
		}
		time.Sleep(10 * time.Millisecond)
	}
	c.mu.Lock()
	close(c.lease.lost)
	c.mu.Unlock()
	<-done
	if got := c.log(); !equal(got, []string{"lock", "claim", "interrupted", "release"}) {
		t.Fatalf("calls: %v", got)
	}
	if last, _ := r.state.LastRun(ctx, "prune"); last.Outcome != state.OutcomeInterrupted {
		t.Fatalf("the cancelled run: %+v", last)
	}

	s.Start(ctx)
	defer s.Shutdown(ctx)
	sp.Job.(*Noop).Sleep = 0
	c.events, c.retake = nil, false
	s.RetryLost("prune", at)
	waitFor(t, func() bool { return len(c.log()) == 3 })
	if got := c.log(); !equal(got, []string{"lock", "retake false", "release"}) {
		t.Fatalf("a tick that may not be retried: %v", got)
	}
	c.events, c.retake = nil, true
	s.RetryLost("prune", at)
	waitFor(t, func() bool { return len(c.log()) == 4 })
	if got := c.log(); !equal(got, []string{"lock", "retake true", "finish success", "release"}) {
		t.Fatalf("a retried tick: %v", got)
	}
	if last, _ := r.state.LastRun(ctx, "prune"); last.Trigger != TriggerRetry || last.Outcome != state.OutcomeSuccess {
		t.Fatalf("the retry: %+v", last)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestPlatformJobInterruptedRunsStartAtZero: a platform job's runs can end interrupted (its node
// lost the coordination session: opsd_job_runs_total{outcome="interrupted"}), so that series is
// exported at 0 from the start like the job's other outcomes; a counter that first appears at 1
// is invisible to increase() and rate(), so the first lost run would never show on a dashboard.
func TestPlatformJobInterruptedRunsStartAtZero(t *testing.T) {
	r := newRig(t)
	reg := prometheus.NewRegistry()
	r.metrics = metrics.New(reg, "test")
	r.runner.Metrics = r.metrics
	s, err := NewScheduler(r.runner)
	if err != nil {
		t.Fatal(err)
	}
	s.Coord = &fakeCoord{held: map[string]bool{}, claimed: map[time.Time]bool{}}
	sp := Spec{Job: &Noop{JobName: "prune"}, Schedule: mustSchedule(t, "0 3 * * *"), Timeout: time.Minute, Enabled: true, Scope: ScopePlatform}
	if err := s.Apply([]Spec{sp}); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	outcomes := map[string]bool{}
	for _, mf := range mfs {
		if mf.GetName() != "opsd_job_runs_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "outcome" {
					outcomes[l.GetValue()] = true
				}
			}
		}
	}
	if !outcomes[state.OutcomeInterrupted] {
		t.Fatalf("opsd_job_runs_total of a platform job has outcomes %v before any run, no %q", outcomes, state.OutcomeInterrupted)
	}
}

// TestLostSessionRunIsNoInterruptedProblemAfterARestart: a platform run cancelled because its
// node lost the coordination session is recorded interrupted (its tick is retried elsewhere),
// and /health has no "interrupted:<job>" problem for it: opsd did not stop. A restart must not
// turn that record into one ("opsd stopped during it"): it would keep this node degraded until
// it happens to win a tick of the job, which other nodes may run every time.
func TestLostSessionRunIsNoInterruptedProblemAfterARestart(t *testing.T) {
	r, s, c, sp := platformRig(t, time.Hour)
	r.runner.Problems = &health.Problems{}
	ctx := context.Background()
	at := time.Date(2026, 11, 30, 3, 0, 0, 0, time.UTC)
	done := make(chan struct{})
	go func() { s.runPlatform(ctx, sp, TriggerSchedule, at); close(done) }()
	waitFor(t, func() bool { return r.runner.IsRunning("prune") })
	c.mu.Lock()
	close(c.lease.lost)
	c.mu.Unlock()
	<-done
	if last, _ := r.state.LastRun(ctx, "prune"); last.Outcome != state.OutcomeInterrupted {
		t.Fatalf("the cancelled run: %+v", last)
	}
	if p := r.runner.Problems.List(); len(p) != 0 {
		t.Fatalf("problems while running: %+v", p)
	}
	// The restart: a new runner on the same state database.
	restarted := NewRunner(r.state, r.metrics, r.runner.Sentry, r.runner.Log, "n1", 2)
	restarted.Problems = &health.Problems{}
	if err := restarted.RecoverInterrupted(ctx, []Spec{sp}); err != nil {
		t.Fatal(err)
	}
	if p := restarted.Problems.List(); len(p) != 0 {
		t.Fatalf("problems after a restart, for a run opsd did not stop: %+v", p)
	}
}
