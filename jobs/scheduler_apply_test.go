package jobs

import (
	"context"
	"sync"
	"testing"
	"time"
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
