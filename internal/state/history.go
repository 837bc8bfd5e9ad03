package state

import (
	"context"
	"fmt"
)

// PruneHistory keeps a job's history bounded: its newest keep finished runs and newest keep
// reports stay, older ones are deleted. A run in progress and the job's newest successful run
// (what "last success" reads) are never deleted. keep <= 0 keeps everything.
func (s *Store) PruneHistory(ctx context.Context, job string, keep int) error {
	if keep <= 0 {
		return nil
	}
	if _, err := s.db.ExecContext(ctx, `DELETE FROM job_runs WHERE job = ? AND outcome != ?
		AND id NOT IN (SELECT id FROM job_runs WHERE job = ? ORDER BY started_at DESC, id DESC LIMIT ?)
		AND id != COALESCE((SELECT id FROM job_runs WHERE job = ? AND outcome = ? ORDER BY started_at DESC, id DESC LIMIT 1), -1)`,
		job, OutcomeRunning, job, keep, job, OutcomeSuccess); err != nil {
		return fmt.Errorf("prune run history of %s: %w", job, err)
	}
	if _, err := s.db.ExecContext(ctx, `DELETE FROM reports WHERE job = ?
		AND id NOT IN (SELECT id FROM reports WHERE job = ? ORDER BY created_at DESC, id DESC LIMIT ?)`, job, job, keep); err != nil {
		return fmt.Errorf("prune reports of %s: %w", job, err)
	}
	return nil
}
