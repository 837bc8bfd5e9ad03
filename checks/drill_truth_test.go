package checks

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"

	"github.com/wopr-network/opsd/internal/metrics"
	"github.com/wopr-network/opsd/internal/state"
	"github.com/wopr-network/opsd/internal/storage/local"
	"github.com/wopr-network/opsd/internal/telemetry"
	"github.com/wopr-network/opsd/jobs"
)

// TestDrillThatFailsBeforeRestoringIsAFailedDrill: a drill passes, then the next run of the
// same drill fails before it restores anything (no backup set is left to drill). Through the
// Runner, as in the daemon, opsd_drill_last_result says 0 and the newest stored report of the
// drill (what the drill_failed alert reads) did not pass: the last drill's pass is not reported
// as the drill's state.
func TestDrillThatFailsBeforeRestoringIsAFailedDrill(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st, err := state.Open(ctx, filepath.Join(dir, "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	m := metrics.New(prometheus.NewRegistry(), "test")
	sn, _ := telemetry.NewSentry(telemetry.SentryOptions{}, nil)
	r := jobs.NewRunner(st, m, sn, zerolog.New(zerolog.NewTestWriter(t)), "n1", 2)

	store, _ := local.New(filepath.Join(dir, "store"))
	backupSet(t, t.TempDir(), store, day1, nil, nil)
	if o := r.Run(ctx, newDrill(store, t.TempDir(), nil), time.Minute, jobs.TriggerManual); !o.OK() {
		t.Fatalf("first drill: %v", o.Err)
	}
	if v := testutil.ToFloat64(m.DrillLastResult.WithLabelValues("platform-drill")); v != 1 {
		t.Fatalf("opsd_drill_last_result after a passing drill: %v", v)
	}
	empty, _ := local.New(filepath.Join(dir, "empty"))
	if o := r.Run(ctx, newDrill(empty, t.TempDir(), nil), time.Minute, jobs.TriggerManual); o.OK() {
		t.Fatal("a drill with no backup set passed")
	}
	if v := testutil.ToFloat64(m.DrillLastResult.WithLabelValues("platform-drill")); v != 0 {
		t.Errorf("opsd_drill_last_result after a drill that found nothing to restore: %v, want 0", v)
	}
	reps, err := st.LatestReportsByJob(ctx, "sqlite_drill")
	if err != nil {
		t.Fatal(err)
	}
	if len(reps) != 1 || reps[0].Passed {
		t.Errorf("newest stored report of the drill after it failed: %+v, want one that did not pass", reps)
	}
}
