package state

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// AlertState is the persisted state of one alert rule, so a restart neither re-fires nor forgets.
type AlertState struct {
	Name         string     `json:"name"`
	Firing       bool       `json:"firing"`
	PendingSince *time.Time `json:"pendingSince,omitempty"`
	FiredAt      *time.Time `json:"firedAt,omitempty"`
	ResolvedAt   *time.Time `json:"resolvedAt,omitempty"`
	Value        float64    `json:"value"`
	Threshold    float64    `json:"threshold"`
	Message      string     `json:"message"`
	UpdatedAt    time.Time  `json:"updatedAt"`
	// Node is the node_id the current (or last) firing was announced under: a per-node alert's
	// incident at the receivers is keyed by it, so its resolution must name the same node.
	Node string `json:"node,omitempty"`
	// PerNode is whether the alert's incident is keyed by Node at the receivers (its rule is
	// about this node), as its rule said when the state was last saved; nil for a row an older
	// opsd saved. It lets the incident be resolved under its key once the rule is gone.
	PerNode *bool `json:"perNode,omitempty"`
}

// SaveAlert records an alert's state.
func (s *Store) SaveAlert(ctx context.Context, a AlertState) error {
	return saveAlert(ctx, s.db, a)
}

func saveAlert(ctx context.Context, db execer, a AlertState) error {
	opt := func(t *time.Time) sql.NullInt64 {
		if t == nil {
			return sql.NullInt64{}
		}
		return ms(*t)
	}
	var node, perNode any
	if a.Node != "" {
		node = a.Node
	}
	if a.PerNode != nil {
		perNode = *a.PerNode
	}
	_, err := db.ExecContext(ctx, `INSERT INTO alerts (name, firing, pending_since, fired_at, resolved_at, value, threshold, message, updated_at, node, per_node)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT(name) DO UPDATE SET firing=excluded.firing, pending_since=excluded.pending_since, fired_at=excluded.fired_at,
			resolved_at=excluded.resolved_at, value=excluded.value, threshold=excluded.threshold, message=excluded.message, updated_at=excluded.updated_at,
			node=excluded.node, per_node=excluded.per_node`,
		a.Name, a.Firing, opt(a.PendingSince), opt(a.FiredAt), opt(a.ResolvedAt), a.Value, a.Threshold, a.Message, a.UpdatedAt.UnixMilli(), node, perNode)
	if err != nil {
		return fmt.Errorf("save alert %s: %w", a.Name, err)
	}
	return nil
}

// DeleteAlert forgets an alert's state (its rule was removed from the config).
func (s *Store) DeleteAlert(ctx context.Context, name string) error {
	return deleteAlert(ctx, s.db, name)
}

func deleteAlert(ctx context.Context, db execer, name string) error {
	if _, err := db.ExecContext(ctx, `DELETE FROM alerts WHERE name = ?`, name); err != nil {
		return fmt.Errorf("delete alert %s: %w", name, err)
	}
	return nil
}

// Alerts returns every stored alert state, by name.
func (s *Store) Alerts(ctx context.Context) (map[string]AlertState, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT name, firing, pending_since, fired_at, resolved_at, COALESCE(value, 0), COALESCE(threshold, 0), COALESCE(message, ''), updated_at, COALESCE(node, ''), per_node FROM alerts`)
	if err != nil {
		return nil, fmt.Errorf("list alerts: %w", err)
	}
	defer rows.Close()
	out := map[string]AlertState{}
	for rows.Next() {
		var a AlertState
		var pending, fired, resolved sql.NullInt64
		var updated int64
		var perNode sql.NullBool
		if err := rows.Scan(&a.Name, &a.Firing, &pending, &fired, &resolved, &a.Value, &a.Threshold, &a.Message, &updated, &a.Node, &perNode); err != nil {
			return nil, fmt.Errorf("list alerts: %w", err)
		}
		if perNode.Valid {
			a.PerNode = &perNode.Bool
		}
		a.PendingSince, a.FiredAt, a.ResolvedAt = fromMS(pending), fromMS(fired), fromMS(resolved)
		a.UpdatedAt = time.UnixMilli(updated).UTC()
		out[a.Name] = a
	}
	return out, rows.Err()
}

// LatestReport returns the newest report of any job of the given kind.
func (s *Store) LatestReport(ctx context.Context, kind string) (Report, error) {
	r, err := scanReport(s.db.QueryRowContext(ctx, `SELECT `+reportCols+` FROM reports WHERE kind=? ORDER BY created_at DESC, id DESC LIMIT 1`, kind))
	if err == sql.ErrNoRows {
		return Report{}, ErrNotFound
	}
	if err != nil {
		return Report{}, fmt.Errorf("latest %s report: %w", kind, err)
	}
	return r, nil
}

// JobNames returns every job that has runs recorded.
func (s *Store) JobNames(ctx context.Context) ([]string, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT DISTINCT job FROM job_runs ORDER BY job`)
	if err != nil {
		return nil, fmt.Errorf("list jobs: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, rows.Err()
}
