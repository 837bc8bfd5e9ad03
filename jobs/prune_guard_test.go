package jobs

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wopr-network/opsd/internal/artifact"
	"github.com/wopr-network/opsd/internal/storage"
	"github.com/wopr-network/opsd/internal/storage/local"
	"github.com/wopr-network/opsd/internal/storage/storagetest"
)

// TestPruneFutureDatedSetAgesNothingOut: one platform set dated a year ahead (a host whose clock
// was wrong for a night) is the newest backup; keep_within counts from it, so without a cap at
// now every real set of the last 30 days would be "older than 30 days" and go.
func TestPruneFutureDatedSetAgesNothingOut(t *testing.T) {
	store, _ := local.New(t.TempDir())
	var objs []seedObj
	var want []string
	for d := 0; d < 10; d++ {
		date := pruneNow.AddDate(0, 0, -d).Format("20060102")
		key := fmt.Sprintf("platform/%s/auth-%s.db", date, date)
		objs = append(objs, seedObj{key, "", "sqlite"})
		want = append(want, key, artifact.ManifestKey(key))
	}
	future := pruneNow.AddDate(1, 0, 0).Format("20060102")
	fkey := fmt.Sprintf("platform/%s/auth-%s.db", future, future)
	objs = append(objs, seedObj{fkey, "", "sqlite"})
	want = append(want, fkey, artifact.ManifestKey(fkey))
	seed(t, store, objs)
	p := NewPrune("prune", PruneConfig{Rules: referenceRules(), Tiers: referenceTiers(), DeletesPerSecond: 100000, Now: func() time.Time { return pruneNow }}, store)
	res, err := p.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got := storeKeys(t, store, "platform/"); len(got) != len(want) {
		t.Fatalf("kept %d objects, want %d (every set of the last 30 days):\n%s", len(got), len(want), res.Report)
	}
}

// TestOrphanPolicyOffWhenTenantRecordIsEmpty: a tenant query that answers no row at all (a
// restored-empty table, a query against the wrong schema) does not make every tenant an orphan.
func TestOrphanPolicyOffWhenTenantRecordIsEmpty(t *testing.T) {
	store, _ := local.New(t.TempDir())
	var objs []seedObj
	for d := 60; d < 64; d++ {
		objs = append(objs, seedObj{nightlyKey("alive", d), "pro", "container"})
	}
	seed(t, store, objs)
	src := querySource(platformDB(t, map[string]string{}))
	p := NewPrune("prune", PruneConfig{Rules: referenceRules(), Tiers: referenceTiers(), DeletesPerSecond: 100000,
		OrphanKeep: 30 * 24 * time.Hour, Tenants: src, Now: func() time.Time { return pruneNow }}, store)
	res, err := p.Run(context.Background())
	if got := storeKeys(t, store, "nightly/"); len(got) != 8 || strings.Contains(res.Report, "ORPHAN") {
		t.Fatalf("kept %v (run error %v)\n%s", got, err, res.Report)
	}
	if err == nil || !strings.Contains(err.Error(), "orphan policy off this run") {
		t.Fatalf("run error: %v", err)
	}
}

// TestPruneReadsTheDateOfACustomLayoutsFolder: with a template whose {date} is a folder
// (exports/{container}/{date}/{node}.tar), the backups' dates come from the key, not from the
// objects' modification times (a bucket copied to a new store dates every object on one day).
func TestPruneReadsTheDateOfACustomLayoutsFolder(t *testing.T) {
	dir := t.TempDir()
	store, _ := local.New(dir)
	var objs []seedObj
	for d := 0; d < 10; d++ {
		objs = append(objs, seedObj{fmt.Sprintf("exports/tenant_a/%s/n1.tar", pruneNow.AddDate(0, 0, -d).Format("20060102")), "", "container"})
	}
	seed(t, store, objs)
	// The copy to a new bucket: every object dated the hour of the copy.
	copied := pruneNow.Add(-time.Hour)
	filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			os.Chtimes(path, copied, copied)
		}
		return nil
	})
	rules := []PruneRule{{Prefix: "exports/", Depth: 1, Policy: Policy{KeepDaily: 7, MinKeep: 1}}}
	p := NewPrune("prune", PruneConfig{Rules: rules, DeletesPerSecond: 100000, Now: func() time.Time { return pruneNow }}, store)
	res, err := p.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got := storeKeys(t, store, "exports/"); len(got) != 14 {
		t.Fatalf("kept %d objects, want 7 backups with their manifests:\n%s", len(got), res.Report)
	}
}

// TestPruneKeepsNewestVerifiedOverABrokenNewerBackup: the newest backup's object does not match
// its manifest (cut short or overwritten at rest: no reader accepts it). keep_last 1 keeps it,
// but the newest backup that matches its manifest must stay too.
func TestPruneKeepsNewestVerifiedOverABrokenNewerBackup(t *testing.T) {
	store, _ := local.New(t.TempDir())
	ctx := context.Background()
	good := "scratch/tenant_a/tenant_a_20261125.tar.gz"
	broken := "scratch/tenant_a/tenant_a_20261126.tar.gz"
	for _, k := range []string{good, broken} {
		if _, err := artifact.Store(ctx, store, strings.NewReader("a whole backup"), artifact.Options{}, artifact.Manifest{Key: k, Kind: "container"}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := store.Put(ctx, broken, strings.NewReader("a whole"), storage.PutOptions{Size: 7}); err != nil {
		t.Fatal(err)
	}
	rules := []PruneRule{{Prefix: "scratch/", Depth: 1, Policy: Policy{KeepLast: 1, MinKeep: 1}}}
	p := NewPrune("prune", PruneConfig{Rules: rules, DeletesPerSecond: 100000, Now: func() time.Time { return pruneNow }}, store)
	res, err := p.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := artifact.ReadManifest(ctx, store, good); err != nil {
		t.Fatalf("the newest backup that matches its manifest is gone: %v\n%s", err, res.Report)
	}
	if _, err := store.Stat(ctx, good); err != nil {
		t.Fatalf("the newest backup that matches its manifest is gone: %v\n%s", err, res.Report)
	}
}

// TestPruneDryRunOfARecoveryOnS3: a new key written straight to its S3 key whose manifest was
// never written (opsd died after the upload): the real run finishes it from the staged manifest
// and keeps it, so the dry run must not plan it as debris.
func TestPruneDryRunOfARecoveryOnS3(t *testing.T) {
	f := storagetest.NewFakeS3(t)
	store := storagetest.NewS3(t, f.Config)
	ctx := context.Background()
	old := "on-demand/tenant_z/snap20261120.tar.gz"
	key := "on-demand/tenant_z/snap20261125.tar.gz"
	if _, err := artifact.Store(ctx, store, strings.NewReader("old backup"), artifact.Options{}, artifact.Manifest{Key: old, Kind: "snapshot", Tier: "pro"}); err != nil {
		t.Fatal(err)
	}
	func() {
		defer func() { recover() }()
		hctx := artifact.WithHooks(ctx, artifact.Hooks{Published: func(string) { panic("opsd killed") }})
		artifact.Store(hctx, store, strings.NewReader("the new backup"), artifact.Options{}, artifact.Manifest{Key: key, Kind: "snapshot", Tier: "pro"})
		t.Fatal("the crash hook did not run")
	}()
	p := NewPrune("prune", PruneConfig{Rules: referenceRules(), Tiers: referenceTiers(), DeletesPerSecond: 10000, Now: func() time.Time { return time.Now().Add(24 * time.Hour) }}, store)
	dry, err := p.WithDryRun(true).Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	res, err := p.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := artifact.ReadManifest(ctx, store, key); err != nil {
		t.Fatalf("the run did not recover %s: %v\n%s", key, err, res.Report)
	}
	if dry.Prune.Deleted != res.Prune.Deleted || dry.Prune.Kept != res.Prune.Kept || strings.Contains(dry.Report, "debris  "+key) {
		t.Fatalf("dry run would delete %d, the run deleted %d:\n%s\n%s", dry.Prune.Deleted, res.Prune.Deleted, dry.Report, res.Report)
	}
}

// TestOrphanPolicyIgnoresAMapWithADefault: a map with a default lists only the tenants off the
// default tier; a tenant on the default tier is not gone, and its old snapshots stay.
func TestOrphanPolicyIgnoresAMapWithADefault(t *testing.T) {
	store, _ := local.New(t.TempDir())
	seed(t, store, []seedObj{{onDemandKey("xyz", 60), "free", "snapshot"}, {onDemandKey("xyz", 70), "free", "snapshot"}})
	src := &TierSource{Kind: "map", Map: map[string]string{"abc": "pro"}, Default: "free", TenantFrom: "tenant_{id}", Tiers: tierNames}
	p := NewPrune("prune", PruneConfig{Rules: referenceRules(), Tiers: referenceTiers(), DeletesPerSecond: 100000,
		OrphanKeep: 30 * 24 * time.Hour, Tenants: src, Now: func() time.Time { return pruneNow }}, store)
	res, err := p.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// The free tier keeps the newest snapshot (expired, kept by the guard); no orphan.
	if got := storeKeys(t, store, "on-demand/"); len(got) != 2 || strings.Contains(res.Report, "ORPHAN") {
		t.Fatalf("kept %v\n%s", got, res.Report)
	}
}

// TestFutureDatedBackupTakesNoKeepSlot: with keep_last 1 (an on-demand cap of one) a snapshot
// dated a year ahead is kept and reported, and the real newest snapshot is kept too: a wrong
// clock never takes the place of the last real backup.
func TestFutureDatedBackupTakesNoKeepSlot(t *testing.T) {
	now := pruneNow
	b := func(id string, at time.Time) Backup { return Backup{ID: id, Time: at, Verified: true} }
	ds, err := PlanTarget([]Backup{b("older", now.AddDate(0, 0, -2)), b("future", now.AddDate(1, 0, 0)), b("newest", now.AddDate(0, 0, -1))},
		Policy{KeepLast: 1, Now: now, MinKeep: 1})
	if err != nil {
		t.Fatal(err)
	}
	kept := map[string]string{}
	for _, d := range ds {
		if d.Keep {
			kept[d.Backup.ID] = strings.Join(d.Reasons, ",")
		}
	}
	if len(kept) != 2 || kept["future"] != ReasonFutureDated || kept["newest"] == "" {
		t.Fatalf("kept %v; want the future-dated one (%s) and the real newest", kept, ReasonFutureDated)
	}
}
