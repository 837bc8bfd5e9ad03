package metrics

import "github.com/prometheus/client_golang/prometheus"

// jobLabelNames are the names a job's label has had ("job" is being renamed "job_name"):
// deleting by both keeps ForgetJobSeries right across the rename.
var jobLabelNames = []string{"job", "job_name"}

// ForgetJobSeries deletes every series of a job removed from the config, beyond the gauges
// ForgetJob drops: run counters and durations, skips, bytes, per-target throughput and phases,
// drill, verification and prune results, and its targets in the backup tracker. A removed job
// then leaves nothing behind on /metrics.
func (m *Metrics) ForgetJobSeries(job string) {
	for _, name := range jobLabelNames {
		l := prometheus.Labels{name: job}
		m.JobRuns.DeletePartialMatch(l)
		m.JobDuration.DeletePartialMatch(l)
		m.JobSkipped.DeletePartialMatch(l)
		m.JobPhase.DeletePartialMatch(l)
		m.BytesUploaded.DeletePartialMatch(l)
		m.TargetSkipped.DeletePartialMatch(l)
		m.Throughput.DeletePartialMatch(l)
		m.BackupPhase.DeletePartialMatch(l)
		m.OffsiteMissing.DeletePartialMatch(l)
		m.OffsiteMismatched.DeletePartialMatch(l)
		m.OffsiteLastVerified.DeletePartialMatch(l)
		m.PruneDeleted.DeletePartialMatch(l)
		m.PruneBytesFreed.DeletePartialMatch(l)
		m.PruneKept.DeletePartialMatch(l)
		m.PruneRefused.DeletePartialMatch(l)
	}
	for _, v := range []*prometheus.GaugeVec{m.DrillRTO, m.DrillRTOTarget, m.DrillLastResult, m.DrillLastSuccess} {
		v.DeleteLabelValues(job)
	}
	m.DrillPhase.DeletePartialMatch(prometheus.Labels{"drill": job})
	m.Backups.forgetJob(job)
}

// ForgetTarget deletes the per-target series of a job's target that no longer exists.
func (m *Metrics) ForgetTarget(job, target string) {
	for _, name := range jobLabelNames {
		m.Throughput.DeletePartialMatch(prometheus.Labels{name: job, "target": target})
		m.BackupPhase.DeletePartialMatch(prometheus.Labels{name: job, "target": target})
	}
	m.Backups.DeleteFor(job, target)
}

// forgetJob drops every target of a job.
func (t *BackupTracker) forgetJob(job string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for k, e := range t.targets {
		if _, j := splitKey(k); j == job {
			t.remove(k, e)
		}
	}
	t.setCounts()
}
