package jobs

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/wopr-network/opsd/internal/storage"
	"github.com/wopr-network/opsd/internal/storage/local"
)

// TestScheduledDryRunPruneRecordedAsDryRun: a prune with dry_run: true in its config that runs
// on its schedule is recorded as a dry run: the history row says so (and "would delete"), the
// job's last success does not move, no prune counter counts deletions, and nothing is deleted.
func TestScheduledDryRunPruneRecordedAsDryRun(t *testing.T) {
	r := newRig(t)
	store, _ := local.New(t.TempDir())
	ctx := context.Background()
	now := time.Now()
	var objs []seedObj
	for d := 0; d < 10; d++ {
		objs = append(objs, seedObj{fmt.Sprintf("on-demand/tenant_x/snap%s.tar.gz", now.AddDate(0, 0, -d).Format("20060102")), "free", "snapshot"})
	}
	seed(t, store, objs)
	count := func() int {
		n := 0
		store.List(ctx, "", func(storage.ObjectInfo) error { n++; return nil })
		return n
	}
	before := count()
	p := NewPrune("prune", PruneConfig{Rules: referenceRules(), Tiers: referenceTiers(), DeletesPerSecond: 10000, DryRun: true}, store)
	o := r.runner.Run(ctx, p, time.Minute, TriggerSchedule)
	if o.Err != nil {
		t.Fatal(o.Err)
	}
	if after := count(); after != before {
		t.Fatalf("a dry run deleted %d objects", before-after)
	}
	last, err := r.state.LastRun(ctx, "prune")
	if err != nil || !strings.HasPrefix(last.Summary, DryRunPrefix+"would delete 18 objects") || strings.Contains(last.Summary, " deleted 18") {
		t.Fatalf("recorded run = %+v, %v", last, err)
	}
	if v := testutil.ToFloat64(r.metrics.JobLastSuccess.WithLabelValues("prune", "prune")); v != 0 {
		t.Fatalf("a dry run moved the prune's last success to %v", v)
	}
	if v := testutil.ToFloat64(r.metrics.PruneDeleted.WithLabelValues("prune")); v != 0 {
		t.Fatalf("a dry run counted %v deletions", v)
	}
	// The same job without dry_run is an ordinary run.
	o = r.runner.Run(ctx, p.WithDryRun(false), time.Minute, TriggerSchedule)
	if o.Err != nil {
		t.Fatal(o.Err)
	}
	last, _ = r.state.LastRun(ctx, "prune")
	if !strings.HasPrefix(last.Summary, "deleted 18 objects") || testutil.ToFloat64(r.metrics.JobLastSuccess.WithLabelValues("prune", "prune")) == 0 {
		t.Fatalf("real run = %+v", last)
	}
}

// TestDryRunIsNoSuccessAfterARestart: a scheduled dry run of prune does not become the job's
// last success when the next process seeds its gauges from the history (nor in /api/jobs or the
// fleet heartbeat, which read the same): it has not pruned.
func TestDryRunIsNoSuccessAfterARestart(t *testing.T) {
	r := newRig(t)
	store, _ := local.New(t.TempDir())
	ctx := context.Background()
	p := NewPrune("prune", PruneConfig{Rules: referenceRules(), Tiers: referenceTiers(), DeletesPerSecond: 10000, DryRun: true}, store)
	if o := r.runner.Run(ctx, p, time.Minute, TriggerSchedule); o.Err != nil {
		t.Fatal(o.Err)
	}
	if last, err := r.state.LastSuccess(ctx, "prune"); err == nil {
		t.Fatalf("the dry run is the job's last success: %+v", last)
	}
	// The next process: a fresh scheduler seeds the gauges from the history.
	r2 := newRig(t)
	r2.runner.State = r.state
	s, err := NewScheduler(r2.runner)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Apply([]Spec{{Job: p, Schedule: mustSchedule(t, "0 6 * * *"), Timeout: time.Minute, Enabled: true, Fingerprint: "1"}}); err != nil {
		t.Fatal(err)
	}
	if v := testutil.ToFloat64(r2.metrics.JobLastSuccess.WithLabelValues("prune", "prune")); v != 0 {
		t.Fatalf("after a restart the dry run is the prune's last success: %v", v)
	}
	infos := s.Jobs(ctx)
	if len(infos) != 1 || infos[0].LastSuccess != nil {
		t.Fatalf("/api/jobs after a dry run: %+v", infos)
	}
}
