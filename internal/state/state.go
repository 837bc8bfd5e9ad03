// Package state is opsd's own SQLite database: backup status per target, job-run history and the
// other facts that must survive a restart (or a SIGKILL). It uses WAL mode and versioned,
// append-only schema migrations.
package state

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"time"

	_ "modernc.org/sqlite" // database/sql driver "sqlite"
)

// Store is opsd's state database.
type Store struct {
	db   *sql.DB
	path string
	// restoreLocks are the liveness locks of this process's running restores (id → *os.File).
	restoreLocks sync.Map
}

// migrations are applied in order; PRAGMA user_version records how many ran. Never edit one that
// has shipped: append a new one.
var migrations = []string{
	`CREATE TABLE backup_status (
		container_id        TEXT PRIMARY KEY,
		node_id             TEXT NOT NULL,
		kind                TEXT NOT NULL DEFAULT '',
		last_backup_at      INTEGER,
		last_backup_size_mb REAL,
		last_backup_path    TEXT,
		last_backup_success INTEGER NOT NULL DEFAULT 0,
		last_backup_error   TEXT,
		total_backups       INTEGER NOT NULL DEFAULT 0,
		created_at          INTEGER NOT NULL,
		updated_at          INTEGER NOT NULL,
		retired_at          INTEGER
	);
	CREATE TABLE job_runs (
		id          INTEGER PRIMARY KEY AUTOINCREMENT,
		job         TEXT NOT NULL,
		kind        TEXT NOT NULL,
		trigger     TEXT NOT NULL,
		started_at  INTEGER NOT NULL,
		finished_at INTEGER,
		outcome     TEXT NOT NULL,
		bytes       INTEGER NOT NULL DEFAULT 0,
		error       TEXT,
		summary     TEXT,
		phases      TEXT
	);
	CREATE INDEX job_runs_job_started ON job_runs(job, started_at);`,
	`CREATE TABLE reports (
		id         INTEGER PRIMARY KEY AUTOINCREMENT,
		run_id     INTEGER,
		job        TEXT NOT NULL,
		kind       TEXT NOT NULL,
		created_at INTEGER NOT NULL,
		passed     INTEGER NOT NULL,
		body       TEXT NOT NULL
	);
	CREATE INDEX reports_job_created ON reports(job, created_at);`,
	`CREATE TABLE hot_fingerprints (
		container   TEXT PRIMARY KEY,
		fingerprint TEXT NOT NULL,
		key         TEXT,
		updated_at  INTEGER NOT NULL
	);`,
	`CREATE TABLE alerts (
		name          TEXT PRIMARY KEY,
		firing        INTEGER NOT NULL DEFAULT 0,
		pending_since INTEGER,
		fired_at      INTEGER,
		resolved_at   INTEGER,
		value         REAL,
		threshold     REAL,
		message       TEXT,
		updated_at    INTEGER NOT NULL
	);`,
	`CREATE TABLE restores (
		id           INTEGER PRIMARY KEY AUTOINCREMENT,
		kind         TEXT NOT NULL,
		target       TEXT NOT NULL,
		key          TEXT NOT NULL,
		requested_by TEXT NOT NULL,
		safety       TEXT,
		started_at   INTEGER NOT NULL,
		finished_at  INTEGER,
		downtime_ms  INTEGER,
		outcome      TEXT NOT NULL,
		progress     TEXT,
		error        TEXT
	);`,
	// One status row per (job, target): a good hot export must not hide a failed nightly of the
	// same container. Rows from before keep job '' until their target's next backup adopts them.
	`CREATE TABLE backup_status_v2 (
		container_id        TEXT NOT NULL,
		job                 TEXT NOT NULL DEFAULT '',
		node_id             TEXT NOT NULL,
		kind                TEXT NOT NULL DEFAULT '',
		last_backup_at      INTEGER,
		last_backup_size_mb REAL,
		last_backup_path    TEXT,
		last_backup_success INTEGER NOT NULL DEFAULT 0,
		last_backup_error   TEXT,
		total_backups       INTEGER NOT NULL DEFAULT 0,
		created_at          INTEGER NOT NULL,
		updated_at          INTEGER NOT NULL,
		retired_at          INTEGER,
		PRIMARY KEY (container_id, job)
	);
	INSERT INTO backup_status_v2 (container_id, job, node_id, kind, last_backup_at, last_backup_size_mb, last_backup_path,
		last_backup_success, last_backup_error, total_backups, created_at, updated_at, retired_at)
		SELECT container_id, '', node_id, kind, last_backup_at, last_backup_size_mb, last_backup_path,
		last_backup_success, last_backup_error, total_backups, created_at, updated_at, retired_at FROM backup_status;
	DROP TABLE backup_status;
	ALTER TABLE backup_status_v2 RENAME TO backup_status;`,
	// Restores are runs: linked to their job_runs row; an interrupted one is reported.
	`ALTER TABLE restores ADD COLUMN run_id INTEGER;
	CREATE INDEX restores_outcome ON restores(outcome);`,
}

// Open opens (creating if needed) the state database at path and migrates it.
func Open(ctx context.Context, path string) (*Store, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("open state: %w", err)
	}
	q := url.Values{}
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "busy_timeout(10000)")
	q.Add("_pragma", "synchronous(NORMAL)")
	q.Add("_pragma", "foreign_keys(ON)")
	db, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("open state %s: %w", path, err)
	}
	db.SetMaxOpenConns(4)
	s := &Store{db: db, path: path}
	if err := s.migrate(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("open state %s: %w", path, err)
	}
	if err := s.ensureOutbox(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("open state %s: %w", path, err)
	}
	return s, nil
}

// Path returns the database file's path.
func (s *Store) Path() string { return s.path }

// DB returns the underlying database, for the packages that keep their own tables here.
func (s *Store) DB() *sql.DB { return s.db }

// Close closes the database. Restores still running lose their liveness lock (as when the
// process dies): the next start reports them interrupted.
func (s *Store) Close() error {
	s.restoreLocks.Range(func(id, f any) bool {
		f.(interface{ Close() error }).Close()
		s.restoreLocks.Delete(id)
		return true
	})
	return s.db.Close()
}

// Ping checks the database answers.
func (s *Store) Ping(ctx context.Context) error { return s.db.PingContext(ctx) }

func (s *Store) migrate(ctx context.Context) error {
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	var version int
	if err := conn.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	if version > len(migrations) {
		return fmt.Errorf("schema version %d is newer than this opsd knows (%d): refusing to downgrade", version, len(migrations))
	}
	for i := version; i < len(migrations); i++ {
		tx, err := conn.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, migrations[i]); err != nil {
			tx.Rollback()
			return fmt.Errorf("migration %d: %w", i+1, err)
		}
		if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", i+1)); err != nil {
			tx.Rollback()
			return fmt.Errorf("migration %d: %w", i+1, err)
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("migration %d: %w", i+1, err)
		}
	}
	return nil
}

func ms(t time.Time) sql.NullInt64 {
	if t.IsZero() {
		return sql.NullInt64{}
	}
	return sql.NullInt64{Int64: t.UnixMilli(), Valid: true}
}

func fromMS(v sql.NullInt64) *time.Time {
	if !v.Valid {
		return nil
	}
	t := time.UnixMilli(v.Int64).UTC()
	return &t
}

// ErrNotFound is returned when a row does not exist.
var ErrNotFound = errors.New("not found")
