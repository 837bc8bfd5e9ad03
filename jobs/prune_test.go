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

	"github.com/wopr-network/opsd/internal/artifact"
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
	// Debris: an old upload that never got a manifest, a fresh one (maybe still uploading), an
	// orphaned old manifest.
	for _, k := range []string{"on-demand/tenant_x/old-partial.tar.gz", "on-demand/tenant_x/fresh-partial.tar.gz", "on-demand/tenant_x/gone.tar.gz.manifest.json"} {
		store.Put(ctx, k, strings.NewReader("p"), storage.PutOptions{Size: 1})
	}
	old := now.Add(-48 * time.Hour)
	for _, k := range []string{"on-demand/tenant_x/old-partial.tar.gz", "on-demand/tenant_x/gone.tar.gz.manifest.json"} {
		os.Chtimes(filepath.Join(dir, k), old, old)
	}
	p := NewPrune("prune", PruneConfig{Rules: referenceRules(), Tiers: referenceTiers(), DeletesPerSecond: 10000}, store)
	res, err := p.WithDryRun(true).Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"DRY RUN", "on-demand/tenant_x: keep 1, would delete 9", "tier free (keep_daily=3 keep_weekly=0 on_demand_max=1 retention_days=7) from on-demand/tenant_x/snap",
		"policy last=1 expire=7d min=1", "keep          on-demand/tenant_x/snap" + now.Format("20060102") + ".tar.gz  (keep_last)  expires ",
		"expired ", "beyond the newest 1",
		"would delete debris  on-demand/tenant_x/old-partial.tar.gz", "would delete debris  on-demand/tenant_x/gone.tar.gz.manifest.json"} {
		if !strings.Contains(res.Report, want) {
			t.Fatalf("dry-run report lacks %q:\n%s", want, res.Report)
		}
	}
	if all, _ := storage.ListAll(ctx, store, ""); len(all) != 23 {
		t.Fatalf("dry run deleted something: %d objects", len(all))
	}
	if _, err := p.Run(ctx); err != nil {
		t.Fatal(err)
	}
	all, _ := storage.ListAll(ctx, store, "")
	var got []string
	for _, o := range all {
		got = append(got, o.Key)
	}
	today := "on-demand/tenant_x/snap" + now.Format("20060102") + ".tar.gz"
	want := []string{"on-demand/tenant_x/fresh-partial.tar.gz", today, today + ".manifest.json"}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("after prune: %v\nwant %v", got, want)
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
