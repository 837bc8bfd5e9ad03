package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/wopr-network/opsd/internal/health"
	"github.com/wopr-network/opsd/internal/metrics"
	"github.com/wopr-network/opsd/internal/state"
	"github.com/wopr-network/opsd/internal/telemetry"
)

// Triggers say why a run started.
const (
	TriggerSchedule = "schedule"
	TriggerManual   = "manual"
	TriggerCLI      = "cli"
	TriggerCatchUp  = "catch-up"
	TriggerStart    = "start"
)

// ErrAlreadyRunning is returned when a run would overlap the job's run in progress.
var ErrAlreadyRunning = errors.New("already running")

// ErrStopping is returned for runs requested after shutdown began.
var ErrStopping = errors.New("opsd is shutting down")

// Runner runs jobs: one run of a job at a time, a shared limit on concurrent runs, a timeout per
// run. It alone times runs, records them in job_runs and backup_status, updates metrics, reports
// failures to Sentry and recovers panics, the same way for every kind.
type Runner struct {
	State   *state.Store
	Metrics *metrics.Metrics
	Sentry  *telemetry.Sentry
	Log     zerolog.Logger
	NodeID  string
	// Problems receives "record:<job>" when a run could not be recorded in the state database
	// (a disk full): such a run is a failed run, and /health is degraded until one is recorded.
	Problems *health.Problems
	// Idle, when set, is called each time the last run in progress ends, in that run's goroutine
	// after the run is recorded: the daemon returns the memory the runs freed to the OS there.
	Idle func()

	sem      chan struct{}
	mu       sync.Mutex
	running  map[string]bool
	active   int
	idle     chan struct{} // closed while no run is active
	stopping bool
	monitors map[string]telemetry.Monitor
	// removed holds jobs taken out of the config while a run of theirs was in progress: that
	// run's end forgets the series and targets it recorded after the reload forgot them.
	removed map[string]bool

	keepRuns atomic.Int64 // history bound per job (SetKeepRuns)

	// gaugeMu orders the writes of a job's last-run gauges: a run's end, and SyncMetrics, which
	// sets them from a newer run another process recorded (it must not undo a run of ours that
	// ended after it read the state database).
	gaugeMu sync.Mutex
	// shown is what the last-run gauges of each (job, kind) say, under gaugeMu.
	shown map[[2]string]shownRuns
}

// SetKeepRuns bounds each job's history of runs and reports to its newest n (0: unbounded).
func (r *Runner) SetKeepRuns(n int) { r.keepRuns.Store(int64(n)) }

// SetMonitor registers (or, with a zero Monitor, removes) the Sentry cron monitor of a scheduled
// job; its scheduled runs check in.
func (r *Runner) SetMonitor(job string, m telemetry.Monitor) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.monitors == nil {
		r.monitors = map[string]telemetry.Monitor{}
	}
	if m.Slug == "" {
		delete(r.monitors, job)
		return
	}
	r.monitors[job] = m
}

// NewRunner returns a runner allowing maxConcurrent runs at once.
func NewRunner(st *state.Store, m *metrics.Metrics, s *telemetry.Sentry, log zerolog.Logger, node string, maxConcurrent int) *Runner {
	if maxConcurrent < 1 {
		maxConcurrent = 1
	}
	idle := make(chan struct{})
	close(idle)
	return &Runner{State: st, Metrics: m, Sentry: s, Log: log, NodeID: node, sem: make(chan struct{}, maxConcurrent), running: map[string]bool{}, idle: idle}
}

// Outcome is how a run ended.
type Outcome struct {
	Run    state.Run
	Result Result
	Err    error
}

// OK reports whether the run succeeded.
func (o Outcome) OK() bool { return o.Run.Outcome == state.OutcomeSuccess }

// IsRunning reports whether a run of the job is in progress.
func (r *Runner) IsRunning(name string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.running[name]
}

// claim marks the job running, or says why it cannot run (overlap, shutdown).
func (r *Runner) claim(j Job) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stopping {
		return ErrStopping
	}
	if r.running[j.Name()] {
		return ErrAlreadyRunning
	}
	r.running[j.Name()] = true
	if r.active == 0 {
		r.idle = make(chan struct{})
	}
	r.active++
	return nil
}

// release marks the job's run over; it reports whether the job was removed from the config
// during the run, and whether it was the last run in progress.
func (r *Runner) release(j Job) (removed, last bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.running, j.Name())
	removed = r.removed[j.Name()]
	delete(r.removed, j.Name())
	r.active--
	if r.active == 0 {
		close(r.idle)
		last = true
	}
	return removed, last
}

// Removed tells the runner that a job is no longer configured (a reload removed or renamed it).
// When a run of it is in progress, that run's end forgets the job's metric series and retires
// its tracked targets again, so what the run records does not bring a job that no longer exists
// back onto /metrics and /health.
func (r *Runner) Removed(name string) {
	r.forgetShown(name)
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.running[name] {
		return
	}
	if r.removed == nil {
		r.removed = map[string]bool{}
	}
	r.removed[name] = true
}

// Configured takes back Removed: the job is configured again.
func (r *Runner) Configured(name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.removed, name)
}

// forgetRemoved drops what a run of a job removed from the config recorded: its series, its
// targets' rows and its problems.
func (r *Runner) forgetRemoved(j Job) {
	name := j.Name()
	r.forgetShown(name)
	r.Metrics.ForgetJob(name, j.Kind())
	r.Metrics.ForgetJobSeries(name)
	if err := r.State.RetireJob(context.Background(), name, time.Now()); err != nil {
		r.Log.Error().Err(err).Str("job", name).Msg("cannot retire the targets of a removed job")
	}
	if r.Problems != nil {
		r.Problems.Clear("record:" + name)
		r.Problems.Clear("interrupted:" + name)
	}
	r.Log.Info().Str("job", name).Msg("the run of a job removed from the config ended; stopped tracking the job")
}

// Stop refuses every run requested from now on (shutdown); runs in progress go on.
func (r *Runner) Stop() {
	r.mu.Lock()
	r.stopping = true
	r.mu.Unlock()
}

// Wait blocks until no run is in progress, or ctx ends.
func (r *Runner) Wait(ctx context.Context) error {
	r.mu.Lock()
	idle := r.idle
	r.mu.Unlock()
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Start claims the job and runs it in the background; it returns ErrAlreadyRunning when a run is
// in progress (the overlap is counted).
func (r *Runner) Start(ctx context.Context, j Job, timeout time.Duration, trigger string, done func(Outcome)) error {
	if err := r.claim(j); err != nil {
		if errors.Is(err, ErrAlreadyRunning) {
			r.skipped(j, trigger)
		}
		return fmt.Errorf("run %s: %w", j.Name(), err)
	}
	go func() {
		o := r.run(ctx, j, timeout, trigger)
		if done != nil {
			done(o)
		}
	}()
	return nil
}

// Run runs the job in the foreground. An overlapping run is skipped (counted, logged) and
// returns ErrAlreadyRunning.
func (r *Runner) Run(ctx context.Context, j Job, timeout time.Duration, trigger string) Outcome {
	if err := r.claim(j); err != nil {
		if errors.Is(err, ErrAlreadyRunning) {
			r.skipped(j, trigger)
		}
		return Outcome{Err: fmt.Errorf("run %s: %w", j.Name(), err)}
	}
	return r.run(ctx, j, timeout, trigger)
}

func (r *Runner) skipped(j Job, trigger string) {
	r.Metrics.JobSkipped.WithLabelValues(j.Name(), j.Kind(), "overlap").Inc()
	r.Log.Warn().Str("job", j.Name()).Str("kind", j.Kind()).Str("trigger", trigger).Msg("run skipped: the previous run is still in progress")
}

func (r *Runner) run(ctx context.Context, j Job, timeout time.Duration, trigger string) (o Outcome) {
	defer func() {
		removed, last := r.release(j)
		if removed {
			r.forgetRemoved(j)
		}
		if last && r.Idle != nil {
			r.Idle()
		}
	}()
	name, kind := j.Name(), j.Kind()
	log := r.Log.With().Str("job", name).Str("kind", kind).Str("trigger", trigger).Logger()

	// Wait for a slot under the shared limit (one-off runs do not).
	_, oneOff := j.(OneOff)
	if !oneOff {
		select {
		case r.sem <- struct{}{}:
		case <-ctx.Done():
			return Outcome{Err: fmt.Errorf("run %s: %w", name, ctx.Err())}
		}
		defer func() { <-r.sem }()
	}

	started := time.Now()
	// Recording must outlive a cancelled run context.
	rec := context.WithoutCancel(ctx)
	id, recErr := r.State.StartRun(rec, name, kind, trigger, started)
	if recErr != nil {
		log.Error().Err(recErr).Msg("cannot record run start")
	}
	if !oneOff {
		r.Metrics.JobRunning.WithLabelValues(name, kind).Set(1)
		defer r.Metrics.JobRunning.WithLabelValues(name, kind).Set(0)
	}
	log.Info().Msg("run started")

	r.mu.Lock()
	mon, monitored := r.monitors[name]
	r.mu.Unlock()
	monitored = monitored && trigger != TriggerManual && trigger != TriggerCLI
	var checkIn string
	if monitored {
		checkIn = r.Sentry.CheckInStart(mon)
	}
	runCtx, cancel := context.WithTimeout(state.WithRunID(ctx, id), timeout)
	defer cancel()
	res, runErr := safeRun(runCtx, j)
	finished := time.Now()
	dur := finished.Sub(started)
	res = r.keepVanished(rec, name, res)

	outcome := state.OutcomeSuccess
	if runErr == nil {
		runErr = res.TargetsError("targets")
	}
	if runErr != nil {
		outcome = state.OutcomeFailure
		switch {
		case errors.Is(runCtx.Err(), context.DeadlineExceeded) && ctx.Err() == nil:
			outcome = state.OutcomeTimeout
			runErr = fmt.Errorf("timed out after %s: %w", timeout, runErr)
		case errors.Is(context.Cause(ctx), ErrCoordinationDown):
			// Fenced: this node lost its coordination session (runFenced). The run did not
			// finish and its tick is retried elsewhere: interrupted, a failed run, not a stop.
			outcome = state.OutcomeInterrupted
			runErr = fmt.Errorf("interrupted: this node lost its coordination session, so the run was cancelled: %w", runErr)
		case ctx.Err() != nil:
			outcome = state.OutcomeCanceled
		}
	}

	// A run that cannot be recorded is a failed run: its status would otherwise keep saying what
	// the last recorded run said (a success) while every backup fails.
	recErr = errors.Join(recErr, r.recordTargets(rec, log, j, res, finished))
	if recErr != nil && outcome == state.OutcomeSuccess {
		outcome, runErr = state.OutcomeFailure, fmt.Errorf("record the run in the state database: %w", recErr)
	}
	phases, _ := json.Marshal(phaseMap(res.Phases))
	dry := isDryRun(j)
	run := state.Run{ID: id, Job: name, Kind: kind, Trigger: trigger, StartedAt: started, FinishedAt: &finished,
		Outcome: outcome, Bytes: res.Bytes, Summary: dryRunSummary(dry, res.Summary), Phases: string(phases)}
	if runErr != nil {
		run.Error = runErr.Error()
	}
	if id != 0 {
		if err := r.State.FinishRun(rec, run); err != nil {
			log.Error().Err(err).Msg("cannot record run end")
			recErr = errors.Join(recErr, err)
			if outcome == state.OutcomeSuccess {
				outcome, runErr = state.OutcomeFailure, fmt.Errorf("record the run in the state database: %w", err)
				run.Outcome, run.Error = outcome, runErr.Error()
			}
		}
	}
	if monitored {
		r.Sentry.CheckInFinish(mon, checkIn, outcome == state.OutcomeSuccess, dur)
	}
	r.recordChecks(rec, log, j, id, res, outcome, runErr, finished)
	r.retire(rec, log, j.Name(), res, finished)
	if err := r.State.PruneHistory(rec, name, int(r.keepRuns.Load())); err != nil {
		log.Warn().Err(err).Msg("cannot prune run history")
	}
	if r.Problems != nil {
		if outcome == state.OutcomeSuccess {
			r.Problems.Clear("interrupted:" + name)
		}
		if recErr != nil {
			r.Problems.Set("record:"+name, "cannot record runs of "+name+" in the state database: "+recErr.Error())
		} else if r.Problems.Clear("record:" + name) {
			log.Info().Msg("runs are recorded again")
		}
	}

	m := r.Metrics
	if rs := res.Restore; rs != nil {
		r.recordRestore(*rs, outcome, dur, res.Phases)
	}
	r.gaugeMu.Lock()
	if !oneOff {
		m.JobRuns.WithLabelValues(name, kind, outcome).Inc()
		m.JobDuration.WithLabelValues(name, kind).Observe(dur.Seconds())
		m.JobLastDuration.WithLabelValues(name, kind).Set(dur.Seconds())
		m.JobLastRun.WithLabelValues(name, kind).Set(float64(finished.UnixMilli()) / 1000)
		r.showRun(name, kind, finished, outcome == state.OutcomeSuccess && !dry)
		for _, p := range res.Phases {
			m.JobPhase.WithLabelValues(name, kind, p.Name).Set(p.seconds())
		}
		if res.Bytes > 0 {
			m.BytesUploaded.WithLabelValues(name, kind).Add(float64(res.Bytes))
		}
		switch {
		case outcome == state.OutcomeSuccess && dry:
		case outcome == state.OutcomeSuccess:
			m.JobLastSuccess.WithLabelValues(name, kind).Set(float64(finished.UnixMilli()) / 1000)
			m.JobLastRunSuccess.WithLabelValues(name, kind).Set(1)
		default:
			m.JobLastRunSuccess.WithLabelValues(name, kind).Set(0)
		}
	}
	r.gaugeMu.Unlock()
	if outcome == state.OutcomeSuccess && dry {
		log.Info().Int64("duration_ms", dur.Milliseconds()).Str("summary", res.Summary).Msg("dry run finished: nothing deleted")
	} else if outcome == state.OutcomeSuccess {
		log.Info().Int64("duration_ms", dur.Milliseconds()).Int64("bytes", res.Bytes).Str("summary", res.Summary).Msg("run succeeded")
	} else {
		log.Error().Err(runErr).Str("outcome", outcome).Int64("duration_ms", dur.Milliseconds()).Msg("run failed")
		if outcome != state.OutcomeCanceled {
			r.report(j, res, runErr)
		}
	}
	return Outcome{Run: run, Result: res, Err: runErr}
}

// recordRestore exports a restore's metrics: its run by outcome, its duration and phases, and
// after a success its recovery time and downtime.
func (r *Runner) recordRestore(rs RestoreStats, outcome string, dur time.Duration, phases []Phase) {
	m := r.Metrics.Restore
	if rs.Outcome != "" {
		outcome = rs.Outcome
	}
	m.Runs.WithLabelValues(rs.Kind, outcome).Inc()
	m.Duration.WithLabelValues(rs.Kind).Observe(dur.Seconds())
	m.Phase.DeletePartialMatch(map[string]string{"kind": rs.Kind})
	for p, secs := range phaseMap(phases) {
		m.Phase.WithLabelValues(rs.Kind, p).Set(secs)
	}
	if outcome == state.OutcomeSuccess {
		m.LastRTO.WithLabelValues(rs.Kind, rs.Target).Set(rs.RTO.Seconds())
		m.LastDowntime.WithLabelValues(rs.Kind, rs.Target).Set(rs.Downtime.Seconds())
	}
}

// report sends one Sentry event per failed target, or one for the run when no target failed.
func (r *Runner) report(j Job, res Result, runErr error) {
	failed := res.Failed()
	if len(failed) == 0 {
		r.Sentry.CaptureJobFailure(telemetry.JobFailure{Job: j.Name(), Kind: j.Kind(), Err: runErr})
		return
	}
	for _, t := range failed {
		err := t.Err
		if err == nil {
			err = errors.New("failed")
		}
		r.Sentry.CaptureJobFailure(telemetry.JobFailure{Job: j.Name(), Kind: j.Kind(), Target: t.Name, Err: fmt.Errorf("%s %s: %w", j.Kind(), t.Name, err)})
	}
}

// recordTargets records each tracked target's attempt; it returns the state database's errors.
func (r *Runner) recordTargets(ctx context.Context, log zerolog.Logger, j Job, res Result, at time.Time) error {
	var errs []error
	backup := res.Drill == nil && res.Restore == nil // drills and restores have their own metrics
	for _, t := range res.Targets {
		for _, p := range t.Phases {
			if backup {
				r.Metrics.BackupPhase.WithLabelValues(j.Name(), t.Name, p.Name).Set(p.seconds())
			}
		}
		tl := log.With().Str("target", t.Name).Logger()
		switch t.Status {
		case TargetFailed:
			tl.Error().Err(t.Err).Msg("target failed")
		case TargetSkipped:
			tl.Info().Str("note", t.Note).Msg("target skipped")
		default:
			tl.Info().Str("key", t.Key).Int64("bytes", t.Bytes).Int64("duration_ms", t.Duration.Milliseconds()).Msg("target done")
		}
		if t.Status == TargetOK && t.Bytes > 0 && t.Duration > 0 && backup {
			r.Metrics.Throughput.WithLabelValues(j.Name(), t.Name).Set(float64(t.Bytes) / t.Duration.Seconds())
		}
		if t.Status == TargetSkipped && t.SkipReason != "" {
			r.Metrics.TargetSkipped.WithLabelValues(j.Name(), t.SkipReason).Inc()
		}
		if !t.Tracked || (t.Status == TargetSkipped && !t.Current) {
			continue
		}
		a := state.BackupAttempt{Target: t.Name, Job: j.Name(), NodeID: r.NodeID, Kind: t.StatusKind, At: at, Success: t.Status == TargetOK || t.Current, SizeBytes: t.Bytes, Path: t.Key}
		if t.Err != nil {
			a.Error = t.Err.Error()
		}
		if err := r.State.RecordBackup(ctx, a); err != nil {
			tl.Error().Err(err).Msg("cannot record backup status")
			errs = append(errs, err)
			a.Success = false // an attempt that cannot be recorded is not a success
		}
		prev, _ := r.Metrics.Backups.GetFor(j.Name(), t.Name)
		ts := metrics.TargetState{Job: j.Name(), Kind: t.StatusKind, Node: r.NodeID, LastSuccess: prev.LastSuccess, SizeBytes: prev.SizeBytes, LastOK: a.Success, At: at}
		if a.Success {
			ts.LastSuccess, ts.SizeBytes = at, t.Bytes
		}
		r.Metrics.Backups.Set(t.Name, ts)
	}
	return errors.Join(errs...)
}

// recordChecks exports drill and verification results and stores their reports.
func (r *Runner) recordChecks(ctx context.Context, log zerolog.Logger, j Job, runID int64, res Result, outcome string, runErr error, at time.Time) {
	m := r.Metrics
	if _, drill := j.(Drill); drill && res.Drill == nil && (outcome == state.OutcomeFailure || outcome == state.OutcomeTimeout) {
		// Failed before it restored anything: a failed drill, with nothing measured (the RTO
		// gauges keep the last measurement), and a report saying so for the drill alert.
		m.DrillLastResult.WithLabelValues(j.Name()).Set(0)
		if len(res.ReportJSON) == 0 {
			msg := ""
			if runErr != nil {
				msg = runErr.Error()
			}
			res.ReportJSON, _ = json.Marshal(map[string]any{"drill": j.Name(), "passed": false, "error": msg})
		}
	}
	if d := res.Drill; d != nil {
		m.DrillRTO.WithLabelValues(j.Name()).Set(d.RTO.Seconds())
		m.DrillRTOTarget.WithLabelValues(j.Name()).Set(d.RTOTarget.Seconds())
		m.DrillPhase.DeletePartialMatch(map[string]string{"drill": j.Name()})
		for _, t := range res.Targets {
			for _, p := range t.Phases {
				m.DrillPhase.WithLabelValues(j.Name(), t.Name, p.Name).Set(p.seconds())
			}
		}
		passed := d.Passed && outcome == state.OutcomeSuccess
		if passed {
			m.DrillLastResult.WithLabelValues(j.Name()).Set(1)
			m.DrillLastSuccess.WithLabelValues(j.Name()).Set(float64(at.UnixMilli()) / 1000)
		} else {
			m.DrillLastResult.WithLabelValues(j.Name()).Set(0)
		}
	}
	if v := res.Verify; v != nil {
		m.OffsiteMissing.WithLabelValues(j.Name()).Set(float64(v.Missing))
		m.OffsiteMismatched.WithLabelValues(j.Name()).Set(float64(v.Mismatched))
		if outcome == state.OutcomeSuccess {
			m.OffsiteLastVerified.WithLabelValues(j.Name()).Set(float64(at.UnixMilli()) / 1000)
		}
	}
	if p := res.Prune; p != nil && !p.DryRun {
		m.PruneDeleted.WithLabelValues(j.Name()).Add(float64(p.Deleted))
		m.PruneBytesFreed.WithLabelValues(j.Name()).Add(float64(p.BytesFreed))
		m.PruneKept.WithLabelValues(j.Name()).Set(float64(p.Kept))
		m.PruneRefused.WithLabelValues(j.Name()).Set(float64(p.Refused))
		m.PruneForeign.WithLabelValues(j.Name()).Set(float64(p.Foreign))
	}
	if len(res.ReportJSON) > 0 {
		err := r.State.SaveReport(ctx, state.Report{RunID: runID, Job: j.Name(), Kind: j.Kind(), CreatedAt: at, Passed: outcome == state.OutcomeSuccess, Body: string(res.ReportJSON)})
		if err != nil {
			log.Error().Err(err).Msg("cannot store report")
		}
	}
}

// keepVanished turns a run that found none of its job's targets (a Retire with nothing present)
// into a failure of each target the job backed up before, and retires none: every instance or
// container vanishing at once is what an unmounted volume or the wrong Docker engine looks like,
// not a job with nothing left to do. One target of several gone is retired as usual.
func (r *Runner) keepVanished(ctx context.Context, job string, res Result) Result {
	if res.Retire == nil || len(res.Retire.Present) > 0 {
		return res
	}
	all, err := r.State.ListBackups(ctx, time.Now(), time.Hour)
	if err != nil {
		return res // retiring reads the same rows and fails the same way
	}
	kind := res.Retire.Kind
	gone := fmt.Errorf("not found, and neither was any other %s target of the job: kept, not retired "+
		"(an unmounted volume or another Docker engine looks like this; remove the job if every target is really gone)", kind)
	kept := false
	for _, b := range all {
		if b.Kind == kind && (b.Job == job || b.Job == "") {
			res.Targets = append(res.Targets, TargetResult{Name: b.ContainerID, Status: TargetFailed, Tracked: true, StatusKind: kind, Err: gone})
			kept = true
		}
	}
	if kept {
		res.Retire = nil
	}
	return res
}

// retire stops tracking targets that no longer exist.
func (r *Runner) retire(ctx context.Context, log zerolog.Logger, job string, res Result, at time.Time) {
	if res.Retire == nil {
		return
	}
	gone, err := r.State.RetireMissing(ctx, job, res.Retire.Kind, res.Retire.Present, at)
	if err != nil {
		log.Error().Err(err).Msg("cannot retire vanished targets")
	}
	for _, name := range gone {
		r.Metrics.ForgetTarget(job, name)
		r.Metrics.Backups.DeleteFor("", name)
		log.Info().Str("target", name).Msg("target no longer exists; stopped tracking it")
	}
}

func phaseMap(ps []Phase) map[string]float64 {
	out := make(map[string]float64, len(ps))
	for _, p := range ps {
		out[p.Name] += p.seconds()
	}
	return out
}

// safeRun runs the job, turning a panic into an error so one bad job never stops the daemon.
func safeRun(ctx context.Context, j Job) (res Result, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic: %v\n%s", p, debug.Stack())
		}
	}()
	return j.Run(ctx)
}
