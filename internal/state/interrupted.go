package state

import (
	"context"
	"fmt"
	"slices"
	"time"
)

// InterruptedError is the error recorded on a run that a dead process left "running".
const InterruptedError = "interrupted: opsd stopped during the run"

// MarkInterruptedRuns marks the runs left "running" by a previous process as interrupted, in
// one transaction, and returns them (so the caller can count each as a failed run everywhere).
// Runs started with a trigger in keep (those of CLI commands still running) are left alone.
func (s *Store) MarkInterruptedRuns(ctx context.Context, at time.Time, keep ...string) ([]Run, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("mark interrupted runs: %w", err)
	}
	defer tx.Rollback()
	rows, err := tx.QueryContext(ctx, `SELECT `+runCols+` FROM job_runs WHERE outcome=? ORDER BY id`, OutcomeRunning)
	if err != nil {
		return nil, fmt.Errorf("mark interrupted runs: %w", err)
	}
	var runs []Run
	for rows.Next() {
		r, err := scanRun(rows)
		if err != nil {
			rows.Close()
			return nil, fmt.Errorf("mark interrupted runs: %w", err)
		}
		if !slices.Contains(keep, r.Trigger) {
			runs = append(runs, r)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("mark interrupted runs: %w", err)
	}
	for i := range runs {
		if _, err := tx.ExecContext(ctx, `UPDATE job_runs SET outcome=?, finished_at=?, error=? WHERE id=?`, OutcomeInterrupted, at.UnixMilli(), InterruptedError, runs[i].ID); err != nil {
			return nil, fmt.Errorf("mark interrupted runs: %w", err)
		}
		f := at.UTC()
		runs[i].Outcome, runs[i].FinishedAt, runs[i].Error = OutcomeInterrupted, &f, InterruptedError
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("mark interrupted runs: %w", err)
	}
	return runs, nil
}
