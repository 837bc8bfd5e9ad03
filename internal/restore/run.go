package restore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/wopr-network/opsd/internal/postgres"
	"github.com/wopr-network/opsd/internal/state"
)

// Restore kinds; a restore's run in the run history has kind "restore_" + kind.
const (
	KindDB        = "db"
	KindContainer = "container"
	KindSnapshot  = "snapshot"
	KindNode      = "node"
	KindPostgres  = "postgres"
)

// Kinds lists every restore kind.
var Kinds = []string{KindDB, KindContainer, KindSnapshot, KindNode, KindPostgres}

// Outcomes lists every way a restore ends (besides running).
var Outcomes = []string{state.OutcomeSuccess, state.OutcomeFailure, state.OutcomeRolledBack, state.OutcomeRollbackFailed,
	state.OutcomeCanceled, state.OutcomeTimeout, state.OutcomeInterrupted}

// RolledBackError is a restore that failed and put back what was there.
type RolledBackError struct {
	Err error
	// What is as it was again ("every database is as it was").
	What string
}

func (e *RolledBackError) Error() string { return fmt.Sprintf("%v (rolled back: %s)", e.Err, e.What) }

// Unwrap returns the failure that caused the rollback.
func (e *RolledBackError) Unwrap() error { return e.Err }

// RollbackFailedError is a restore that failed and could not put everything back: the
// operator must finish the rollback by hand from the safety copies Where names.
type RollbackFailedError struct {
	Err      error
	Rollback error
	Where    string
}

func (e *RollbackFailedError) Error() string {
	return fmt.Sprintf("%v; ROLLBACK INCOMPLETE: %v (%s)", e.Err, e.Rollback, e.Where)
}

// Unwrap returns the failure that caused the rollback.
func (e *RollbackFailedError) Unwrap() error { return e.Err }

// Outcome classifies how a restore ended from its error and its context: success, canceled,
// timeout, rolled_back, rollback_failed or failure.
func Outcome(ctx context.Context, err error) string {
	var rb *RolledBackError
	var rf *RollbackFailedError
	switch {
	case err == nil:
		return state.OutcomeSuccess
	case errors.As(err, &rf):
		return state.OutcomeRollbackFailed // whatever stopped it, a person must finish it
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return state.OutcomeTimeout
	case ctx.Err() != nil:
		return state.OutcomeCanceled
	case errors.As(err, &rb):
		return state.OutcomeRolledBack
	}
	return state.OutcomeFailure
}

// Phase is a named, timed step of a restore.
type Phase struct {
	Name     string
	Duration time.Duration
}

// TargetReport is one target of a restore with several (the containers of a node restore).
type TargetReport struct {
	Name     string
	Key      string
	Outcome  string // restored, skipped, failed, planned
	Err      error
	Bytes    int64
	Phases   []Phase
	Duration time.Duration
}

// Report is what a restore run did.
type Report struct {
	Outcome  string
	Summary  string
	Bytes    int64
	Downtime time.Duration
	// RTO is the time from the start of the restore until the service was back.
	RTO     time.Duration
	Phases  []Phase
	Safety  []string
	Targets []TargetReport
}

// Tracker is what a running restore reports through: timed phases, progress lines and the
// safety copies it takes (recorded in the state database before the step that needs them).
// A nil Tracker does nothing.
type Tracker struct {
	mu     sync.Mutex
	phases []Phase
	cur    string
	start  time.Time
	safety []string
	run    *Run
	print  func(string)
}

// PrintTracker is a Tracker that records nothing and prints progress lines (dry runs).
func PrintTracker(print func(string)) *Tracker { return &Tracker{print: print} }

// Phase ends the current phase and starts the named one ("" only ends it).
func (t *Tracker) Phase(name string) {
	if t == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	now := time.Now()
	if t.cur != "" {
		t.phases = append(t.phases, Phase{Name: t.cur, Duration: now.Sub(t.start)})
	}
	t.cur, t.start = name, now
}

// Phases ends the current phase and returns them all.
func (t *Tracker) Phases() []Phase {
	if t == nil {
		return nil
	}
	t.Phase("")
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]Phase(nil), t.phases...)
}

// Safety records a safety copy (a path, a key, the name an original is kept under). It returns
// an error when it cannot be recorded: the restore must not take its destructive step then.
func (t *Tracker) Safety(ctx context.Context, note string) error {
	if t == nil {
		return nil
	}
	t.mu.Lock()
	t.safety = append(t.safety, note)
	all := strings.Join(t.safety, "; ")
	t.mu.Unlock()
	if t.run == nil || t.run.id == 0 {
		return nil
	}
	if err := t.run.State.RestoreSafety(context.WithoutCancel(ctx), t.run.id, all); err != nil {
		return fmt.Errorf("%w (nothing was changed)", err)
	}
	return nil
}

func (t *Tracker) safetyList() []string {
	if t == nil {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]string(nil), t.safety...)
}

// Progress reports a step: printed by the CLI, kept as the restore's progress line.
func (t *Tracker) Progress(line string) {
	if t == nil {
		return
	}
	if t.run == nil {
		if t.print != nil {
			t.print(line)
		}
		return
	}
	line = t.run.redact(line)
	if t.run.Print != nil {
		t.run.Print(line)
	}
	if t.run.id != 0 {
		t.run.State.RestoreProgress(context.Background(), t.run.id, line)
	}
}

// Run is one restore of any kind, shaped like a job (Name, JobKind, Execute): the caller runs it
// through the jobs Runner, which records it in the run history, times it, counts it, reports a
// failure to Sentry and bounds it; the Run keeps the restore's own record (what, who, safety
// copies, downtime, outcome) in the state database.
type Run struct {
	Kind, Target, Key, RequestedBy string
	State                          *state.Store
	// Redact removes secrets from recorded error and progress text.
	Redact func(string) string
	// Print receives progress lines (the CLI prints them).
	Print func(string)
	// Do performs the restore.
	Do func(ctx context.Context, t *Tracker) (Report, error)

	id   int64
	once sync.Once
}

// Name is the run's job name: "restore_KIND:TARGET".
func (r *Run) Name() string { return "restore_" + r.Kind + ":" + r.Target }

// JobKind is the run's kind in the run history: "restore_KIND".
func (r *Run) JobKind() string { return "restore_" + r.Kind }

// ID is the restore's id in the state database (0 before Begin).
func (r *Run) ID() int64 { return r.id }

func (r *Run) redact(s string) string {
	if r.Redact == nil {
		return s
	}
	return r.Redact(s)
}

// Begin records the restore as running (Execute does when it was not called).
func (r *Run) Begin(ctx context.Context) (int64, error) {
	if r.id != 0 {
		return r.id, nil
	}
	id, err := r.State.StartRestore(ctx, state.Restore{Kind: r.Kind, Target: r.Target, Key: r.Key, RequestedBy: r.RequestedBy, StartedAt: time.Now()})
	if err != nil {
		return 0, err
	}
	r.id = id
	return id, nil
}

// Execute performs the restore and records how it ended.
func (r *Run) Execute(ctx context.Context) (Report, error) {
	started := time.Now()
	if _, err := r.Begin(ctx); err != nil {
		return Report{Outcome: state.OutcomeFailure}, fmt.Errorf("restore %s %s: %w (nothing was changed)", r.Kind, r.Target, err)
	}
	if id := state.RunIDFrom(ctx); id != 0 {
		r.State.RestoreRun(ctx, r.id, id)
	}
	t := &Tracker{run: r}
	rep, err := r.safeDo(ctx, t)
	rep.Phases = append(t.Phases(), rep.Phases...) // tracked, then those Do measured itself
	rep.Safety = t.safetyList()
	rep.Outcome = Outcome(ctx, err)
	if rep.RTO == 0 {
		rep.RTO = time.Since(started)
	}
	r.finish(ctx, rep, err)
	return rep, err
}

func (r *Run) safeDo(ctx context.Context, t *Tracker) (rep Report, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("restore %s %s: panic: %v", r.Kind, r.Target, p)
		}
	}()
	return r.Do(ctx, t)
}

func (r *Run) finish(ctx context.Context, rep Report, err error) {
	r.once.Do(func() {
		if r.id == 0 {
			return
		}
		fin := time.Now()
		rec := state.Restore{ID: r.id, FinishedAt: &fin, DowntimeMS: rep.Downtime.Milliseconds(), Outcome: rep.Outcome,
			Safety: strings.Join(rep.Safety, "; "), Progress: r.redact(rep.Summary)}
		if err != nil {
			rec.Error = r.redact(err.Error())
		}
		r.State.FinishRestore(context.WithoutCancel(ctx), rec)
	})
}

// Abort records a restore that never ran (refused by the Runner, or shutting down).
func (r *Run) Abort(ctx context.Context, err error) {
	if err == nil {
		return
	}
	r.finish(ctx, Report{Outcome: Outcome(ctx, err)}, err)
}

// Recover marks the restores a process that is gone left running as interrupted and returns
// them; each one's error names the safety copies it had made and how to finish or roll back.
func Recover(ctx context.Context, st *state.Store) ([]state.Restore, error) {
	return st.MarkInterruptedRestores(ctx, time.Now(), InterruptedMessage)
}

// InterruptedMessage says what an interrupted restore left and how to finish or roll it back.
func InterruptedMessage(r state.Restore) string {
	msg := fmt.Sprintf("restore %d (%s %s from %s, started %s by %s) was interrupted: opsd stopped during it", r.ID, r.Kind, r.Target, r.Key,
		r.StartedAt.UTC().Format(time.RFC3339), r.RequestedBy)
	if r.Safety == "" {
		msg += "; it had taken no safety copy, so nothing had been replaced"
	} else {
		msg += "; safety copies: " + r.Safety
	}
	switch r.Kind {
	case KindDB:
		msg += ". To finish: run opsd restore db again. To roll back: stop the API, copy each NAME.db.pre-restore-* safety copy over its database (remove its -wal and -shm), start the API"
	case KindContainer:
		msg += ". To finish: run opsd restore container --replace again. To roll back: remove the new container if one exists, rename the kept NAME-pre-restore-* container back to NAME and start it (or restore its safety export)"
	case KindSnapshot:
		msg += ". To finish: run opsd restore snapshot again. To roll back: move the kept INSTANCE.pre-restore-* directory back to INSTANCE"
	case KindPostgres:
		db := postgres.Quote(r.Target)
		msg += fmt.Sprintf(". To roll back: if no database is named %[1]s, rename the kept %[1]s_pre_restore_* database back to %[1]s "+
			"(if both exist, the swap had completed: %[1]s is the restored one); let sessions in again: ALTER DATABASE %[2]s ALLOW_CONNECTIONS true; "+
			"drop the database the restore created (named above) if it is not the live one; or restore the safety dump. "+
			"To finish: roll back, then run opsd restore postgres again", r.Target, db)
	case KindNode:
		msg += ". To finish: run the node restore again (containers already restored are skipped)"
	}
	return msg
}
