package state

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
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
		done_at         INTEGER,
		action          TEXT
	);
	CREATE INDEX IF NOT EXISTS alert_outbox_status_next ON alert_outbox(status, next_attempt_at);`

// Outbox delivery states.
const (
	OutboxPending = "pending"
	OutboxSent    = "sent"
	OutboxFailed  = "failed"
)

// Outbox actions: what a notification tells its receiver about its incident.
const (
	ActionTrigger = "trigger" // the incident is firing
	ActionResolve = "resolve" // the incident is resolved
)

// OutboxItem is one notification owed to one notifier.
type OutboxItem struct {
	ID       int64
	Notifier string
	Alert    string // the incident's identity at the receiver (alert, or alert:node)
	// Action is ActionTrigger or ActionResolve ("" for rows queued before it was recorded that
	// could not be read: they are never coalesced).
	Action        string
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
	added, err := s.ensureColumn(ctx, "alert_outbox", "action", "TEXT")
	if err != nil {
		return err
	}
	if added {
		// Rows queued by an older opsd: the action is the payload's "firing".
		if _, err := s.db.ExecContext(ctx, `UPDATE alert_outbox SET action = CASE json_extract(payload, '$.firing')
			WHEN 1 THEN ? WHEN 0 THEN ? END WHERE action IS NULL AND json_valid(payload)`, ActionTrigger, ActionResolve); err != nil {
			return fmt.Errorf("record the action of queued notifications: %w", err)
		}
	}
	// The node an alert's firing was announced under (per-node incidents are keyed by it).
	if _, err := s.ensureColumn(ctx, "alerts", "node", "TEXT"); err != nil {
		return err
	}
	// Whether that node is part of the incident's key (so it can be resolved once its rule is gone).
	if _, err := s.ensureColumn(ctx, "alerts", "per_node", "INTEGER"); err != nil {
		return err
	}
	return nil
}

// testHookBeforeAddColumn, when set (tests), runs between ensureColumn's look and its ALTER.
var testHookBeforeAddColumn func(table, column string)

// ensureColumn adds a column to a table unless it has it (outside the numbered migrations, like
// the outbox itself), reporting whether it was added.
func (s *Store) ensureColumn(ctx context.Context, table, column, decl string) (bool, error) {
	var n int
	if err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM pragma_table_info(?) WHERE name = ?`, table, column).Scan(&n); err != nil {
		return false, fmt.Errorf("inspect %s: %w", table, err)
	}
	if n > 0 {
		return false, nil
	}
	if testHookBeforeAddColumn != nil {
		testHookBeforeAddColumn(table, column)
	}
	if _, err := s.db.ExecContext(ctx, `ALTER TABLE `+table+` ADD COLUMN `+column+` `+decl); err != nil {
		if strings.Contains(err.Error(), "duplicate column name") {
			return false, nil // another opsd (the daemon, a CLI command) added it meanwhile
		}
		return false, fmt.Errorf("add %s.%s: %w", table, column, err)
	}
	return true, nil
}

// OutboxDropped counts the pending notifications of one notifier that were removed from the
// outbox without being delivered.
type OutboxDropped struct {
	// Superseded: a newer notification of the same incident tells the receiver the same or more
	// (see compactOutbox).
	Superseded int
	// Overflow: the oldest pending notifications beyond the notifier's cap.
	Overflow int
}

// SaveAlertAndEnqueue records an alert's new state and queues its notifications in one
// transaction: both are stored or neither is. Queuing keeps the outbox bounded: each incident's
// superseded pending notifications are removed (see compactOutbox) and, with maxPending > 0, a
// notifier's oldest pending notifications beyond maxPending are dropped. It returns what was
// removed, by notifier.
func (s *Store) SaveAlertAndEnqueue(ctx context.Context, a AlertState, items []OutboxItem, maxPending int) (map[string]OutboxDropped, error) {
	return s.alertAndEnqueue(ctx, a.Name, func(tx *sql.Tx) error { return saveAlert(ctx, tx, a) }, items, maxPending)
}

// DeleteAlertAndEnqueue forgets an alert's state (its rule was removed from the config) and
// queues its notifications (the resolution of its incident) in one transaction, bounded like
// SaveAlertAndEnqueue.
func (s *Store) DeleteAlertAndEnqueue(ctx context.Context, name string, items []OutboxItem, maxPending int) (map[string]OutboxDropped, error) {
	return s.alertAndEnqueue(ctx, name, func(tx *sql.Tx) error { return deleteAlert(ctx, tx, name) }, items, maxPending)
}

// alertAndEnqueue runs change (of the alert's row) and queues items in one transaction.
func (s *Store) alertAndEnqueue(ctx context.Context, name string, change func(*sql.Tx) error, items []OutboxItem, maxPending int) (map[string]OutboxDropped, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("save alert %s: %w", name, err)
	}
	defer tx.Rollback()
	if err := change(tx); err != nil {
		return nil, err
	}
	dropped := map[string]OutboxDropped{}
	for _, it := range items {
		var action any
		if it.Action != "" {
			action = it.Action
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO alert_outbox (notifier, alert, action, payload, status, created_at, next_attempt_at) VALUES (?, ?, ?, ?, ?, ?, ?)`,
			it.Notifier, it.Alert, action, it.Payload, OutboxPending, it.CreatedAt.UnixMilli(), it.CreatedAt.UnixMilli()); err != nil {
			return nil, fmt.Errorf("queue notification of %s for %s: %w", name, it.Notifier, err)
		}
		n, err := compactOutbox(ctx, tx, it.Notifier, it.Alert)
		if err != nil {
			return nil, err
		}
		d := dropped[it.Notifier]
		d.Superseded += n
		dropped[it.Notifier] = d
	}
	for notifier, d := range dropped {
		n, err := capOutbox(ctx, tx, notifier, maxPending)
		if err != nil {
			return nil, err
		}
		d.Overflow += n
		dropped[notifier] = d
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("save alert %s: %w", name, err)
	}
	return dropped, nil
}

// CompactOutbox applies SaveAlertAndEnqueue's bounds to everything pending (an outbox an older
// opsd filled while its receivers were down): it returns what was removed, by notifier.
func (s *Store) CompactOutbox(ctx context.Context, maxPending int) (map[string]OutboxDropped, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("compact notifications: %w", err)
	}
	defer tx.Rollback()
	rows, err := tx.QueryContext(ctx, `SELECT DISTINCT notifier, alert FROM alert_outbox WHERE status = ?`, OutboxPending)
	if err != nil {
		return nil, fmt.Errorf("compact notifications: %w", err)
	}
	var pairs [][2]string
	for rows.Next() {
		var p [2]string
		if err := rows.Scan(&p[0], &p[1]); err != nil {
			rows.Close()
			return nil, fmt.Errorf("compact notifications: %w", err)
		}
		pairs = append(pairs, p)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("compact notifications: %w", err)
	}
	dropped := map[string]OutboxDropped{}
	for _, p := range pairs {
		n, err := compactOutbox(ctx, tx, p[0], p[1])
		if err != nil {
			return nil, err
		}
		d := dropped[p[0]]
		d.Superseded += n
		dropped[p[0]] = d
	}
	for name, d := range dropped {
		n, err := capOutbox(ctx, tx, name, maxPending)
		if err != nil {
			return nil, err
		}
		d.Overflow += n
		dropped[name] = d
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("compact notifications: %w", err)
	}
	return dropped, nil
}

// compactOutbox removes one incident's superseded pending notifications for one notifier and
// returns how many. The receiver needs the incident's latest state, not every flap on the way:
//   - when the newest pending notification is a trigger, every older one is superseded (a
//     repeated trigger of one dedup key is idempotent at PagerDuty, and the newest carries the
//     current message and firing time);
//   - when it is a resolve, the oldest pending trigger is kept as well (it is the receiver's
//     only record that the incident fired at all) and everything between is superseded.
//
// So at most two notifications per incident wait for a receiver, however often it flaps.
// Rows whose action is unknown are left alone.
func compactOutbox(ctx context.Context, tx *sql.Tx, notifier, alert string) (int, error) {
	rows, err := tx.QueryContext(ctx, `SELECT id, action FROM alert_outbox WHERE status = ? AND notifier = ? AND alert = ? AND action IS NOT NULL ORDER BY id`,
		OutboxPending, notifier, alert)
	if err != nil {
		return 0, fmt.Errorf("coalesce notifications of %s: %w", alert, err)
	}
	type row struct {
		id     int64
		action string
	}
	var list []row
	for rows.Next() {
		var r row
		if err := rows.Scan(&r.id, &r.action); err != nil {
			rows.Close()
			return 0, fmt.Errorf("coalesce notifications of %s: %w", alert, err)
		}
		list = append(list, r)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("coalesce notifications of %s: %w", alert, err)
	}
	if len(list) < 2 {
		return 0, nil
	}
	newest := list[len(list)-1]
	keepTrigger := int64(-1)
	if newest.action == ActionResolve {
		for _, r := range list {
			if r.action == ActionTrigger {
				keepTrigger = r.id
				break
			}
		}
	}
	n := 0
	for _, r := range list[:len(list)-1] {
		if r.id == keepTrigger {
			continue
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM alert_outbox WHERE id = ?`, r.id); err != nil {
			return 0, fmt.Errorf("coalesce notifications of %s: %w", alert, err)
		}
		n++
	}
	return n, nil
}

// capOutbox drops a notifier's oldest pending notifications beyond max (none when max <= 0)
// and returns how many.
func capOutbox(ctx context.Context, tx *sql.Tx, notifier string, max int) (int, error) {
	if max <= 0 {
		return 0, nil
	}
	// Resolutions are kept first (a dropped one leaves its incident open at the receiver for
	// ever; a dropped trigger only misses a page the resolve that follows would have closed),
	// then the newest triggers: the oldest triggers go first.
	res, err := tx.ExecContext(ctx, `DELETE FROM alert_outbox WHERE id IN (SELECT id FROM alert_outbox WHERE status = ? AND notifier = ?
		ORDER BY (action IS ?) DESC, id DESC LIMIT -1 OFFSET ?)`, OutboxPending, notifier, ActionResolve, max)
	if err != nil {
		return 0, fmt.Errorf("cap pending notifications of %s: %w", notifier, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("cap pending notifications of %s: %w", notifier, err)
	}
	return int(n), nil
}

// LastTrigger returns the newest trigger queued for any of the given incidents (an alert's
// keys at the receivers), whatever its status; ErrNotFound when the outbox kept none.
func (s *Store) LastTrigger(ctx context.Context, incidents ...string) (OutboxItem, error) {
	if len(incidents) == 0 {
		return OutboxItem{}, ErrNotFound
	}
	q := `SELECT ` + outboxCols + ` FROM alert_outbox WHERE action = ? AND alert IN (?` + strings.Repeat(", ?", len(incidents)-1) + `) ORDER BY id DESC LIMIT 1`
	args := []any{ActionTrigger}
	for _, k := range incidents {
		args = append(args, k)
	}
	it, err := scanOutboxItem(s.db.QueryRowContext(ctx, q, args...))
	if err == sql.ErrNoRows {
		return OutboxItem{}, ErrNotFound
	}
	if err != nil {
		return OutboxItem{}, fmt.Errorf("find the last trigger of %s: %w", incidents[0], err)
	}
	return it, nil
}

// PendingOutbox returns every pending notification in the order it was queued (delivery order
// per receiver and alert must follow it).
func (s *Store) PendingOutbox(ctx context.Context) ([]OutboxItem, error) {
	return queryAll(ctx, s, "list pending notifications", scanOutboxItem,
		`SELECT `+outboxCols+` FROM alert_outbox WHERE status = ? ORDER BY id`, OutboxPending)
}

// outboxCols are the columns scanOutboxItem reads.
const outboxCols = `id, notifier, alert, COALESCE(action, ''), payload, status, attempts, created_at, next_attempt_at, COALESCE(last_error, '')`

func scanOutboxItem(sc rowScanner) (OutboxItem, error) {
	var it OutboxItem
	var created, next int64
	if err := sc.Scan(&it.ID, &it.Notifier, &it.Alert, &it.Action, &it.Payload, &it.Status, &it.Attempts, &created, &next, &it.LastError); err != nil {
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
