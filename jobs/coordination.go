package jobs

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/go-co-op/gocron/v2"
)

// Scopes of a job across the fleet.
const (
	// ScopeNode runs the job on every node that configures it (exports, snapshots).
	ScopeNode = "node"
	// ScopePlatform runs the job once across the fleet per scheduled time (bucket-wide jobs).
	ScopePlatform = "platform"
)

// Coordinator is what the scheduler needs from the fleet's coordination engine (PostgreSQL in
// opsd) to run platform-scoped jobs once per scheduled time.
type Coordinator interface {
	// Claim durably records that this node runs job's tick scheduled at; false when another
	// node claimed it.
	Claim(ctx context.Context, job string, scheduled time.Time) (bool, error)
	// Finish records how a claimed tick ended.
	Finish(ctx context.Context, job string, scheduled time.Time, outcome string) error
	// Release gives back a claimed tick whose run never started.
	Release(ctx context.Context, job string, scheduled time.Time) error
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

// runPlatform runs a platform-scoped tick once across the fleet: claim the tick (durably), take
// the job's fleet-wide lock, run with a context that is cancelled when the lock's session is
// lost, and record the tick's outcome.
func (s *Scheduler) runPlatform(ctx context.Context, sp Spec, trigger string, now time.Time) {
	name, kind := sp.Job.Name(), sp.Job.Kind()
	tick := tickOf(sp, now)
	log := s.runner.Log.With().Str("job", name).Str("kind", kind).Time("tick", tick).Logger()
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
	lease, err := s.Coord.TryLock(ctx, "job:"+name)
	if err != nil {
		reason := SkipCoordination
		if errors.Is(err, ErrHeldElsewhere) {
			reason = "overlap"
			s.Coord.Finish(context.WithoutCancel(ctx), name, tick, "skipped_overlap")
		} else {
			s.Coord.Release(context.WithoutCancel(ctx), name, tick)
		}
		s.runner.Metrics.JobSkipped.WithLabelValues(name, kind, reason).Inc()
		log.Warn().Err(err).Msg("platform job skipped")
		return
	}
	o := s.runFenced(ctx, sp, trigger, lease)
	outcome := o.Run.Outcome
	if outcome == "" {
		outcome = "not_started"
	}
	s.Coord.Finish(context.WithoutCancel(ctx), name, tick, outcome)
}

// runFenced runs the job while lease is held; losing the lease cancels the run.
func (s *Scheduler) runFenced(ctx context.Context, sp Spec, trigger string, lease Lease) Outcome {
	defer lease.Release()
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
	return s.runner.Run(rctx, sp.Job, sp.Timeout, trigger)
}

// triggerPlatform starts a manual run of a platform-scoped job under its fleet-wide lock:
// ErrHeldElsewhere when another node runs it.
func (s *Scheduler) triggerPlatform(ctx context.Context, sp Spec) error {
	lease, err := s.Coord.TryLock(ctx, "job:"+sp.Job.Name())
	if err != nil {
		return fmt.Errorf("trigger %s: %w", sp.Job.Name(), err)
	}
	go s.runFenced(ctx, sp, TriggerManual, lease)
	return nil
}

// lastTick is the newest scheduled time at or before now (now itself when there is none).
func lastTick(sp Spec, now time.Time) time.Time {
	if sp.Schedule.Every > 0 {
		return now.Truncate(sp.Schedule.Every)
	}
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
