package jobs

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/wopr-network/opsd/internal/artifact"
	"github.com/wopr-network/opsd/internal/artifact/artifacttest"
	"github.com/wopr-network/opsd/internal/prefixlock"
	"github.com/wopr-network/opsd/internal/storage"
	"github.com/wopr-network/opsd/internal/storage/local"
	"github.com/wopr-network/opsd/internal/storage/storagetest"
)

var pruneNow = time.Date(2026, 11, 26, 6, 0, 0, 0, time.UTC)

// referenceRules are the REFERENCE.md retention rules.
func referenceRules() []PruneRule {
	return []PruneRule{
		{Prefix: "platform/", Sets: true, Policy: Policy{KeepWithin: 30 * 24 * time.Hour, MinKeep: 1}},
		{Prefix: "nightly/", Depth: 2, TierPolicy: "nightly", Policy: Policy{MinKeep: 1}},
		{Prefix: "on-demand/", Depth: 1, TierPolicy: "on_demand", Policy: Policy{MinKeep: 1}},
		{Prefix: "pre-restore/", Depth: 1, Policy: Policy{KeepWithin: 30 * 24 * time.Hour, MinKeep: 1}},
	}
}

func referenceTiers() map[string]Tier {
	return map[string]Tier{"free": {3, 0, 1, 7}, "starter": {7, 4, 5, 30}, "pro": {7, 4, 20, 90}, "enterprise": {7, 4, 0, 365}}
}

type seedObj struct {
	key, tier, kind string
}

// seed writes artifacts with manifests, 8 at a time.
func seed(t *testing.T, store storage.Store, objs []seedObj) {
	t.Helper()
	ctx := context.Background()
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	errs := make(chan error, len(objs))
	for _, o := range objs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if _, err := store.Put(ctx, o.key, strings.NewReader("x"), storage.PutOptions{Size: 1}); err != nil {
				errs <- err
				return
			}
			if err := artifact.WriteManifest(ctx, store, artifact.Manifest{Key: o.key, Kind: o.kind, Tier: o.tier, Size: 1, SHA256: "00"}); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

func yearOfBackups() (objs []seedObj, want []string) {
	// pruneNow is a Thursday: the 7 newest are Nov 20-26, then the newest of the 4 ISO weeks
	// before them: Nov 19, 15, 8 and 1 (days back 7, 11, 18, 25).
	keep := map[string]map[int]bool{"free": {0: true, 1: true, 2: true}}
	for _, tier := range []string{"starter", "pro", "enterprise"} {
		keep[tier] = map[int]bool{7: true, 11: true, 18: true, 25: true}
		for d := 0; d < 7; d++ {
			keep[tier][d] = true
		}
	}
	for _, tier := range []string{"free", "starter", "pro", "enterprise"} {
		c := "tenant_" + tier
		for d := 0; d < 365; d++ {
			date := pruneNow.AddDate(0, 0, -d).Format("20060102")
			key := fmt.Sprintf("nightly/n1/%s/%s_%s.tar.gz", c, c, date)
			objs = append(objs, seedObj{key, tier, "container"})
			if keep[tier][d] {
				want = append(want, key, artifact.ManifestKey(key))
			}
		}
	}
	for d := 0; d < 60; d++ {
		date := pruneNow.AddDate(0, 0, -d).Format("20060102")
		for _, db := range []string{"auth", "billing"} {
			key := fmt.Sprintf("platform/%s/%s-%s.db", date, db, date)
			objs = append(objs, seedObj{key, "", "sqlite"})
			if d <= 30 {
				want = append(want, key, artifact.ManifestKey(key))
			}
		}
	}
	sort.Strings(want)
	return objs, want
}

func runPruneYear(t *testing.T, store storage.Store) {
	objs, want := yearOfBackups()
	seed(t, store, objs)
	p := NewPrune("prune", PruneConfig{Rules: referenceRules(), Tiers: referenceTiers(), DeletesPerSecond: 100000, Now: func() time.Time { return pruneNow }}, store)
	res, err := p.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	all, _ := storage.ListAll(context.Background(), store, "")
	var got []string
	for _, o := range all {
		got = append(got, o.Key)
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("after prune: %d keys, want %d\n%s", len(got), len(want), diff(got, want))
	}
	if res.Prune.Deleted != 2*len(objs)-len(want) || res.Prune.Refused != 0 {
		t.Fatalf("stats: %+v", res.Prune)
	}
	res, err = p.Run(context.Background())
	if err != nil || res.Prune.Deleted != 0 {
		t.Fatalf("second run deleted %d: %v", res.Prune.Deleted, err)
	}
}

func diff(got, want []string) string {
	g, w := map[string]bool{}, map[string]bool{}
	for _, k := range got {
		g[k] = true
	}
	for _, k := range want {
		w[k] = true
	}
	var b strings.Builder
	n := 0
	for _, k := range want {
		if !g[k] && n < 10 {
			fmt.Fprintf(&b, "missing %s\n", k)
			n++
		}
	}
	for _, k := range got {
		if !w[k] && n < 20 {
			fmt.Fprintf(&b, "extra   %s\n", k)
			n++
		}
	}
	return b.String()
}

func TestPruneYearInProcessS3(t *testing.T) {
	fake := storagetest.NewFakeS3(t)
	runPruneYear(t, storagetest.NewS3(t, fake.Config))
}

func TestPruneYearSeaweedFS(t *testing.T) {
	runPruneYear(t, storagetest.NewS3(t, storagetest.RealS3(t)))
}

func TestPruneDebrisGraceAndDryRun(t *testing.T) {
	dir := t.TempDir()
	store, _ := local.New(dir)
	ctx := context.Background()
	now := time.Now()
	var objs []seedObj
	for d := 0; d < 10; d++ {
		date := now.AddDate(0, 0, -d).Format("20060102")
		objs = append(objs, seedObj{fmt.Sprintf("on-demand/tenant_x/snap%s.tar.gz", date), "free", "snapshot"})
	}
	seed(t, store, objs)
	// Debris is opsd's own: an old staging upload that never finished, a fresh one (maybe still
	// uploading), an orphaned old manifest. A manual safety copy is foreign: never debris.
	oldStaging := "on-demand/tenant_x/snap-old.tar.gz" + storage.StagingMarker + "0123456789abcdef"
	freshStaging := "on-demand/tenant_x/snap-new.tar.gz" + storage.StagingMarker + "fedcba9876543210"
	foreign := "on-demand/tenant_x/manual-safety-copy.tar.gz"
	for _, k := range []string{oldStaging, freshStaging, "on-demand/tenant_x/gone.tar.gz.manifest.json", foreign} {
		store.Put(ctx, k, strings.NewReader("p"), storage.PutOptions{Size: 1})
	}
	old := now.Add(-48 * time.Hour)
	for _, k := range []string{oldStaging, "on-demand/tenant_x/gone.tar.gz.manifest.json", foreign} {
		os.Chtimes(filepath.Join(dir, k), old, old)
	}
	p := NewPrune("prune", PruneConfig{Rules: referenceRules(), Tiers: referenceTiers(), DeletesPerSecond: 10000}, store)
	dry, err := p.WithDryRun(true).Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"DRY RUN", "on-demand/tenant_x: keep 1, would delete 9", "tier free (keep_daily=3 keep_weekly=0 on_demand_max=1 retention_days=7) from on-demand/tenant_x/snap",
		"policy last=1 expire=7d min=1", "keep          on-demand/tenant_x/snap" + now.Format("20060102") + ".tar.gz  (keep_last)  expires ",
		"expired ", "beyond the newest 1",
		"would delete debris  " + oldStaging, "would delete debris  on-demand/tenant_x/gone.tar.gz.manifest.json",
		"keep foreign    " + foreign} {
		if !strings.Contains(dry.Report, want) {
			t.Fatalf("dry-run report lacks %q:\n%s", want, dry.Report)
		}
	}
	if strings.Contains(dry.Report, freshStaging) {
		t.Fatalf("dry run plans to delete an upload younger than grace:\n%s", dry.Report)
	}
	before, _ := storage.ListAll(ctx, store, "")
	if len(before) != 24 {
		t.Fatalf("dry run deleted something: %d objects", len(before))
	}
	res, err := p.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	all, _ := storage.ListAll(ctx, store, "")
	var got []string
	for _, o := range all {
		got = append(got, o.Key)
	}
	today := "on-demand/tenant_x/snap" + now.Format("20060102") + ".tar.gz"
	want := []string{foreign, freshStaging, today, today + ".manifest.json"}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("after prune: %v\nwant %v", got, want)
	}
	// The dry run's summary counts exactly what the real run deleted.
	if deleted := len(before) - len(all); dry.Prune.Deleted != deleted || res.Prune.Deleted != deleted || dry.Prune.BytesFreed != res.Prune.BytesFreed {
		t.Fatalf("dry run would delete %d objects (%d bytes), the run deleted %d (%d bytes; %d gone from the store)",
			dry.Prune.Deleted, dry.Prune.BytesFreed, res.Prune.Deleted, res.Prune.BytesFreed, deleted)
	}
	if res.Prune.Foreign != 1 || !strings.Contains(res.Summary, "1 foreign") {
		t.Fatalf("foreign objects: %d (%s)", res.Prune.Foreign, res.Summary)
	}
}

// TestPruneForeignObjectsOnS3: a bucket holding the old scripts' backups, a manual upload and the
// runbook's pre-restore copies next to opsd's. Prune deletes only what opsd wrote (its expired
// backups, a staging upload, an object carrying opsd's upload marker without a manifest), keeps
// and counts the foreign objects, and deletes those only under a rule that opts in. The dry run
// counts exactly what the real run deletes.
func TestPruneForeignObjectsOnS3(t *testing.T) {
	f := storagetest.NewFakeS3(t)
	store := storagetest.NewS3(t, f.Config)
	ctx := context.Background()
	var objs []seedObj
	for d := 0; d < 5; d++ {
		date := pruneNow.AddDate(0, 0, -d).Format("20060102")
		objs = append(objs, seedObj{fmt.Sprintf("on-demand/tenant_y/snap%s.tar.gz", date), "free", "snapshot"})
	}
	seed(t, store, objs)
	put := func(k string, meta map[string]string) {
		if _, err := store.Put(ctx, k, strings.NewReader("foreign!"), storage.PutOptions{Size: 8, Metadata: meta}); err != nil {
			t.Fatal(err)
		}
	}
	foreign := []string{
		"nightly/node-1/tenant_old/tenant_old_20250101.tar.gz", // the old scripts' backup
		"on-demand/tenant_y/s3cmd-put-safety-copy.tar.gz",      // a manual s3cmd put
		"pre-restore/auth/20260101-auth.db",                    // the runbook's own pre-restore upload
	}
	for _, k := range foreign {
		put(k, nil)
	}
	staging := "on-demand/tenant_y/x.tar.gz" + storage.StagingMarker + "00000000000000aa"
	put(staging, map[string]string{storage.UploadMetaKey: "00000000000000aa"})
	marked := "on-demand/tenant_y/published-without-manifest.tar.gz"
	put(marked, map[string]string{storage.UploadMetaKey: "00000000000000bb"})

	run := func(rules []PruneRule, dry bool) Result {
		t.Helper()
		// Everything counts as old: the clock is a day after the uploads.
		p := NewPrune("prune", PruneConfig{Rules: rules, Tiers: referenceTiers(), DeletesPerSecond: 10000, Now: func() time.Time { return time.Now().Add(24 * time.Hour) }}, store)
		res, err := p.WithDryRun(dry).Run(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	count := func() int {
		all, _ := storage.ListAll(ctx, store, "")
		return len(all)
	}
	dry := run(referenceRules(), true)
	for _, k := range foreign {
		if !strings.Contains(dry.Report, "keep foreign    "+k) {
			t.Fatalf("dry run does not list %s as foreign:\n%s", k, dry.Report)
		}
	}
	for _, k := range []string{staging, marked} {
		if !strings.Contains(dry.Report, "would delete debris  "+k) {
			t.Fatalf("dry run does not plan to delete opsd's debris %s:\n%s", k, dry.Report)
		}
	}
	before := count()
	res := run(referenceRules(), false)
	if deleted := before - count(); dry.Prune.Deleted != deleted || res.Prune.Deleted != deleted {
		t.Fatalf("dry run said %d, the run said %d, the store lost %d objects", dry.Prune.Deleted, res.Prune.Deleted, deleted)
	}
	for _, k := range foreign {
		if !f.HasObject(k) {
			t.Fatalf("prune deleted the foreign object %s", k)
		}
	}
	for _, k := range []string{staging, marked} {
		if f.HasObject(k) {
			t.Fatalf("prune kept opsd's debris %s", k)
		}
	}
	if res.Prune.Foreign != len(foreign) {
		t.Fatalf("foreign objects counted: %d, want %d", res.Prune.Foreign, len(foreign))
	}
	// The metric: through the Runner, at 0 before, the count after.
	r := newRig(t)
	j := NewPrune("prune-metric", PruneConfig{Rules: referenceRules(), Tiers: referenceTiers(), DeletesPerSecond: 10000}, store)
	if o := r.runner.Run(ctx, j, time.Minute, TriggerManual); !o.OK() {
		t.Fatal(o.Err)
	}
	if got := testutil.ToFloat64(r.metrics.PruneForeign.WithLabelValues("prune-metric")); got != float64(len(foreign)) {
		t.Fatalf("opsd_prune_foreign_objects = %v, want %d", got, len(foreign))
	}
	// Opting in on one prefix deletes the foreign objects there, and only there.
	rules := referenceRules()
	rules[2].DeleteForeign = true // on-demand/
	dry = run(rules, true)
	if !strings.Contains(dry.Report, "would delete foreign  on-demand/tenant_y/s3cmd-put-safety-copy.tar.gz") {
		t.Fatalf("opted-in dry run:\n%s", dry.Report)
	}
	before = count()
	res = run(rules, false)
	if deleted := before - count(); dry.Prune.Deleted != deleted || res.Prune.Deleted != deleted || deleted != 1 {
		t.Fatalf("opt-in: dry run said %d, the run said %d, the store lost %d objects (want 1)", dry.Prune.Deleted, res.Prune.Deleted, deleted)
	}
	if f.HasObject(foreign[1]) || !f.HasObject(foreign[0]) || !f.HasObject(foreign[2]) {
		t.Fatal("delete_foreign on on-demand/ did not delete exactly the foreign object under on-demand/")
	}
}

func TestPruneWaitsForDrillsAndSkips(t *testing.T) {
	store, _ := local.New(t.TempDir())
	seed(t, store, []seedObj{{"platform/20200101/auth-20200101.db", "", "sqlite"}, {"platform/20260101/auth-20260101.db", "", "sqlite"}})
	locks := prefixlock.New()
	release, _ := locks.TryAcquire("platform/20260101/", false, "drill platform-drill")
	defer release()
	p := NewPrune("prune", PruneConfig{Rules: referenceRules(), Tiers: referenceTiers(), Locks: locks, LockWait: 50 * time.Millisecond}, store)
	res, err := p.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(res.Report, "skipped: a drill, verification or restore held platform/ for more than 50ms") {
		t.Fatalf("report:\n%s", res.Report)
	}
	if all, _ := storage.ListAll(context.Background(), store, "platform/"); len(all) != 4 {
		t.Fatalf("prune deleted under a drill's lock: %v", all)
	}
}

func TestPrunePlanOf10000Objects(t *testing.T) {
	store, _ := local.New(t.TempDir())
	var objs []seedObj
	for c := 0; c < 50; c++ {
		for d := 0; d < 100; d++ {
			date := pruneNow.AddDate(0, 0, -d).Format("20060102")
			objs = append(objs, seedObj{fmt.Sprintf("nightly/n1/tenant_%02d/tenant_%02d_%s.tar.gz", c, c, date), "pro", "container"})
		}
	}
	seed(t, store, objs) // 5,000 artifacts + 5,000 manifests
	start := time.Now()
	res, err := NewPrune("prune", PruneConfig{Rules: referenceRules(), Tiers: referenceTiers(), DryRun: true, Now: func() time.Time { return pruneNow }}, store).Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if res.Prune.Kept != 50*11 || res.Prune.Deleted != 50*89*2 {
		t.Fatalf("plan: %+v", res.Prune)
	}
	t.Logf("planned 10,000 objects in %s", time.Since(start))
}

// TestPruneRecoversUploadCrashedBeforeManifest: opsd dies right after publishing a new backup
// over an old one, before writing its manifest (a panic in the hook stands in for the crash).
// The old manifest no longer matches the object; prune's recovery writes the staged manifest,
// removes the staging objects, and its dry run plans exactly what the real run deletes.
func TestPruneRecoversUploadCrashedBeforeManifest(t *testing.T) {
	store, _ := local.New(t.TempDir())
	ctx := context.Background()
	key := "on-demand/tenant_z/snap20261120.tar.gz"
	if _, err := artifact.Store(ctx, store, strings.NewReader("old backup"), artifact.Options{}, artifact.Manifest{Key: key, Kind: "snapshot", Tier: "free"}); err != nil {
		t.Fatal(err)
	}
	func() {
		defer func() { recover() }()
		hctx := artifact.WithHooks(ctx, artifact.Hooks{Published: func(string) { panic("opsd killed") }})
		artifact.Store(hctx, store, strings.NewReader("the new backup"), artifact.Options{}, artifact.Manifest{Key: key, Kind: "snapshot", Tier: "free"})
		t.Fatal("the crash hook did not run")
	}()
	if problems, _, _ := artifacttest.Problems(ctx, store, ""); len(problems) != 1 {
		t.Fatalf("after the crash: %v", problems)
	}
	p := NewPrune("prune", PruneConfig{Rules: referenceRules(), Tiers: referenceTiers(), DeletesPerSecond: 10000, Now: func() time.Time { return time.Now().Add(24 * time.Hour) }}, store)
	dry, err := p.WithDryRun(true).Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(dry.Report, "recover         "+key) || strings.Contains(dry.Report, "debris") {
		t.Fatalf("dry run:\n%s", dry.Report)
	}
	res, err := p.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if dry.Prune.Deleted != res.Prune.Deleted {
		t.Fatalf("dry run would delete %d, the run deleted %d", dry.Prune.Deleted, res.Prune.Deleted)
	}
	if n := artifacttest.Check(t, store, ""); n != 1 {
		t.Fatalf("checker verified %d artifacts", n)
	}
	m, _ := artifact.ReadManifest(ctx, store, key)
	if m.Size != int64(len("the new backup")) {
		t.Fatalf("recovered manifest: %+v", m)
	}
	if all, _ := storage.ListAll(ctx, store, ""); len(all) != 2 {
		t.Fatalf("left after recovery: %v", all)
	}
}

// TestPruneForeignGaugeAtZeroFromStart: a scheduled prune job's opsd_prune_foreign_objects
// series exists at 0 before its first run.
func TestPruneForeignGaugeAtZeroFromStart(t *testing.T) {
	r := newRig(t)
	s, err := NewScheduler(r.runner)
	if err != nil {
		t.Fatal(err)
	}
	store, _ := local.New(t.TempDir())
	spec := Spec{Job: NewPrune("nightly-prune", PruneConfig{Rules: referenceRules()}, store), Schedule: mustSchedule(t, "@daily"), Timeout: time.Minute, Enabled: true, Fingerprint: "a"}
	if err := s.Apply([]Spec{spec}); err != nil {
		t.Fatal(err)
	}
	if n := testutil.CollectAndCount(r.metrics.PruneForeign, "opsd_prune_foreign_objects"); n != 1 {
		t.Fatalf("opsd_prune_foreign_objects has %d series before the first run, want 1 (at 0)", n)
	}
	if v := testutil.ToFloat64(r.metrics.PruneForeign.WithLabelValues("nightly-prune")); v != 0 {
		t.Fatalf("opsd_prune_foreign_objects = %v before the first run", v)
	}
}
