package jobs

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/wopr-network/opsd/internal/metrics"
)

// TestApplyIsAllOrNothing: a set with one job gocron refuses (a cron day that never exists)
// changes nothing: the jobs before it keep their old schedules and none vanishes.
func TestApplyIsAllOrNothing(t *testing.T) {
	r := newRig(t)
	s, err := NewScheduler(r.runner)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	old := []Spec{
		{Job: &Noop{JobName: "a"}, Schedule: mustSchedule(t, "0 1 * * *"), Timeout: time.Minute, Enabled: true, Fingerprint: "a1"},
		{Job: &Noop{JobName: "b"}, Schedule: mustSchedule(t, "0 2 * * *"), Timeout: time.Minute, Enabled: true, Fingerprint: "b1"},
		{Job: &Noop{JobName: "c"}, Schedule: mustSchedule(t, "0 3 * * *"), Timeout: time.Minute, Enabled: true, Fingerprint: "c1"},
	}
	if err := s.Apply(old); err != nil {
		t.Fatal(err)
	}
	s.Start(ctx)
	defer s.Shutdown(ctx)
	before := s.Jobs(ctx)
	// opsd's own parser refuses a date that never exists; gocron is the last line of defence:
	// hand it February 31st directly, as a schedule that passed every earlier check.
	never := mustSchedule(t, "0 0 28 2 *")
	never.Cron = "0 0 31 2 *"
	bad := []Spec{
		{Job: &Noop{JobName: "a"}, Schedule: mustSchedule(t, "0 5 * * *"), Timeout: time.Minute, Enabled: true, Fingerprint: "a2"},
		{Job: &Noop{JobName: "b"}, Schedule: never, Timeout: time.Minute, Enabled: true, Fingerprint: "b2"},
		{Job: &Noop{JobName: "d"}, Schedule: mustSchedule(t, "0 4 * * *"), Timeout: time.Minute, Enabled: true, Fingerprint: "d1"},
	}
	if err := s.Apply(bad); err == nil {
		t.Fatal("gocron accepted February 31st")
	}
	after := s.Jobs(ctx)
	if len(after) != len(before) {
		t.Fatalf("a failed apply changed the job set: %+v -> %+v", before, after)
	}
	for i := range before {
		b, a := before[i], after[i]
		if a.Name != b.Name || a.Schedule != b.Schedule || a.NextRun == nil || b.NextRun == nil || !a.NextRun.Equal(*b.NextRun) {
			t.Fatalf("a failed apply changed %s: %+v -> %+v", b.Name, b, a)
		}
	}
	if n := len(s.gs.Jobs()); n != 3 {
		t.Fatalf("gocron holds %d jobs after a failed apply, want 3", n)
	}
}

// TestApplyWhileRunning: Apply replacing specs while runs read them (run with -race).
func TestApplyWhileRunning(t *testing.T) {
	r := newRig(t)
	s, err := NewScheduler(r.runner)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	spec := Spec{Job: &Noop{JobName: "tick"}, Schedule: mustSchedule(t, "@every 1h"), Timeout: time.Minute, Enabled: true, Fingerprint: "same"}
	if err := s.Apply([]Spec{spec}); err != nil {
		t.Fatal(err)
	}
	s.Start(ctx)
	defer s.Shutdown(ctx)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		for i := 0; i < 200; i++ {
			sp := spec
			sp.Timeout = time.Duration(i+1) * time.Second // same fingerprint: the entry is kept
			if err := s.Apply([]Spec{sp}); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	go func() {
		defer wg.Done()
		for i := 0; i < 200; i++ {
			_ = s.Trigger("tick")
			s.fire("tick")
		}
	}()
	wg.Wait()
}

// heldJob is a backup job whose run waits for release, then fails its one tracked target.
type heldJob struct {
	name             string
	started, release chan struct{}
}

func (h *heldJob) Name() string { return h.name }
func (h *heldJob) Kind() string { return "sqlite_backup" }
func (h *heldJob) Run(ctx context.Context) (Result, error) {
	close(h.started)
	<-h.release
	res := Result{Targets: []TargetResult{{Name: "auth", Status: TargetFailed, Tracked: true, StatusKind: "sqlite", Err: errors.New("disk gone")}}}
	return res, res.TargetsError("databases")
}

// TestJobRemovedDuringItsRunLeavesNothing: a reload removes a job (renamed, deleted) while a
// run of it is in progress; when that run ends, the removed job leaves no series on /metrics
// and no tracked target behind (a failed last run would otherwise keep OpsdJobFailing and
// OpsdBackupStale firing, and /health degraded, for a job that no longer exists).
func TestJobRemovedDuringItsRunLeavesNothing(t *testing.T) {
	r := newRig(t)
	reg := prometheus.NewRegistry()
	r.metrics = metrics.New(reg, "test")
	r.runner.Metrics = r.metrics
	s, err := NewScheduler(r.runner)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	h := &heldJob{name: "old-name", started: make(chan struct{}), release: make(chan struct{})}
	if err := s.Apply([]Spec{{Job: h, Schedule: mustSchedule(t, "0 3 * * *"), Timeout: time.Minute, Enabled: true, Fingerprint: "1"}}); err != nil {
		t.Fatal(err)
	}
	s.Start(ctx)
	defer s.Shutdown(ctx)
	done := make(chan Outcome, 1)
	if err := r.runner.Start(ctx, h, time.Minute, TriggerManual, func(o Outcome) { done <- o }); err != nil {
		t.Fatal(err)
	}
	<-h.started
	// The reload: the job is gone from the config (the daemon's Reload does both).
	if err := s.Apply(nil); err != nil {
		t.Fatal(err)
	}
	r.runner.RetireRemovedJobs(ctx, nil)
	close(h.release)
	if o := <-done; o.OK() {
		t.Fatal("the held run succeeded")
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetValue() == "old-name" {
					t.Errorf("series of the removed job after its run ended: %s %v", mf.GetName(), m.GetLabel())
				}
			}
		}
	}
	all, err := r.state.ListBackups(ctx, time.Now(), 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 0 {
		t.Fatalf("targets of the removed job still tracked after its run ended: %+v", all)
	}
}
