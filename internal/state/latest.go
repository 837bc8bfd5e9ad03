package state

import (
	"context"
	"strings"
)

// LatestReportsByJob returns the newest report of every job whose reports are of one of kinds,
// ordered by job: each job's last word, so one drill's success never hides another's failure.
func (s *Store) LatestReportsByJob(ctx context.Context, kinds ...string) ([]Report, error) {
	if len(kinds) == 0 {
		return nil, nil
	}
	args := make([]any, len(kinds))
	for i, k := range kinds {
		args[i] = k
	}
	in := strings.TrimSuffix(strings.Repeat("?,", len(kinds)), ",")
	return queryAll(ctx, s, "latest reports", scanReport, `SELECT r.id, COALESCE(r.run_id, 0), r.job, r.kind, r.created_at, r.passed, r.body FROM reports r
		WHERE r.kind IN (`+in+`) AND r.id = (SELECT r2.id FROM reports r2 WHERE r2.job = r.job AND r2.kind = r.kind ORDER BY r2.created_at DESC, r2.id DESC LIMIT 1)
		ORDER BY r.job, r.kind`, args...)
}
