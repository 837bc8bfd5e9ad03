// Package jobs holds the Job contract, the Runner (the only place that times a run, records its
// status, updates metrics, reports to Sentry and recovers panics), the scheduler over gocron v2,
// and the backup job kinds.
package jobs

import (
	"context"
	"fmt"
	"runtime/debug"
	"strings"
	"sync"
	"time"
)

// Job is one configured job. Schedules, timeouts, overlap policy and enablement are configuration
// handed to the scheduler, not methods. Jobs never touch metrics, Sentry or the status store.
type Job interface {
	Name() string
	Kind() string
	// Run does the work once. ctx is cancelled on shutdown or timeout; every blocking call takes it.
	Run(ctx context.Context) (Result, error)
}

// Phase is a named, timed step of a run (a drill's RTO is the sum of its phases).
type Phase struct {
	Name     string        `json:"name"`
	Duration time.Duration `json:"duration"`
}

// MarshalPhases formats phases as seconds for JSON.
func (p Phase) seconds() float64 { return p.Duration.Seconds() }

// Target statuses.
const (
	TargetOK      = "ok"
	TargetFailed  = "failed"
	TargetSkipped = "skipped"
)

// TargetResult is the outcome for one target of a run (one database, one container).
type TargetResult struct {
	Name   string
	Status string // ok, failed, skipped
	// Tracked targets are recorded in backup_status (backup kinds); others only in the result.
	Tracked bool
	// StatusKind groups tracked targets (sqlite, container, snapshot).
	StatusKind string
	Key        string
	Bytes      int64
	Err        error
	Note       string
	// SkipReason says why a skipped target was skipped (e.g. "unchanged"); the Runner counts it.
	SkipReason string
	// Current marks a skipped target whose last backup (Key, Bytes: checked in the store) is
	// still the target as it is now (a hot export of an unchanged container): the Runner records
	// it as a fresh backup, so an idle target does not go stale.
	Current  bool
	Phases   []Phase
	Duration time.Duration
}

// Result is what a run produced.
type Result struct {
	Bytes     int64
	Artifacts []string
	Targets   []TargetResult
	Phases    []Phase
	Summary   string
	// Report is a human-readable report (drills print it on the CLI).
	Report string
	// ReportJSON is a structured report the Runner stores in the state database.
	ReportJSON []byte
	// Drill is set by restore drills; the Runner exports RTO metrics from it.
	Drill *DrillStats
	// Verify is set by offsite verification; the Runner exports its counts.
	Verify *VerifyStats
	// Prune is set by prune runs; the Runner exports its counts.
	Prune *PruneStats
	// Restore is set by restores; the Runner exports the opsd_restore_* metrics from it.
	Restore *RestoreStats
	// Retire, when set, makes the Runner stop tracking targets of this kind that are not in
	// Present (a container that is gone must not stay stale forever).
	Retire *Retire
}

// Retire names the targets of a kind that still exist.
type Retire struct {
	Kind    string
	Present []string
}

// PruneStats count what a prune run did (or, in a dry run, would do).
type PruneStats struct {
	Deleted, Kept, Refused int
	// Foreign counts objects opsd did not write that the run found and kept.
	Foreign    int
	BytesFreed int64
	DryRun     bool
}

// RestoreStats are a restore's figures.
type RestoreStats struct {
	Kind, Target string
	// Outcome is the restore's own (success, failure, rolled_back, rollback_failed, canceled,
	// timeout), classified from its typed errors; empty: the run's outcome.
	Outcome  string
	RTO      time.Duration
	Downtime time.Duration
}

// OneOff is implemented by runs that are not configured jobs (restores). They are recorded in
// the run history, timed, bounded and reported to Sentry like every run, but do not wait for
// the shared limit on concurrent runs (an operator's restore does not queue behind a nightly
// export), and their metrics are their own (Result.Restore), not the per-job series the
// "job failing" alert rules cover.
type OneOff interface {
	OneOff()
}

// Drill is implemented by restore drills. A drill run that fails without a drill result (it
// stopped before restoring anything: no backup to drill, the store unreachable) is a failed
// drill: the Runner exports and stores it as one, so the previous drill's pass does not stand
// for it.
type Drill interface {
	IsDrill()
}

// DrillStats are a drill's timings against its objective.
type DrillStats struct {
	RTO       time.Duration
	RTOTarget time.Duration
	Passed    bool
}

// VerifyStats count what offsite verification found wrong.
type VerifyStats struct {
	Missing    int
	Mismatched int
}

// Failed returns the targets that failed.
func (r Result) Failed() []TargetResult {
	var out []TargetResult
	for _, t := range r.Targets {
		if t.Status == TargetFailed {
			out = append(out, t)
		}
	}
	return out
}

// TargetsError returns an error naming the failed targets, or nil when none failed.
func (r Result) TargetsError(noun string) error {
	failed := r.Failed()
	if len(failed) == 0 {
		return nil
	}
	names := make([]string, len(failed))
	for i, t := range failed {
		names[i] = t.Name
	}
	return fmt.Errorf("%d of %d %s failed: %s", len(failed), len(r.Targets), noun, strings.Join(names, ", "))
}

// Timer records phases.
type Timer struct {
	phases []Phase
	start  time.Time
	name   string
}

// Start begins a phase, ending the previous one.
func (t *Timer) Start(name string) {
	t.Stop()
	t.name, t.start = name, time.Now()
}

// Stop ends the current phase.
func (t *Timer) Stop() {
	if t.name != "" {
		t.phases = append(t.phases, Phase{Name: t.name, Duration: time.Since(t.start)})
		t.name = ""
	}
}

// Phases ends the current phase and returns all of them.
func (t *Timer) Phases() []Phase {
	t.Stop()
	return t.phases
}

// Total sums phase durations.
func Total(ps []Phase) time.Duration {
	var d time.Duration
	for _, p := range ps {
		d += p.Duration
	}
	return d
}

// ForEach calls fn(i) for i in [0, n) with at most limit calls at once and waits for them all.
// Once ctx is done, calls not yet started get skip(i) instead, so every index is accounted for.
// A panic in fn or skip (a bug) does not crash the daemon from a goroutine the Runner's recover
// cannot reach: the other calls finish, then the first panic is raised again in the caller's
// goroutine, where the Runner turns it into the run's failure.
func ForEach(ctx context.Context, n, limit int, fn func(i int), skip func(i int)) {
	sem := make(chan struct{}, max(limit, 1))
	var wg sync.WaitGroup
	var (
		mu       sync.Mutex
		panicked string
	)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() {
				if p := recover(); p != nil {
					mu.Lock()
					if panicked == "" {
						panicked = fmt.Sprintf("%v (item %d of %d)\n%s", p, i+1, n, debug.Stack())
					}
					mu.Unlock()
				}
			}()
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				if skip != nil {
					skip(i)
				}
				return
			}
			defer func() { <-sem }()
			fn(i)
		}()
	}
	wg.Wait()
	if panicked != "" {
		panic(panicked)
	}
}
