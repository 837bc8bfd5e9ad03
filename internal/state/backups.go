package state

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// BackupStatus is one tracked target (REFERENCE.md "BackupStatusStore"); JSON names match the
// platform's admin API.
type BackupStatus struct {
	ContainerID       string     `json:"containerId"`
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
}

// BackupAttempt is the outcome of one backup of one target.
type BackupAttempt struct {
	Target    string
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
	var err error
	if a.Success {
		_, err = s.db.ExecContext(ctx, `INSERT INTO backup_status
			(container_id, node_id, kind, last_backup_at, last_backup_size_mb, last_backup_path, last_backup_success, last_backup_error, total_backups, created_at, updated_at)
			VALUES (?, ?, ?, ?, ?, ?, 1, NULL, 1, ?, ?)
			ON CONFLICT(container_id) DO UPDATE SET node_id=excluded.node_id, kind=excluded.kind,
				last_backup_at=excluded.last_backup_at, last_backup_size_mb=excluded.last_backup_size_mb,
				last_backup_path=excluded.last_backup_path, last_backup_success=1, last_backup_error=NULL,
				total_backups=total_backups+1, updated_at=excluded.updated_at, retired_at=NULL`,
			a.Target, a.NodeID, a.Kind, now, float64(a.SizeBytes)/(1024*1024), a.Path, now, now)
	} else {
		_, err = s.db.ExecContext(ctx, `INSERT INTO backup_status
			(container_id, node_id, kind, last_backup_success, last_backup_error, total_backups, created_at, updated_at)
			VALUES (?, ?, ?, 0, ?, 0, ?, ?)
			ON CONFLICT(container_id) DO UPDATE SET node_id=excluded.node_id, kind=excluded.kind,
				last_backup_success=0, last_backup_error=excluded.last_backup_error,
				updated_at=excluded.updated_at, retired_at=NULL`,
			a.Target, a.NodeID, a.Kind, a.Error, now, now)
	}
	if err != nil {
		return fmt.Errorf("record backup of %s: %w", a.Target, err)
	}
	return nil
}

// IsStale is the REFERENCE.md rule: never backed up, the last attempt failed, or the last success
// is strictly older than staleAfter.
func IsStale(b BackupStatus, now time.Time, staleAfter time.Duration) bool {
	return b.LastBackupAt == nil || !b.LastBackupSuccess || now.Sub(*b.LastBackupAt) > staleAfter
}

// ListBackups returns every tracked (not retired) target with its stale flag, by target name.
func (s *Store) ListBackups(ctx context.Context, now time.Time, staleAfter time.Duration) ([]BackupStatus, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT container_id, node_id, kind, last_backup_at, last_backup_size_mb,
		last_backup_path, last_backup_success, last_backup_error, total_backups, created_at, updated_at
		FROM backup_status WHERE retired_at IS NULL ORDER BY container_id`)
	if err != nil {
		return nil, fmt.Errorf("list backups: %w", err)
	}
	defer rows.Close()
	var out []BackupStatus
	for rows.Next() {
		var (
			b                 BackupStatus
			last, created, up sql.NullInt64
			size              sql.NullFloat64
			path, errText     sql.NullString
		)
		if err := rows.Scan(&b.ContainerID, &b.NodeID, &b.Kind, &last, &size, &path, &b.LastBackupSuccess, &errText, &b.TotalBackups, &created, &up); err != nil {
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

// GetBackup returns one target (retired or not).
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
// so it does not stay stale forever. Its history is kept; a later backup un-retires it.
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

// RetireMissing retires every tracked target of the given kind that is not in keep; it returns
// the names retired.
func (s *Store) RetireMissing(ctx context.Context, kind string, keep []string, at time.Time) ([]string, error) {
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
		if b.Kind == kind && !want[b.ContainerID] {
			if err := s.Retire(ctx, b.ContainerID, at); err != nil && !errors.Is(err, ErrNotFound) {
				return retired, err
			}
			retired = append(retired, b.ContainerID)
		}
	}
	return retired, nil
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
