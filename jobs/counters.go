package jobs

import "github.com/wopr-network/opsd/internal/metrics"

// skipReasoner is a job whose targets can be skipped for known reasons (counted by the Runner
// in opsd_backup_skipped_total).
type skipReasoner interface {
	SkipReasons() []string
}

// SkipReasons implements skipReasoner: a changed-only export skips unchanged containers.
func (c *ContainerExport) SkipReasons() []string {
	if c.cfg.ChangedOnly {
		return []string{"unchanged"}
	}
	return nil
}

// jobCounters lists the optional counters a job can increment, so they are created at 0.
func jobCounters(j Job) metrics.JobCounters {
	var c metrics.JobCounters
	if s, ok := j.(skipReasoner); ok {
		c.SkipReasons = s.SkipReasons()
	}
	_, c.Prune = j.(*Prune)
	return c
}
