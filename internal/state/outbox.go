package state

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// The alert outbox: every notification an alert transition owes a receiver, written in the same
// transaction as the alert's new state, so a crash between the two cannot lose a notification
// (at-least-once delivery). A row stays pending until the receiver accepted it (sent) or the
// dispatcher gave up after its last retry (failed). The table lives outside the numbered
// migrations (CREATE TABLE IF NOT EXISTS at Open) so it merges independently of them.
const outboxSchema = `CREATE TABLE IF NOT EXISTS alert_outbox (
		id              INTEGER PRIMARY KEY AUTOINCREMENT,
		notifier        TEXT NOT NULL,
		alert           TEXT NOT NULL,
		payload         TEXT NOT NULL,
		status          TEXT NOT NULL DEFAULT 'pending',
		attempts        INTEGER NOT NULL DEFAULT 0,
		created_at      INTEGER NOT NULL,
		next_attempt_at INTEGER NOT NULL,
		last_error      TEXT,
		done_at         INTEGER
	);
	CREATE INDEX IF NOT EXISTS alert_outbox_status_next ON alert_outbox(status, next_attempt_at);`

// Outbox delivery states.
const (
	OutboxPending = "pending"
	OutboxSent    = "sent"
	OutboxFailed  = "failed"
)

// OutboxItem is one notification owed to one notifier.
type OutboxItem struct {
	ID            int64
	Notifier      string
	Alert         string
	Payload       string // the event, JSON
	Status        string
	Attempts      int
	CreatedAt     time.Time
	NextAttemptAt time.Time
	LastError     string
}

func (s *Store) ensureOutbox(ctx context.Context) error {
	if _, err := s.db.ExecContext(ctx, outboxSchema); err != nil {
		return fmt.Errorf("create alert outbox: %w", err)
	}
	return nil
}

// SaveAlertAndEnqueue records an alert's new state and queues its notifications in one
// transaction: both are stored or neither is.
func (s *Store) SaveAlertAndEnqueue(ctx context.Context, a AlertState, items []OutboxItem) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("save alert %s: %w", a.Name, err)
	}
	defer tx.Rollback()
	if err := saveAlert(ctx, tx, a); err != nil {
		return err
	}
	for _, it := range items {
		if _, err := tx.ExecContext(ctx, `INSERT INTO alert_outbox (notifier, alert, payload, status, created_at, next_attempt_at) VALUES (?, ?, ?, ?, ?, ?)`,
			it.Notifier, it.Alert, it.Payload, OutboxPending, it.CreatedAt.UnixMilli(), it.CreatedAt.UnixMilli()); err != nil {
			return fmt.Errorf("queue notification of %s for %s: %w", a.Name, it.Notifier, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("save alert %s: %w", a.Name, err)
	}
	return nil
}

// PendingOutbox returns every pending notification in the order it was queued (delivery order
// per receiver and alert must follow it).
func (s *Store) PendingOutbox(ctx context.Context) ([]OutboxItem, error) {
	return queryAll(ctx, s, "list pending notifications", scanOutboxItem,
		`SELECT `+outboxCols+` FROM alert_outbox WHERE status = ? ORDER BY id`, OutboxPending)
}

// outboxCols are the columns scanOutboxItem reads.
const outboxCols = `id, notifier, alert, payload, status, attempts, created_at, next_attempt_at, COALESCE(last_error, '')`

func scanOutboxItem(sc rowScanner) (OutboxItem, error) {
	var it OutboxItem
	var created, next int64
	if err := sc.Scan(&it.ID, &it.Notifier, &it.Alert, &it.Payload, &it.Status, &it.Attempts, &created, &next, &it.LastError); err != nil {
		return OutboxItem{}, err
	}
	it.CreatedAt, it.NextAttemptAt = time.UnixMilli(created).UTC(), time.UnixMilli(next).UTC()
	return it, nil
}

// MarkOutboxSent records that the receiver accepted the notification.
func (s *Store) MarkOutboxSent(ctx context.Context, id int64, attempts int, at time.Time) error {
	return s.updateOutbox(ctx, `UPDATE alert_outbox SET status=?, attempts=?, done_at=?, last_error=NULL WHERE id=?`, OutboxSent, attempts, at.UnixMilli(), id)
}

// MarkOutboxRetry records a failed attempt and when to try again.
func (s *Store) MarkOutboxRetry(ctx context.Context, id int64, attempts int, next time.Time, errText string) error {
	return s.updateOutbox(ctx, `UPDATE alert_outbox SET attempts=?, next_attempt_at=?, last_error=? WHERE id=?`, attempts, next.UnixMilli(), errText, id)
}

// MarkOutboxFailed records that delivery was given up.
func (s *Store) MarkOutboxFailed(ctx context.Context, id int64, attempts int, at time.Time, errText string) error {
	return s.updateOutbox(ctx, `UPDATE alert_outbox SET status=?, attempts=?, done_at=?, last_error=? WHERE id=?`, OutboxFailed, attempts, at.UnixMilli(), errText, id)
}

func (s *Store) updateOutbox(ctx context.Context, q string, args ...any) error {
	if _, err := s.db.ExecContext(ctx, q, args...); err != nil {
		return fmt.Errorf("update notification %v: %w", args[len(args)-1], err)
	}
	return nil
}

// OutboxCounts returns how many notifications are in a status, by notifier.
func (s *Store) OutboxCounts(ctx context.Context, status string) (map[string]int, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT notifier, COUNT(*) FROM alert_outbox WHERE status=? GROUP BY notifier`, status)
	if err != nil {
		return nil, fmt.Errorf("count notifications: %w", err)
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var n string
		var c int
		if err := rows.Scan(&n, &c); err != nil {
			return nil, fmt.Errorf("count notifications: %w", err)
		}
		out[n] = c
	}
	return out, rows.Err()
}

// OutboxItems returns the newest notifications of any status, newest first (the admin view and
// tests).
func (s *Store) OutboxItems(ctx context.Context, limit int) ([]OutboxItem, error) {
	return queryAll(ctx, s, "list notifications", scanOutboxItem, `SELECT `+outboxCols+` FROM alert_outbox ORDER BY id DESC LIMIT ?`, limit)
}

// PruneOutbox deletes delivered and given-up notifications beyond the newest keep (pending ones
// are never deleted).
func (s *Store) PruneOutbox(ctx context.Context, keep int) error {
	_, err := s.db.ExecContext(ctx, `DELETE FROM alert_outbox WHERE status != ? AND id NOT IN
		(SELECT id FROM alert_outbox WHERE status != ? ORDER BY id DESC LIMIT ?)`, OutboxPending, OutboxPending, keep)
	if err != nil {
		return fmt.Errorf("prune notifications: %w", err)
	}
	return nil
}

// execer is a *sql.DB or a *sql.Tx.
type execer interface {
	ExecContext(ctx context.Context, q string, args ...any) (sql.Result, error)
}
