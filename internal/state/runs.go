package state

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Run outcomes recorded in job_runs.
const (
	OutcomeRunning     = "running"
	OutcomeSuccess     = "success"
	OutcomeFailure     = "failure"
	OutcomeTimeout     = "timeout"
	OutcomeCanceled    = "canceled"
	OutcomeInterrupted = "interrupted" // the process died during the run
)

// Run is one row of job_runs.
type Run struct {
	ID         int64      `json:"id"`
	Job        string     `json:"job"`
	Kind       string     `json:"kind"`
	Trigger    string     `json:"trigger"`
	StartedAt  time.Time  `json:"startedAt"`
	FinishedAt *time.Time `json:"finishedAt"`
	Outcome    string     `json:"outcome"`
	Bytes      int64      `json:"bytes"`
	Error      string     `json:"error,omitempty"`
	Summary    string     `json:"summary,omitempty"`
	Phases     string     `json:"phases,omitempty"` // JSON
}

// StartRun records that a run started and returns its id. The row says "running" until
// FinishRun; one left so by a killed process is marked interrupted at the next start.
func (s *Store) StartRun(ctx context.Context, job, kind, trigger string, at time.Time) (int64, error) {
	res, err := s.db.ExecContext(ctx, `INSERT INTO job_runs (job, kind, trigger, started_at, outcome) VALUES (?, ?, ?, ?, ?)`,
		job, kind, trigger, at.UnixMilli(), OutcomeRunning)
	if err != nil {
		return 0, fmt.Errorf("start run of %s: %w", job, err)
	}
	return res.LastInsertId()
}

// FinishRun records how a run ended.
func (s *Store) FinishRun(ctx context.Context, r Run) error {
	_, err := s.db.ExecContext(ctx, `UPDATE job_runs SET finished_at=?, outcome=?, bytes=?, error=?, summary=?, phases=? WHERE id=?`,
		ms(*r.FinishedAt), r.Outcome, r.Bytes, nullString(r.Error), nullString(r.Summary), nullString(r.Phases), r.ID)
	if err != nil {
		return fmt.Errorf("finish run %d of %s: %w", r.ID, r.Job, err)
	}
	return nil
}

func nullString(s string) sql.NullString { return sql.NullString{String: s, Valid: s != ""} }

// MarkInterrupted marks runs left "running" by a previous process as interrupted.
func (s *Store) MarkInterrupted(ctx context.Context, at time.Time) (int64, error) {
	res, err := s.db.ExecContext(ctx, `UPDATE job_runs SET outcome=?, finished_at=?, error='opsd stopped during the run' WHERE outcome=?`,
		OutcomeInterrupted, at.UnixMilli(), OutcomeRunning)
	if err != nil {
		return 0, fmt.Errorf("mark interrupted runs: %w", err)
	}
	return res.RowsAffected()
}

const runCols = `id, job, kind, trigger, started_at, finished_at, outcome, bytes, error, summary, phases`

func scanRun(sc rowScanner) (Run, error) {
	var (
		r                 Run
		started, finished sql.NullInt64
		e, sum, ph        sql.NullString
	)
	if err := sc.Scan(&r.ID, &r.Job, &r.Kind, &r.Trigger, &started, &finished, &r.Outcome, &r.Bytes, &e, &sum, &ph); err != nil {
		return Run{}, err
	}
	r.StartedAt = *fromMS(started)
	r.FinishedAt = fromMS(finished)
	r.Error, r.Summary, r.Phases = e.String, sum.String, ph.String
	return r, nil
}

// LastRun returns the newest run of a job, ErrNotFound when it never ran.
func (s *Store) LastRun(ctx context.Context, job string) (Run, error) {
	return s.lastRun(ctx, `job=?`, job)
}

// LastSuccess returns the newest successful run of a job; a dry run (DryRunPrefix) is not one.
func (s *Store) LastSuccess(ctx context.Context, job string) (Run, error) {
	return s.lastRun(ctx, `job=? AND outcome='success' AND substr(coalesce(summary, ''), 1, ?) <> ?`, job, len(DryRunPrefix), DryRunPrefix)
}

// LastSucceeded returns the newest successful run of a job, a dry run included (it is a
// successful run of the job as configured, though not its last success), ErrNotFound when there
// is none.
func (s *Store) LastSucceeded(ctx context.Context, job string) (Run, error) {
	return s.lastRun(ctx, `job=? AND outcome='success'`, job)
}

// LastCrashed returns the newest run of a job that a dead process left running (marked
// interrupted with InterruptedError at a later start), ErrNotFound when there is none.
func (s *Store) LastCrashed(ctx context.Context, job string) (Run, error) {
	return s.lastRun(ctx, `job=? AND outcome=? AND error=?`, job, OutcomeInterrupted, InterruptedError)
}

// DryRunPrefix starts the recorded summary of a run of a job configured as a dry run (prune with
// dry_run: true): it succeeded, but it is not the job's last success (it has not pruned).
const DryRunPrefix = "dry run, nothing deleted: "

func (s *Store) lastRun(ctx context.Context, where string, args ...any) (Run, error) {
	r, err := scanRun(s.db.QueryRowContext(ctx, `SELECT `+runCols+` FROM job_runs WHERE `+where+` ORDER BY started_at DESC, id DESC LIMIT 1`, args...))
	if errors.Is(err, sql.ErrNoRows) {
		return Run{}, ErrNotFound
	}
	if err != nil {
		return Run{}, fmt.Errorf("last run: %w", err)
	}
	return r, nil
}

// Runs returns the newest runs of a job (all jobs when job is ""), newest first.
func (s *Store) Runs(ctx context.Context, job string, limit int) ([]Run, error) {
	q, args := newestOfJob(`SELECT `+runCols+` FROM job_runs`, "started_at", job, limit)
	return queryAll(ctx, s, "list runs", scanRun, q, args...)
}

// newestOfJob completes a SELECT of a table with a job column: the rows of job (every job's when
// job is ""), newest first by the time column at, then by id; at most limit.
func newestOfJob(sel, at, job string, limit int) (string, []any) {
	var args []any
	if job != "" {
		sel += ` WHERE job=?`
		args = append(args, job)
	}
	return sel + ` ORDER BY ` + at + ` DESC, id DESC LIMIT ?`, append(args, limit)
}

// ConsecutiveFailures counts the failed runs of a job since its last success.
func (s *Store) ConsecutiveFailures(ctx context.Context, job string) (int, error) {
	var n int
	err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM job_runs WHERE job=? AND outcome IN ('failure','timeout','interrupted')
		AND started_at > COALESCE((SELECT MAX(started_at) FROM job_runs WHERE job=? AND outcome='success'), 0)`, job, job).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count failures of %s: %w", job, err)
	}
	return n, nil
}

// Report is a stored drill or verification report.
type Report struct {
	ID        int64     `json:"id"`
	RunID     int64     `json:"runId"`
	Job       string    `json:"job"`
	Kind      string    `json:"kind"`
	CreatedAt time.Time `json:"createdAt"`
	Passed    bool      `json:"passed"`
	Body      string    `json:"body"` // JSON
}

// SaveReport stores a report.
func (s *Store) SaveReport(ctx context.Context, r Report) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO reports (run_id, job, kind, created_at, passed, body) VALUES (?, ?, ?, ?, ?, ?)`,
		r.RunID, r.Job, r.Kind, r.CreatedAt.UnixMilli(), r.Passed, r.Body)
	if err != nil {
		return fmt.Errorf("save report of %s: %w", r.Job, err)
	}
	return nil
}

// Reports returns the newest reports of a job (all jobs when job is ""), newest first.
func (s *Store) Reports(ctx context.Context, job string, limit int) ([]Report, error) {
	q, args := newestOfJob(`SELECT `+reportCols+` FROM reports`, "created_at", job, limit)
	return queryAll(ctx, s, "list reports", scanReport, q, args...)
}

// reportCols are the columns scanReport reads.
const reportCols = `id, COALESCE(run_id, 0), job, kind, created_at, passed, body`

func scanReport(sc rowScanner) (Report, error) {
	var r Report
	var created int64
	if err := sc.Scan(&r.ID, &r.RunID, &r.Job, &r.Kind, &created, &r.Passed, &r.Body); err != nil {
		return Report{}, err
	}
	r.CreatedAt = time.UnixMilli(created).UTC()
	return r, nil
}

// LastFinishedRun returns the run of a job that finished last (a run in progress is not one).
func (s *Store) LastFinishedRun(ctx context.Context, job string) (Run, error) {
	r, err := scanRun(s.db.QueryRowContext(ctx, `SELECT `+runCols+` FROM job_runs WHERE job=? AND finished_at IS NOT NULL
		ORDER BY finished_at DESC, id DESC LIMIT 1`, job))
	if errors.Is(err, sql.ErrNoRows) {
		return Run{}, ErrNotFound
	}
	if err != nil {
		return Run{}, fmt.Errorf("last finished run: %w", err)
	}
	return r, nil
}

// RunsMark says where the history of runs stands: the newest run's id and how many runs are in
// progress. Every write of a run (its start, its end, a run marked interrupted) changes it, and a
// backup status is only recorded by a run: a mark equal to one read earlier means no run started
// or ended in between, in any process.
type RunsMark struct {
	MaxID   int64
	Running int64
}

// RunsMark reads the mark (one query: the newest id from the rowid, a count of the runs in
// progress).
func (s *Store) RunsMark(ctx context.Context) (RunsMark, error) {
	var m RunsMark
	err := s.db.QueryRowContext(ctx, `SELECT coalesce(max(id), 0), (SELECT count(*) FROM job_runs WHERE outcome=?) FROM job_runs`,
		OutcomeRunning).Scan(&m.MaxID, &m.Running)
	if err != nil {
		return RunsMark{}, fmt.Errorf("runs mark: %w", err)
	}
	return m, nil
}
