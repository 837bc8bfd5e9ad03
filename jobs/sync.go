package jobs

import (
	"context"
	"errors"
	"time"

	"github.com/wopr-network/opsd/internal/metrics"
	"github.com/wopr-network/opsd/internal/state"
)

// shownRuns is what a job's last-run gauges say: when its last run and its last success ended.
type shownRuns struct {
	run, success time.Time
}

// showRun notes that the gauges now show a run of the job that ended at finished (a success
// too when success); r.gaugeMu is held.
func (r *Runner) showRun(name, kind string, finished time.Time, success bool) {
	if r.shown == nil {
		r.shown = map[[2]string]shownRuns{}
	}
	k := [2]string{name, kind}
	s := r.shown[k]
	s.run = finished
	if success {
		s.success = finished
	}
	r.shown[k] = s
}

// forgetShown forgets what the gauges of a job showed (its series are forgotten, or it was
// removed from the config): seeding it again sets them whatever they said.
func (r *Runner) forgetShown(name string) {
	r.gaugeMu.Lock()
	defer r.gaugeMu.Unlock()
	for k := range r.shown {
		if k[0] == name {
			delete(r.shown, k)
		}
	}
}

// syncJob sets a job's last-run gauges (opsd_job_last_run_timestamp_seconds,
// opsd_job_last_run_success, opsd_job_last_success_timestamp_seconds) from the state database
// where it holds a run that ended after the one they show: at start, from the history; later,
// from a run another process (a CLI command) recorded. A run of this process that ended after
// the database was read is kept. A newer success also clears the job's "interrupted" problem.
func (r *Runner) syncJob(ctx context.Context, name, kind string) error {
	last, err := r.State.LastFinishedRun(ctx, name)
	if errors.Is(err, state.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	ok, err := r.State.LastSuccess(ctx, name)
	if errors.Is(err, state.ErrNotFound) {
		ok = state.Run{}
	} else if err != nil {
		return err
	}
	r.gaugeMu.Lock()
	defer r.gaugeMu.Unlock()
	m := r.Metrics
	shown := r.shown[[2]string{name, kind}]
	if last.FinishedAt != nil && msAfter(*last.FinishedAt, shown.run) {
		m.JobLastRun.WithLabelValues(name, kind).Set(float64(last.FinishedAt.UnixMilli()) / 1000)
		v := 0.0
		if last.Outcome == state.OutcomeSuccess {
			v = 1
			if r.Problems != nil {
				r.Problems.Clear("interrupted:" + name)
			}
		}
		m.JobLastRunSuccess.WithLabelValues(name, kind).Set(v)
		r.showRun(name, kind, *last.FinishedAt, false)
	}
	if ok.FinishedAt != nil && msAfter(*ok.FinishedAt, shown.success) {
		m.JobLastSuccess.WithLabelValues(name, kind).Set(float64(ok.FinishedAt.UnixMilli()) / 1000)
		s := r.shown[[2]string{name, kind}]
		s.success = *ok.FinishedAt
		r.shown[[2]string{name, kind}] = s
	}
	return nil
}

// msAfter reports whether a is after b at the state database's precision (milliseconds).
func msAfter(a, b time.Time) bool {
	if b.IsZero() {
		return true
	}
	return a.UnixMilli() > b.UnixMilli()
}

// targetState is the tracker's state of a backup_status row.
func targetState(b state.BackupStatus) metrics.TargetState {
	ts := metrics.TargetState{Job: b.Job, Kind: b.Kind, Node: b.NodeID, LastOK: b.LastBackupSuccess, At: b.UpdatedAt}
	if b.LastBackupAt != nil {
		ts.LastSuccess = *b.LastBackupAt
	}
	if b.LastBackupSizeMB != nil {
		ts.SizeBytes = int64(*b.LastBackupSizeMB * 1024 * 1024)
	}
	return ts
}

// SyncMetrics brings the metrics this process seeded from the state database at start up to
// date with what other processes recorded there since: a CLI command (`opsd backup db`, `opsd
// run`, `opsd forget`) writes its runs and its targets' status to the same database, and without
// this the daemon's opsd_backup_stale, opsd_backup_last_success_timestamp_seconds and
// opsd_job_last_run_success would keep saying what they said until the job's next scheduled run.
//
// It costs one small query while no run started or ended anywhere since the last call
// (state.RunsMark); otherwise it reads each configured job's newest runs and every backup_status
// row. Newer wins: a job's gauges and a target's series take a row only when it was recorded
// after what they show, so nothing a run of this process set after the read is undone, and a
// target retired elsewhere stops being exported. Counters, durations and phases count this
// process's runs only and are left alone.
func (s *Scheduler) SyncMetrics(ctx context.Context) error {
	st := s.runner.State
	mark, err := st.RunsMark(ctx)
	if err != nil {
		return err
	}
	s.syncMu.Lock()
	defer s.syncMu.Unlock()
	if s.synced && mark == s.mark {
		return nil
	}
	rows, err := st.ListBackupRows(ctx, time.Now(), time.Hour)
	if err != nil {
		return err
	}
	// Under s.mu: a job the config removes meanwhile does not get its series back.
	s.mu.Lock()
	defer s.mu.Unlock()
	configured := map[string]bool{"": true}
	for name, e := range s.entries {
		configured[name] = true
		if err := s.runner.syncJob(ctx, name, e.spec.Job.Kind()); err != nil {
			return err
		}
	}
	b := s.runner.Metrics.Backups
	for _, row := range rows {
		if !configured[row.Job] {
			continue
		}
		if row.RetiredAt != nil {
			b.DeleteForIfNotNewer(row.Job, row.ContainerID, row.UpdatedAt)
			continue
		}
		b.SetIfNewer(row.ContainerID, targetState(row))
	}
	s.mark, s.synced = mark, true
	return nil
}
