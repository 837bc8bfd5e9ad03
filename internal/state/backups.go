package state

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// BackupStatus is one tracked target of one job (REFERENCE.md "BackupStatusStore"); JSON names
// match the platform's admin API: containerId is the target, job the opsd job that backs it up
// (a container exported nightly and hot has two rows, so one cannot hide the other's failure;
// "" for rows recorded before opsd kept them per job).
type BackupStatus struct {
	ContainerID       string     `json:"containerId"`
	Job               string     `json:"job"`
	NodeID            string     `json:"nodeId"`
	Kind              string     `json:"kind,omitempty"`
	LastBackupAt      *time.Time `json:"lastBackupAt"`
	LastBackupSizeMB  *float64   `json:"lastBackupSizeMb"`
	LastBackupPath    *string    `json:"lastBackupPath"`
	LastBackupSuccess bool       `json:"lastBackupSuccess"`
	LastBackupError   *string    `json:"lastBackupError"`
	TotalBackups      int        `json:"totalBackups"`
	CreatedAt         time.Time  `json:"createdAt"`
	UpdatedAt         time.Time  `json:"updatedAt"`
	IsStale           bool       `json:"isStale"`
	// RetiredAt is when opsd stopped tracking the target (ListBackupRows only; nil: tracked).
	RetiredAt *time.Time `json:"-"`
}

// BackupAttempt is the outcome of one backup of one target.
type BackupAttempt struct {
	Target    string
	Job       string
	NodeID    string
	Kind      string
	At        time.Time
	Success   bool
	SizeBytes int64
	Path      string
	Error     string
}

// RecordBackup records an attempt. A success sets the time, size and path and counts; a failure
// records the error and keeps the previous good time and path. Recording un-retires a target.
func (s *Store) RecordBackup(ctx context.Context, a BackupAttempt) error {
	now := a.At.UnixMilli()
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("record backup of %s: %w", a.Target, err)
	}
	defer tx.Rollback()
	if a.Job != "" {
		// A row from before status was kept per job becomes this job's.
		if _, err := tx.ExecContext(ctx, `UPDATE backup_status SET job=? WHERE container_id=? AND job='' AND NOT EXISTS
			(SELECT 1 FROM backup_status WHERE container_id=? AND job=?)`, a.Job, a.Target, a.Target, a.Job); err != nil {
			return fmt.Errorf("record backup of %s: %w", a.Target, err)
		}
	}
	if a.Success {
		_, err = tx.ExecContext(ctx, `INSERT INTO backup_status
			(container_id, job, node_id, kind, last_backup_at, last_backup_size_mb, last_backup_path, last_backup_success, last_backup_error, total_backups, created_at, updated_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, 1, NULL, 1, ?, ?)
			ON CONFLICT(container_id, job) DO UPDATE SET node_id=excluded.node_id, kind=excluded.kind,
				last_backup_at=excluded.last_backup_at, last_backup_size_mb=excluded.last_backup_size_mb,
				last_backup_path=excluded.last_backup_path, last_backup_success=1, last_backup_error=NULL,
				total_backups=total_backups+1, updated_at=excluded.updated_at, retired_at=NULL`,
			a.Target, a.Job, a.NodeID, a.Kind, now, float64(a.SizeBytes)/(1024*1024), a.Path, now, now)
	} else {
		_, err = tx.ExecContext(ctx, `INSERT INTO backup_status
			(container_id, job, node_id, kind, last_backup_success, last_backup_error, total_backups, created_at, updated_at)
			VALUES (?, ?, ?, ?, 0, ?, 0, ?, ?)
			ON CONFLICT(container_id, job) DO UPDATE SET node_id=excluded.node_id, kind=excluded.kind,
				last_backup_success=0, last_backup_error=excluded.last_backup_error,
				updated_at=excluded.updated_at, retired_at=NULL`,
			a.Target, a.Job, a.NodeID, a.Kind, a.Error, now, now)
	}
	if err != nil {
		return fmt.Errorf("record backup of %s: %w", a.Target, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("record backup of %s: %w", a.Target, err)
	}
	return nil
}

// IsStale is the REFERENCE.md rule: never backed up, the last attempt failed, or the last success
// is strictly older than staleAfter.
func IsStale(b BackupStatus, now time.Time, staleAfter time.Duration) bool {
	return b.LastBackupAt == nil || !b.LastBackupSuccess || now.Sub(*b.LastBackupAt) > staleAfter
}

// ListBackups returns every tracked (not retired) (target, job) with its stale flag, by target
// name then job.
func (s *Store) ListBackups(ctx context.Context, now time.Time, staleAfter time.Duration) ([]BackupStatus, error) {
	return s.listBackups(ctx, now, staleAfter, false)
}

// ListBackupRows returns every (target, job) row, the retired ones too (RetiredAt set), by
// target name then job: what a process that caches the status (the daemon's metrics) needs to
// follow another process's writes, retirements included.
func (s *Store) ListBackupRows(ctx context.Context, now time.Time, staleAfter time.Duration) ([]BackupStatus, error) {
	return s.listBackups(ctx, now, staleAfter, true)
}

func (s *Store) listBackups(ctx context.Context, now time.Time, staleAfter time.Duration, retired bool) ([]BackupStatus, error) {
	where := ` WHERE retired_at IS NULL`
	if retired {
		where = ``
	}
	rows, err := s.db.QueryContext(ctx, `SELECT container_id, job, node_id, kind, last_backup_at, last_backup_size_mb,
		last_backup_path, last_backup_success, last_backup_error, total_backups, created_at, updated_at, retired_at
		FROM backup_status`+where+` ORDER BY container_id, job`)
	if err != nil {
		return nil, fmt.Errorf("list backups: %w", err)
	}
	defer rows.Close()
	var out []BackupStatus
	for rows.Next() {
		var (
			b                          BackupStatus
			last, created, up, retired sql.NullInt64
			size                       sql.NullFloat64
			path, errText              sql.NullString
		)
		if err := rows.Scan(&b.ContainerID, &b.Job, &b.NodeID, &b.Kind, &last, &size, &path, &b.LastBackupSuccess, &errText, &b.TotalBackups, &created, &up, &retired); err != nil {
			return nil, fmt.Errorf("list backups: %w", err)
		}
		b.LastBackupAt = fromMS(last)
		if size.Valid {
			b.LastBackupSizeMB = &size.Float64
		}
		if path.Valid {
			b.LastBackupPath = &path.String
		}
		if errText.Valid {
			b.LastBackupError = &errText.String
		}
		b.CreatedAt, b.UpdatedAt = *fromMS(created), *fromMS(up)
		b.RetiredAt = fromMS(retired)
		b.IsStale = IsStale(b, now, staleAfter)
		out = append(out, b)
	}
	return out, rows.Err()
}

// ListStale returns the stale targets.
func (s *Store) ListStale(ctx context.Context, now time.Time, staleAfter time.Duration) ([]BackupStatus, error) {
	all, err := s.ListBackups(ctx, now, staleAfter)
	if err != nil {
		return nil, err
	}
	var out []BackupStatus
	for _, b := range all {
		if b.IsStale {
			out = append(out, b)
		}
	}
	return out, nil
}

// GetBackup returns a tracked target's status (its first job's row when several jobs back it up).
func (s *Store) GetBackup(ctx context.Context, target string, now time.Time, staleAfter time.Duration) (BackupStatus, error) {
	all, err := s.ListBackups(ctx, now, staleAfter)
	if err != nil {
		return BackupStatus{}, err
	}
	for _, b := range all {
		if b.ContainerID == target {
			return b, nil
		}
	}
	return BackupStatus{}, fmt.Errorf("backup status of %s: %w", target, ErrNotFound)
}

// Retire stops tracking a target that no longer exists (removed from the config, container gone),
// for every job, so it does not stay stale forever. Its history is kept; a later backup
// un-retires it.
func (s *Store) Retire(ctx context.Context, target string, at time.Time) error {
	res, err := s.db.ExecContext(ctx, `UPDATE backup_status SET retired_at=?, updated_at=? WHERE container_id=? AND retired_at IS NULL`, at.UnixMilli(), at.UnixMilli(), target)
	if err != nil {
		return fmt.Errorf("retire %s: %w", target, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("retire %s: %w", target, ErrNotFound)
	}
	return nil
}

// RetireMissing retires the targets of the given job and kind that are not in keep (rows from
// before status was kept per job count as the job's); it returns the names retired.
func (s *Store) RetireMissing(ctx context.Context, job, kind string, keep []string, at time.Time) ([]string, error) {
	all, err := s.ListBackups(ctx, at, time.Hour)
	if err != nil {
		return nil, err
	}
	want := map[string]bool{}
	for _, k := range keep {
		want[k] = true
	}
	var retired []string
	for _, b := range all {
		if b.Kind == kind && (b.Job == job || b.Job == "") && !want[b.ContainerID] {
			if err := s.retireRow(ctx, b.ContainerID, b.Job, at); err != nil {
				return retired, err
			}
			retired = append(retired, b.ContainerID)
		}
	}
	return retired, nil
}

// RetireJobsExcept retires the rows of every job not in jobs (jobs removed from the config), so
// their targets stop being stale; it returns the rows retired.
func (s *Store) RetireJobsExcept(ctx context.Context, jobs []string, at time.Time) ([]BackupStatus, error) {
	all, err := s.ListBackups(ctx, at, time.Hour)
	if err != nil {
		return nil, err
	}
	want := map[string]bool{}
	for _, j := range jobs {
		want[j] = true
	}
	var retired []BackupStatus
	for _, b := range all {
		if b.Job != "" && !want[b.Job] {
			if err := s.retireRow(ctx, b.ContainerID, b.Job, at); err != nil {
				return retired, err
			}
			retired = append(retired, b)
		}
	}
	return retired, nil
}

// RetireJob retires every row of one job (removed from the config while a run of it was in
// progress, which recorded its targets after the reload retired them).
func (s *Store) RetireJob(ctx context.Context, job string, at time.Time) error {
	if _, err := s.db.ExecContext(ctx, `UPDATE backup_status SET retired_at=?, updated_at=? WHERE job=? AND retired_at IS NULL`,
		at.UnixMilli(), at.UnixMilli(), job); err != nil {
		return fmt.Errorf("retire the targets of %s: %w", job, err)
	}
	return nil
}

func (s *Store) retireRow(ctx context.Context, target, job string, at time.Time) error {
	if _, err := s.db.ExecContext(ctx, `UPDATE backup_status SET retired_at=?, updated_at=? WHERE container_id=? AND job=? AND retired_at IS NULL`,
		at.UnixMilli(), at.UnixMilli(), target, job); err != nil {
		return fmt.Errorf("retire %s of %s: %w", target, job, err)
	}
	return nil
}

// Fingerprint returns the change fingerprint recorded at a container's last successful hot
// backup ("" when none).
func (s *Store) Fingerprint(ctx context.Context, container string) (string, error) {
	var fp string
	err := s.db.QueryRowContext(ctx, `SELECT fingerprint FROM hot_fingerprints WHERE container=?`, container).Scan(&fp)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read fingerprint of %s: %w", container, err)
	}
	return fp, nil
}

// SaveFingerprint records the fingerprint of a successful hot backup.
func (s *Store) SaveFingerprint(ctx context.Context, container, fingerprint, key string, at time.Time) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO hot_fingerprints (container, fingerprint, key, updated_at) VALUES (?, ?, ?, ?)
		ON CONFLICT(container) DO UPDATE SET fingerprint=excluded.fingerprint, key=excluded.key, updated_at=excluded.updated_at`,
		container, fingerprint, key, at.UnixMilli())
	if err != nil {
		return fmt.Errorf("save fingerprint of %s: %w", container, err)
	}
	return nil
}
