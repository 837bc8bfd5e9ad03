package jobs

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/go-co-op/gocron/v2"
	"github.com/google/uuid"

	"github.com/wopr-network/opsd/internal/schedule"
	"github.com/wopr-network/opsd/internal/state"
	"github.com/wopr-network/opsd/internal/telemetry"
)

// Spec is a job with its scheduling configuration.
type Spec struct {
	Job      Job
	Schedule schedule.Schedule
	Location *time.Location
	Timeout  time.Duration
	Enabled  bool
	// CatchUp runs the job once at start when a scheduled time passed while opsd was down.
	CatchUp bool
	// RunAtStart runs the job once at start (or when a reload adds it).
	RunAtStart bool
	// Fingerprint identifies the job's configuration; a reload replaces a job whose
	// fingerprint changed and leaves the others alone.
	Fingerprint string
	// Scope is ScopePlatform (once across the fleet per scheduled time, through the
	// scheduler's Coordinator) or ScopeNode / "" (on this node).
	Scope string
}

// Info describes a scheduled job for the API and the CLI.
type Info struct {
	Name        string     `json:"name"`
	Kind        string     `json:"kind"`
	Schedule    string     `json:"schedule"`
	Enabled     bool       `json:"enabled"`
	Running     bool       `json:"running"`
	NextRun     *time.Time `json:"nextRun"`
	LastRun     *time.Time `json:"lastRun"`
	LastOutcome string     `json:"lastOutcome"`
	LastError   string     `json:"lastError,omitempty"`
	LastSuccess *time.Time `json:"lastSuccess"`
}

// ErrUnknownJob is returned when a job name is not configured.
var ErrUnknownJob = errors.New("unknown job")

// Scheduler runs jobs on their schedules through the Runner.
type Scheduler struct {
	runner *Runner
	gs     gocron.Scheduler

	mu      sync.Mutex
	ctx     context.Context
	entries map[string]*entry
	started bool

	// Coord, when set, runs platform-scoped jobs once across the fleet.
	Coord Coordinator

	syncMu sync.Mutex     // one SyncMetrics at a time
	mark   state.RunsMark // the runs mark at the last SyncMetrics
	synced bool
}

type entry struct {
	spec Spec
	id   uuid.UUID
}

// NewScheduler returns a scheduler that runs jobs through runner.
func NewScheduler(runner *Runner) (*Scheduler, error) {
	gs, err := gocron.NewScheduler(gocron.WithStopTimeout(time.Second), gocron.WithLocation(time.UTC))
	if err != nil {
		return nil, fmt.Errorf("new scheduler: %w", err)
	}
	return &Scheduler{runner: runner, gs: gs, entries: map[string]*entry{}, ctx: context.Background()}, nil
}

// Apply makes the scheduled set equal to specs: new jobs are added, removed ones stop being
// scheduled (a run in progress finishes), changed ones are replaced. It is all-or-nothing: every
// new or changed job is registered with gocron (which runs its own checks, e.g. a cron day that
// never exists) before anything is removed, and when one is refused the ones registered so far
// are taken back, so a failed Apply leaves the running schedule exactly as it was.
func (s *Scheduler) Apply(specs []Spec) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	want := map[string]Spec{}
	for _, sp := range specs {
		want[sp.Job.Name()] = sp
	}
	// Register every new or changed job first.
	fresh := map[string]*entry{}
	var names []string
	for name := range want {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		sp := want[name]
		if e, ok := s.entries[name]; ok && sp.Fingerprint == e.spec.Fingerprint {
			continue
		}
		e := &entry{spec: sp}
		if sp.Enabled {
			id, err := s.register(name, sp)
			if err != nil {
				for _, f := range fresh {
					if f.id != uuid.Nil {
						_ = s.gs.RemoveJob(f.id)
					}
				}
				return err
			}
			e.id = id
		}
		fresh[name] = e
	}
	// Nothing can fail past this point: swap.
	for name, e := range s.entries {
		sp, keep := want[name]
		if _, replaced := fresh[name]; !keep || replaced {
			if e.id != uuid.Nil {
				if err := s.gs.RemoveJob(e.id); err != nil && !errors.Is(err, gocron.ErrJobNotFound) {
					s.runner.Log.Error().Err(err).Str("job", name).Msg("cannot unschedule a replaced job")
				}
			}
			if !keep {
				// Removed first: a run that ends between the two would otherwise record series
				// after they were forgotten and not be told to forget them again.
				s.runner.Removed(name) // a run in progress forgets what it records, too
				s.runner.Metrics.ForgetJob(name, e.spec.Job.Kind())
				s.runner.Metrics.ForgetJobSeries(name)
				s.runner.SetMonitor(name, telemetry.Monitor{})
			}
			delete(s.entries, name)
			continue
		}
		// Same configuration: keep its place in the schedule. A new entry, never a write into
		// the old one, which a run may be reading.
		s.entries[name] = &entry{spec: sp, id: e.id}
	}
	var added []string
	for name, e := range fresh {
		sp := e.spec
		s.entries[name] = e
		added = append(added, name)
		s.runner.Configured(name)
		if sp.Enabled {
			s.runner.SetMonitor(name, telemetry.Monitor{Slug: MonitorSlug(name, sp.Job.Kind(), s.runner.NodeID), Cron: sp.Schedule.Cron, Every: sp.Schedule.Every, Timezone: loc(sp).String(), MaxRuntime: sp.Timeout})
		} else {
			s.runner.SetMonitor(name, telemetry.Monitor{})
		}
		iv := sp.Schedule.Interval(time.Now().In(loc(sp)))
		s.runner.Metrics.JobExpectedInterval.WithLabelValues(name, sp.Job.Kind()).Set(iv.Seconds())
		s.seedMetrics(name, sp.Job.Kind())
		// Zero series, so "never happened" reads 0 rather than absent.
		outcomes := []string{state.OutcomeSuccess, state.OutcomeFailure, state.OutcomeTimeout, state.OutcomeCanceled}
		if s.platform(sp) {
			// A platform run whose node loses the coordination session ends interrupted.
			outcomes = append(outcomes, state.OutcomeInterrupted)
		}
		s.runner.Metrics.InitJob(name, sp.Job.Kind(), outcomes, jobCounters(sp.Job))
		if s.platform(sp) {
			for _, r := range []string{SkipCoordination, SkipElsewhere} {
				s.runner.Metrics.JobSkipped.WithLabelValues(name, sp.Job.Kind(), r)
			}
		}
		if sp.Job.Kind() == "prune" {
			s.runner.Metrics.PruneForeign.WithLabelValues(name) // 0 until a run counts them
		}
	}
	if s.started {
		sort.Strings(added)
		for _, name := range added {
			if sp := s.entries[name].spec; sp.Enabled && sp.RunAtStart {
				s.startRun(sp, TriggerStart)
			}
		}
	}
	return nil
}

// seedMetrics sets a job's last-run and last-success gauges from job_runs, so a restart does
// not lose them (Runner.syncJob).
func (s *Scheduler) seedMetrics(name, kind string) {
	if err := s.runner.syncJob(context.Background(), name, kind); err != nil {
		s.runner.Log.Warn().Err(err).Str("job", name).Msg("cannot seed the job's metrics from its history")
	}
}

func loc(sp Spec) *time.Location {
	if sp.Location == nil {
		return time.UTC
	}
	return sp.Location
}

func (s *Scheduler) register(name string, sp Spec) (uuid.UUID, error) {
	var def gocron.JobDefinition
	if sp.Schedule.Every > 0 {
		def = gocron.DurationJob(sp.Schedule.Every)
	} else {
		def = gocron.CronJob("CRON_TZ="+loc(sp).String()+" "+sp.Schedule.Cron, false)
	}
	opts := []gocron.JobOption{gocron.WithName(name)}
	if s.platform(sp) && sp.Schedule.Every > 0 {
		opts = append(opts, alignedStart(sp.Schedule.Every, time.Now()))
	}
	j, err := s.gs.NewJob(def, gocron.NewTask(func() { s.fire(name) }), opts...)
	if err != nil {
		return uuid.Nil, fmt.Errorf("schedule %s: %w", name, err)
	}
	return j.ID(), nil
}

func (s *Scheduler) fire(name string) {
	s.mu.Lock()
	e, ok := s.entries[name]
	var sp Spec
	if ok {
		sp = e.spec // copied under the lock: Apply may replace the entry meanwhile
	}
	ctx := s.ctx
	s.mu.Unlock()
	if !ok {
		return
	}
	if s.platform(sp) {
		s.runPlatform(ctx, sp, TriggerSchedule, time.Now())
		return
	}
	s.runner.Run(ctx, sp.Job, sp.Timeout, TriggerSchedule)
}

// platform reports whether a job runs once across the fleet.
func (s *Scheduler) platform(sp Spec) bool { return s.Coord != nil && sp.Scope == ScopePlatform }

func (s *Scheduler) startRun(sp Spec, trigger string) {
	if s.platform(sp) {
		// Claimed as the newest scheduled time, so that a fleet starting together runs it once.
		go s.runPlatform(s.ctx, sp, trigger, lastTick(sp, time.Now()))
		return
	}
	_ = s.runner.Start(s.ctx, sp.Job, sp.Timeout, trigger, nil)
}

// Start begins firing schedules. Runs get a context derived from ctx; cancel it to abort them.
// Jobs with catch_up whose last recorded run is older than a scheduled time that passed run once
// now; jobs with run_at_start run once now.
func (s *Scheduler) Start(ctx context.Context) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ctx = ctx
	s.started = true
	s.gs.Start()
	names := slices.Sorted(maps.Keys(s.entries))
	now := time.Now()
	for _, name := range names {
		sp := s.entries[name].spec
		if !sp.Enabled {
			continue
		}
		if sp.RunAtStart {
			s.startRun(sp, TriggerStart)
			continue
		}
		if sp.CatchUp {
			last, err := s.runner.State.LastRun(ctx, name)
			// An interrupted run (opsd killed during it) did not happen: run it again once.
			if err == nil && (last.Outcome == state.OutcomeInterrupted || sp.Schedule.Missed(last.StartedAt.In(loc(sp)), now)) {
				s.runner.Log.Info().Str("job", name).Time("last_run", last.StartedAt).Msg("catching up a missed scheduled run")
				s.startRun(sp, TriggerCatchUp)
			}
		}
	}
}

// Trigger starts a run of the named job now, in the background.
func (s *Scheduler) Trigger(name string) error {
	s.mu.Lock()
	e, ok := s.entries[name]
	var sp Spec
	if ok {
		sp = e.spec
	}
	ctx := s.ctx
	s.mu.Unlock()
	if !ok {
		return fmt.Errorf("trigger %s: %w", name, ErrUnknownJob)
	}
	if s.platform(sp) {
		if s.runner.IsRunning(name) {
			return fmt.Errorf("run %s: %w", name, ErrAlreadyRunning)
		}
		return s.triggerPlatform(ctx, sp)
	}
	return s.runner.Start(ctx, sp.Job, sp.Timeout, TriggerManual, nil)
}

// Spec returns the named job's spec.
func (s *Scheduler) Spec(name string) (Spec, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.entries[name]
	if !ok {
		return Spec{}, false
	}
	return e.spec, true
}

// Jobs describes every configured job, by name.
func (s *Scheduler) Jobs(ctx context.Context) []Info {
	s.mu.Lock()
	type item struct {
		spec Spec
		id   uuid.UUID
	}
	items := make([]item, 0, len(s.entries))
	for _, e := range s.entries {
		items = append(items, item{e.spec, e.id})
	}
	s.mu.Unlock()
	next := map[uuid.UUID]time.Time{}
	for _, j := range s.gs.Jobs() {
		if t, err := j.NextRun(); err == nil && !t.IsZero() {
			next[j.ID()] = t
		}
	}
	out := make([]Info, 0, len(items))
	for _, it := range items {
		name := it.spec.Job.Name()
		info := Info{Name: name, Kind: it.spec.Job.Kind(), Schedule: it.spec.Schedule.Spec, Enabled: it.spec.Enabled, Running: s.runner.IsRunning(name)}
		if t, ok := next[it.id]; ok && it.id != uuid.Nil {
			t := t.UTC()
			info.NextRun = &t
		}
		info.AddHistory(ctx, s.runner.State)
		out = append(out, info)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Shutdown stops firing schedules and waits, bounded by ctx, for runs in progress to finish.
func (s *Scheduler) Shutdown(ctx context.Context) error {
	s.runner.Stop()
	_ = s.gs.Shutdown() // returns after WithStopTimeout; runs are waited for below
	return s.runner.Wait(ctx)
}

// LastOutcome returns the job's newest recorded run.
func (s *Scheduler) LastOutcome(ctx context.Context, name string) (state.Run, error) {
	return s.runner.State.LastRun(ctx, name)
}
