package jobs

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/go-co-op/gocron/v2"

	"github.com/wopr-network/opsd/internal/coord"
	"github.com/wopr-network/opsd/internal/state"
)

// Scopes of a job across the fleet.
const (
	// ScopeNode runs the job on every node that configures it (exports, snapshots).
	ScopeNode = "node"
	// ScopePlatform runs the job once across the fleet per scheduled time (bucket-wide jobs).
	ScopePlatform = "platform"
)

// Coordinator is what the scheduler needs from the fleet's coordination engine (PostgreSQL in
// opsd) to run platform-scoped jobs once per scheduled time. A tick is run under the job's
// fleet-wide lock: TryLock, then Claim, run, Finish, and only then release the lock.
type Coordinator interface {
	// Claim durably records that this node runs job's tick scheduled at (the caller holds the
	// job's lock); false when the tick was claimed already.
	Claim(ctx context.Context, job string, scheduled time.Time) (bool, error)
	// Finish records how a claimed tick ended.
	Finish(ctx context.Context, job string, scheduled time.Time, outcome string) error
	// Interrupted records that this node's run of a claimed tick was cancelled because it lost
	// its coordination session; the tick stays open for another node to retry.
	Interrupted(ctx context.Context, job string, scheduled time.Time) error
	// Retake takes over another node's lost tick (the caller holds the job's lock): true when
	// this node is to run it (at most one retry per tick, and only while it is the newest).
	Retake(ctx context.Context, job string, scheduled time.Time) (bool, error)
	// TryLock takes a fleet-wide lock for the length of a run; the error wraps ErrHeldElsewhere
	// when another node holds it.
	TryLock(ctx context.Context, key string) (Lease, error)
}

// Lease is a held fleet-wide lock. Lost is closed when the coordination session is lost: the
// lock is gone, so the run it protects is cancelled (fencing).
type Lease interface {
	Lost() <-chan struct{}
	Release()
}

// ErrHeldElsewhere: another node holds the lock (runs the job).
var ErrHeldElsewhere = errors.New("running on another node")

// ErrCoordinationDown: the coordination database cannot be reached; platform-scoped jobs do not
// run uncoordinated.
var ErrCoordinationDown = errors.New("coordination database unavailable")

// TriggerRetry: a platform tick retried after the node running it lost it.
const TriggerRetry = "retry"

// Skip reasons of platform-scoped runs (opsd_job_skipped_total{reason}).
const (
	SkipCoordination = "coordination" // the coordination database was down
	SkipElsewhere    = "elsewhere"    // another node claimed the tick
)

// tickOf is the scheduled time a fire at now stands for, the same on every node whatever its
// clock skew (up to half a period): cron ticks to the minute, @every ticks to multiples of the
// interval since the Unix epoch (platform-scoped @every jobs are started on those multiples).
func tickOf(sp Spec, now time.Time) time.Time {
	if sp.Schedule.Every > 0 {
		return now.Round(sp.Schedule.Every).UTC()
	}
	return now.Round(time.Minute).UTC()
}

// alignedStart is the first multiple of every since the epoch after now: platform-scoped @every
// jobs fire on those instants on every node, so their ticks line up.
func alignedStart(every time.Duration, now time.Time) gocron.JobOption {
	next := now.Truncate(every).Add(every)
	return gocron.WithStartAt(gocron.WithStartDateTime(next))
}

// runPlatform runs a platform-scoped tick once across the fleet: take the job's fleet-wide
// lock, claim the tick (durably), run with a context that is cancelled when the lock's session
// is lost, and record the tick's outcome before letting go of the lock.
func (s *Scheduler) runPlatform(ctx context.Context, sp Spec, trigger string, now time.Time) {
	name, kind := sp.Job.Name(), sp.Job.Kind()
	tick := tickOf(sp, now)
	log := s.runner.Log.With().Str("job", name).Str("kind", kind).Time("tick", tick).Logger()
	lease, err := s.Coord.TryLock(ctx, jobLock(name))
	if err != nil {
		reason := SkipCoordination
		if errors.Is(err, ErrHeldElsewhere) {
			// Another node runs this tick, or an earlier one still.
			reason = SkipElsewhere
			log.Debug().Msg("the job runs on another node")
		} else {
			log.Error().Err(err).Msg("platform job skipped: the coordination database is unavailable (it never runs uncoordinated)")
		}
		s.runner.Metrics.JobSkipped.WithLabelValues(name, kind, reason).Inc()
		return
	}
	defer lease.Release()
	won, err := s.Coord.Claim(ctx, name, tick)
	if err != nil {
		s.runner.Metrics.JobSkipped.WithLabelValues(name, kind, SkipCoordination).Inc()
		log.Error().Err(err).Msg("platform job skipped: the coordination database is unavailable (it never runs uncoordinated)")
		return
	}
	if !won {
		s.runner.Metrics.JobSkipped.WithLabelValues(name, kind, SkipElsewhere).Inc()
		log.Debug().Msg("tick claimed by another node")
		return
	}
	s.runClaimed(ctx, sp, trigger, tick, lease)
}

// runClaimed runs a claimed tick under lease and records how it ended: a run cancelled because
// the session was lost leaves the claim open (interrupted) for another node to retry.
func (s *Scheduler) runClaimed(ctx context.Context, sp Spec, trigger string, tick time.Time, lease Lease) {
	name := sp.Job.Name()
	o := s.runFenced(ctx, sp, trigger, lease)
	rec := context.WithoutCancel(ctx)
	select {
	case <-lease.Lost():
		if o.Run.Outcome != state.OutcomeSuccess {
			if err := s.Coord.Interrupted(rec, name, tick); err != nil {
				s.runner.Log.Debug().Err(err).Str("job", name).Msg("cannot record the interrupted tick (another node retries it anyway)")
			}
			return
		}
	default:
	}
	outcome := o.Run.Outcome
	if outcome == "" {
		outcome = "not_started"
	}
	if err := s.Coord.Finish(rec, name, tick, outcome); err != nil {
		s.runner.Log.Error().Err(err).Str("job", name).Msg("cannot record the tick's outcome in the coordination database")
	}
}

// RetryLost retries a platform tick whose node lost its run (killed, or its coordination
// session gone), in the background: under the job's lock, and only if the coordinator lets
// this node take the tick over (once per tick, while no newer tick was claimed).
func (s *Scheduler) RetryLost(name string, tick time.Time) {
	s.mu.Lock()
	e, ok := s.entries[name]
	var sp Spec
	if ok {
		sp = e.spec
	}
	ctx := s.ctx
	started := s.started
	s.mu.Unlock()
	if !ok || !started || !sp.Enabled || !s.platform(sp) || s.runner.IsRunning(name) {
		return
	}
	go func() {
		lease, err := s.Coord.TryLock(ctx, jobLock(name))
		if err != nil {
			return // running elsewhere (a newer tick, or another node's retry), or no database
		}
		defer lease.Release()
		log := s.runner.Log.With().Str("job", name).Time("tick", tick).Logger()
		again, err := s.Coord.Retake(ctx, name, tick)
		if err != nil {
			log.Warn().Err(err).Msg("cannot take over a lost tick")
			return
		}
		if !again {
			log.Warn().Msg("a tick lost with its node is not retried (retried once already, or a newer tick ran)")
			return
		}
		log.Warn().Msg("retrying a tick whose node lost its run")
		s.runClaimed(ctx, sp, TriggerRetry, tick, lease)
	}()
}

// runFenced runs the job while lease is held; losing the lease cancels the run. The caller
// releases the lease.
func (s *Scheduler) runFenced(ctx context.Context, sp Spec, trigger string, lease Lease) Outcome {
	rctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-lease.Lost():
			s.runner.Log.Error().Str("job", sp.Job.Name()).Msg("lost the coordination session: cancelling the platform run so that no two nodes run it at once")
			cancel(ErrCoordinationDown)
		case <-done:
		}
	}()
	// A run cancelled for the lost session is recorded (and counted) as interrupted by the
	// runner, which sees the cause: like a run its process did not survive, it did not finish,
	// and a scheduled tick is retried elsewhere.
	return s.runner.Run(rctx, sp.Job, sp.Timeout, trigger)
}

// triggerPlatform starts a manual run of a platform-scoped job under its fleet-wide lock:
// ErrHeldElsewhere when another node runs it.
func (s *Scheduler) triggerPlatform(ctx context.Context, sp Spec) error {
	lease, err := s.Coord.TryLock(ctx, jobLock(sp.Job.Name()))
	if err != nil {
		return fmt.Errorf("trigger %s: %w", sp.Job.Name(), err)
	}
	go func() {
		defer lease.Release()
		s.runFenced(ctx, sp, TriggerManual, lease)
	}()
	return nil
}

// jobLock is the fleet-wide lock a platform job's runs hold.
func jobLock(name string) string { return coord.JobLock(name) }

// lastTick is the newest scheduled time at or before now (now itself when there is none). A
// cron schedule is read in the job's zone, as gocron fires it, so the tick is the one the
// scheduled fires claim.
func lastTick(sp Spec, now time.Time) time.Time {
	if sp.Schedule.Every > 0 {
		return now.Truncate(sp.Schedule.Every)
	}
	now = now.In(loc(sp))
	iv := sp.Schedule.Interval(now)
	if iv <= 0 {
		return now
	}
	t := sp.Schedule.Next(now.Add(-iv - time.Minute))
	if t.After(now) {
		return now
	}
	for n := sp.Schedule.Next(t); !n.After(now); n = sp.Schedule.Next(n) {
		t = n
	}
	return t
}

// PostgresCoordinator adapts the PostgreSQL coordinator to the scheduler's interface.
func PostgresCoordinator(p *coord.Postgres) Coordinator { return pgCoordinator{p} }

type pgCoordinator struct{ p *coord.Postgres }

func (c pgCoordinator) Claim(ctx context.Context, job string, at time.Time) (bool, error) {
	ok, err := c.p.Claim(ctx, job, at)
	return ok, CoordErr(err)
}

func (c pgCoordinator) Finish(ctx context.Context, job string, at time.Time, outcome string) error {
	return CoordErr(c.p.Finish(ctx, job, at, outcome))
}

func (c pgCoordinator) Interrupted(ctx context.Context, job string, at time.Time) error {
	return CoordErr(c.p.Interrupted(ctx, job, at))
}

func (c pgCoordinator) Retake(ctx context.Context, job string, at time.Time) (bool, error) {
	ok, err := c.p.Retake(ctx, job, at)
	return ok, CoordErr(err)
}

func (c pgCoordinator) TryLock(ctx context.Context, key string) (Lease, error) {
	l, err := c.p.TryLock(ctx, key)
	if err != nil {
		return nil, CoordErr(err)
	}
	return l, nil
}

// CoordErr maps the coordinator's errors to the scheduler's: ErrHeldElsewhere,
// ErrCoordinationDown.
func CoordErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, coord.ErrHeld):
		return fmt.Errorf("%w: %w", ErrHeldElsewhere, err)
	case errors.Is(err, coord.ErrUnavailable):
		return fmt.Errorf("%w: %w", ErrCoordinationDown, err)
	}
	return err
}

// PlatformLock takes a platform job's fleet-wide lock for a run outside the daemon (the CLI):
// ErrHeldElsewhere when another node runs it, ErrCoordinationDown when the database cannot be
// reached (a platform job never runs uncoordinated). release also closes p.
func PlatformLock(ctx context.Context, p *coord.Postgres, name string) (release func(), err error) {
	lease, err := p.TryLock(ctx, jobLock(name))
	if err != nil {
		p.Close()
		return nil, fmt.Errorf("lock %s: %w", name, CoordErr(err))
	}
	return func() { lease.Release(); p.Close() }, nil
}
