package state

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"strconv"
	"syscall"
	"time"
)

// Restore outcomes besides the run outcomes (success, failure, timeout, canceled, interrupted).
const (
	// OutcomeRolledBack: the restore failed and put back what was there.
	OutcomeRolledBack = "rolled_back"
	// OutcomeRollbackFailed: the restore failed and could not put everything back.
	OutcomeRollbackFailed = "rollback_failed"
)

// Restore is one recorded restore.
type Restore struct {
	ID          int64  `json:"id"`
	Kind        string `json:"kind"` // db, container, snapshot, node, postgres
	Target      string `json:"target"`
	Key         string `json:"key"`
	RequestedBy string `json:"requestedBy"`
	// Safety names the safety copies (paths, keys, kept names) taken so far, "; "-separated.
	// Each is recorded before the step that destroys what it keeps.
	Safety     string     `json:"safety,omitempty"`
	StartedAt  time.Time  `json:"startedAt"`
	FinishedAt *time.Time `json:"finishedAt"`
	DowntimeMS int64      `json:"downtimeMs"`
	// Outcome: running, success, failure, rolled_back, rollback_failed, canceled, timeout,
	// interrupted.
	Outcome  string `json:"outcome"`
	Progress string `json:"progress,omitempty"`
	Error    string `json:"error,omitempty"`
	// RunID is the restore's row in the run history (job_runs), 0 before its run started.
	RunID int64 `json:"runId,omitempty"`
}

// restoreLockPath is the file a running restore holds an flock on: the kernel drops it when
// the process dies, so a "running" row whose lock is free was cut short.
func (s *Store) restoreLockPath(id int64) string {
	return s.path + ".restore-" + strconv.FormatInt(id, 10) + ".lock"
}

// StartRestore records a restore that begins and holds its liveness lock (released by
// FinishRestore, or by the kernel when this process dies: MarkInterruptedRestores then
// reports the restore as interrupted).
func (s *Store) StartRestore(ctx context.Context, r Restore) (int64, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("record restore of %s: %w", r.Target, err)
	}
	defer tx.Rollback()
	res, err := tx.ExecContext(ctx, `INSERT INTO restores (kind, target, key, requested_by, started_at, outcome, progress, safety) VALUES (?, ?, ?, ?, ?, 'running', ?, ?)`,
		r.Kind, r.Target, r.Key, r.RequestedBy, r.StartedAt.UnixMilli(), r.Progress, nullString(r.Safety))
	if err != nil {
		return 0, fmt.Errorf("record restore of %s: %w", r.Target, err)
	}
	id, err := res.LastInsertId()
	if err != nil {
		return 0, fmt.Errorf("record restore of %s: %w", r.Target, err)
	}
	// The lock is held before the row is visible: no one sees it running without its lock.
	f, err := os.OpenFile(s.restoreLockPath(id), os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return 0, fmt.Errorf("record restore of %s: %w", r.Target, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return 0, fmt.Errorf("record restore of %s: lock %s: %w", r.Target, f.Name(), err)
	}
	if err := tx.Commit(); err != nil {
		f.Close()
		os.Remove(s.restoreLockPath(id))
		return 0, fmt.Errorf("record restore of %s: %w", r.Target, err)
	}
	s.restoreLocks.Store(id, f)
	return id, nil
}

// releaseRestore drops a restore's liveness lock and removes its file.
func (s *Store) releaseRestore(id int64) {
	if v, ok := s.restoreLocks.LoadAndDelete(id); ok {
		f := v.(*os.File)
		os.Remove(f.Name())
		f.Close()
	}
}

// RestoreProgress updates a running restore's progress line.
func (s *Store) RestoreProgress(ctx context.Context, id int64, progress string) error {
	if _, err := s.db.ExecContext(ctx, `UPDATE restores SET progress=? WHERE id=?`, progress, id); err != nil {
		return fmt.Errorf("record progress of restore %d: %w", id, err)
	}
	return nil
}

// RestoreSafety records the safety copies a running restore has taken (the whole list). A
// restore records them before its destructive step, so a crash after it still names them.
func (s *Store) RestoreSafety(ctx context.Context, id int64, safety string) error {
	if _, err := s.db.ExecContext(ctx, `UPDATE restores SET safety=? WHERE id=?`, nullString(safety), id); err != nil {
		return fmt.Errorf("record safety copies of restore %d: %w", id, err)
	}
	return nil
}

// RestoreRun links a restore to its row in the run history.
func (s *Store) RestoreRun(ctx context.Context, id, runID int64) error {
	if _, err := s.db.ExecContext(ctx, `UPDATE restores SET run_id=? WHERE id=?`, runID, id); err != nil {
		return fmt.Errorf("link restore %d to run %d: %w", id, runID, err)
	}
	return nil
}

// FinishRestore records how a restore ended and releases its liveness lock. A restore that is
// no longer running (marked interrupted meanwhile) is left as it is.
func (s *Store) FinishRestore(ctx context.Context, r Restore) error {
	defer s.releaseRestore(r.ID)
	_, err := s.db.ExecContext(ctx, `UPDATE restores SET finished_at=?, downtime_ms=?, outcome=?, safety=COALESCE(?, safety), error=?, progress=COALESCE(?, progress) WHERE id=? AND outcome='running'`,
		ms(*r.FinishedAt), r.DowntimeMS, r.Outcome, nullString(r.Safety), nullString(r.Error), nullString(r.Progress), r.ID)
	if err != nil {
		return fmt.Errorf("record restore %d: %w", r.ID, err)
	}
	return nil
}

// MarkInterruptedRestores marks the restores left "running" by a process that is gone (its
// liveness lock is free) as interrupted with the error msg(restore) gives, marks their runs in
// the run history interrupted too, and returns them. Restores of live processes (this one, a
// running CLI command, the daemon) are left alone.
func (s *Store) MarkInterruptedRestores(ctx context.Context, at time.Time, msg func(Restore) string) ([]Restore, error) {
	running, err := s.listRestores(ctx, `WHERE outcome='running'`, 1000)
	if err != nil {
		return nil, fmt.Errorf("mark interrupted restores: %w", err)
	}
	var out []Restore
	for _, r := range running {
		if _, mine := s.restoreLocks.Load(r.ID); mine {
			continue
		}
		f, err := os.OpenFile(s.restoreLockPath(r.ID), os.O_RDWR, 0)
		if err == nil {
			if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
				f.Close() // held: the restore is running in a live process
				continue
			}
		} else if !errors.Is(err, os.ErrNotExist) {
			return out, fmt.Errorf("mark interrupted restores: %w", err)
		}
		fin := at.UTC()
		r.Outcome, r.FinishedAt, r.Error = OutcomeInterrupted, &fin, msg(r)
		res, uerr := s.db.ExecContext(ctx, `UPDATE restores SET outcome=?, finished_at=?, error=? WHERE id=? AND outcome='running'`, r.Outcome, at.UnixMilli(), r.Error, r.ID)
		if f != nil {
			os.Remove(f.Name())
			f.Close()
		}
		if uerr != nil {
			return out, fmt.Errorf("mark restore %d interrupted: %w", r.ID, uerr)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			continue // it finished meanwhile
		}
		if r.RunID != 0 {
			if _, err := s.db.ExecContext(ctx, `UPDATE job_runs SET outcome=?, finished_at=?, error=? WHERE id=? AND outcome=?`,
				OutcomeInterrupted, at.UnixMilli(), r.Error, r.RunID, OutcomeRunning); err != nil {
				return out, fmt.Errorf("mark run %d of restore %d interrupted: %w", r.RunID, r.ID, err)
			}
		}
		out = append(out, r)
	}
	return out, nil
}

const restoreCols = `id, kind, target, key, requested_by, safety, started_at, finished_at, downtime_ms, outcome, progress, error, COALESCE(run_id, 0)`

func scanRestore(sc rowScanner) (Restore, error) {
	var r Restore
	var started int64
	var finished, downtime sql.NullInt64
	var safety, progress, e sql.NullString
	if err := sc.Scan(&r.ID, &r.Kind, &r.Target, &r.Key, &r.RequestedBy, &safety, &started, &finished, &downtime, &r.Outcome, &progress, &e, &r.RunID); err != nil {
		return Restore{}, err
	}
	r.StartedAt = time.UnixMilli(started).UTC()
	r.FinishedAt = fromMS(finished)
	r.DowntimeMS, r.Safety, r.Progress, r.Error = downtime.Int64, safety.String, progress.String, e.String
	return r, nil
}

// GetRestore returns one restore.
func (s *Store) GetRestore(ctx context.Context, id int64) (Restore, error) {
	r, err := scanRestore(s.db.QueryRowContext(ctx, `SELECT `+restoreCols+` FROM restores WHERE id=?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return Restore{}, ErrNotFound
	}
	if err != nil {
		return Restore{}, fmt.Errorf("read restore %d: %w", id, err)
	}
	return r, nil
}

// Restores returns the newest restores, newest first.
func (s *Store) Restores(ctx context.Context, limit int) ([]Restore, error) {
	return s.listRestores(ctx, ``, limit)
}

func (s *Store) listRestores(ctx context.Context, where string, limit int) ([]Restore, error) {
	out, err := queryAll(ctx, s, "list restores", scanRestore, `SELECT `+restoreCols+` FROM restores `+where+` ORDER BY id DESC LIMIT ?`, limit)
	if out == nil && err == nil {
		out = []Restore{} // the admin API's JSON lists no restores as [], not null
	}
	return out, err
}

type runIDKey struct{}

// WithRunID returns ctx carrying the id of the run (job_runs row) it belongs to.
func WithRunID(ctx context.Context, id int64) context.Context {
	return context.WithValue(ctx, runIDKey{}, id)
}

// RunIDFrom returns the run id WithRunID put in ctx, 0 when none.
func RunIDFrom(ctx context.Context) int64 {
	id, _ := ctx.Value(runIDKey{}).(int64)
	return id
}
