package state

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Restore is one recorded restore.
type Restore struct {
	ID          int64      `json:"id"`
	Kind        string     `json:"kind"` // db, container, snapshot
	Target      string     `json:"target"`
	Key         string     `json:"key"`
	RequestedBy string     `json:"requestedBy"`
	Safety      string     `json:"safety,omitempty"` // where the safety copy went
	StartedAt   time.Time  `json:"startedAt"`
	FinishedAt  *time.Time `json:"finishedAt"`
	DowntimeMS  int64      `json:"downtimeMs"`
	Outcome     string     `json:"outcome"` // running, success, failure, rolled_back
	Progress    string     `json:"progress,omitempty"`
	Error       string     `json:"error,omitempty"`
}

// StartRestore records a restore that begins.
func (s *Store) StartRestore(ctx context.Context, r Restore) (int64, error) {
	res, err := s.db.ExecContext(ctx, `INSERT INTO restores (kind, target, key, requested_by, started_at, outcome, progress) VALUES (?, ?, ?, ?, ?, 'running', ?)`,
		r.Kind, r.Target, r.Key, r.RequestedBy, r.StartedAt.UnixMilli(), r.Progress)
	if err != nil {
		return 0, fmt.Errorf("record restore of %s: %w", r.Target, err)
	}
	return res.LastInsertId()
}

// RestoreProgress updates a running restore's progress line.
func (s *Store) RestoreProgress(ctx context.Context, id int64, progress string) error {
	_, err := s.db.ExecContext(ctx, `UPDATE restores SET progress=? WHERE id=?`, progress, id)
	return err
}

// FinishRestore records how a restore ended.
func (s *Store) FinishRestore(ctx context.Context, r Restore) error {
	_, err := s.db.ExecContext(ctx, `UPDATE restores SET finished_at=?, downtime_ms=?, outcome=?, safety=?, error=?, progress=? WHERE id=?`,
		ms(*r.FinishedAt), r.DowntimeMS, r.Outcome, nullString(r.Safety), nullString(r.Error), nullString(r.Progress), r.ID)
	if err != nil {
		return fmt.Errorf("record restore %d: %w", r.ID, err)
	}
	return nil
}

// GetRestore returns one restore.
func (s *Store) GetRestore(ctx context.Context, id int64) (Restore, error) {
	var r Restore
	var started int64
	var finished, downtime sql.NullInt64
	var safety, progress, e sql.NullString
	err := s.db.QueryRowContext(ctx, `SELECT id, kind, target, key, requested_by, safety, started_at, finished_at, downtime_ms, outcome, progress, error FROM restores WHERE id=?`, id).
		Scan(&r.ID, &r.Kind, &r.Target, &r.Key, &r.RequestedBy, &safety, &started, &finished, &downtime, &r.Outcome, &progress, &e)
	if errors.Is(err, sql.ErrNoRows) {
		return Restore{}, ErrNotFound
	}
	if err != nil {
		return Restore{}, fmt.Errorf("read restore %d: %w", id, err)
	}
	r.StartedAt = time.UnixMilli(started).UTC()
	r.FinishedAt = fromMS(finished)
	r.DowntimeMS, r.Safety, r.Progress, r.Error = downtime.Int64, safety.String, progress.String, e.String
	return r, nil
}
