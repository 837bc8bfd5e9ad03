package jobs

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/wopr-network/opsd/internal/artifact"
	"github.com/wopr-network/opsd/internal/docker/dockertest"
	"github.com/wopr-network/opsd/internal/storage"
	"github.com/wopr-network/opsd/internal/storage/local"
	"github.com/wopr-network/opsd/internal/storage/storagetest"
)

var tierNames = []string{"enterprise", "free", "pro", "starter"}

// platformDB writes a SQLite platform database with the tenant record the platform keeps:
// tenant_customers(id, tier DEFAULT 'free').
func platformDB(t *testing.T, tenants map[string]string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "platform.db")
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`CREATE TABLE tenant_customers (id TEXT PRIMARY KEY, name TEXT, tier TEXT DEFAULT 'free')`); err != nil {
		t.Fatal(err)
	}
	for id, tier := range tenants {
		var v any = tier
		if tier == "NULL" {
			v = nil
		}
		if _, err := db.Exec(`INSERT INTO tenant_customers (id, name, tier) VALUES (?, ?, ?)`, id, "Tenant "+id, v); err != nil {
			t.Fatal(err)
		}
	}
	return path
}

func setTier(t *testing.T, path, id, tier string) {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`UPDATE tenant_customers SET tier=? WHERE id=?`, tier, id); err != nil {
		t.Fatal(err)
	}
}

func querySource(path string) *TierSource {
	return &TierSource{Kind: "query", Driver: "sqlite", DSN: path, Query: "SELECT id, tier FROM tenant_customers",
		TenantFrom: "tenant_{id}", Tiers: tierNames}
}

func TestTierQueryOnSQLite(t *testing.T) {
	path := platformDB(t, map[string]string{"abc": "pro", "def": "starter", "nul": "NULL", "plat": "platinum"})
	look, err := querySource(path).Load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	got, err := look.Resolve("tenant_abc", nil)
	if err != nil || got.Tier != "pro" || got.Tenant != "abc" || !strings.HasPrefix(got.Source, "query on ") {
		t.Fatalf("tenant_abc: %+v, %v", got, err)
	}
	for name, want := range map[string]string{
		"tenant_plat": `tier: unknown tier "platinum" for tenant_plat from query on ` + path + ` (known: enterprise, free, pro, starter)`,
		"tenant_zzz":  `tier: tenant "zzz" (tenant_zzz) not found in the tier source (query on ` + path + `)`,
		"tenant_nul":  `tier: tenant "nul" (tenant_nul) has no tier in the tier source`,
		"bot_abc":     `tier: bot_abc does not match tenant_from "tenant_{id}"`,
	} {
		if _, err := look.Resolve(name, nil); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", name, err, want)
		}
	}
	if ok, known := look.TenantExists("tenant_def"); !ok || !known {
		t.Fatal("tenant def exists")
	}
	if ok, known := look.TenantExists("tenant_gone"); ok || !known {
		t.Fatal("tenant gone does not exist")
	}

	// The query runs read-only: a statement that writes fails and changes nothing.
	src := querySource(path)
	src.Query = "UPDATE tenant_customers SET tier='free' RETURNING id, tier"
	if _, err := src.Load(context.Background()); err == nil {
		t.Fatal("a writing query succeeded")
	}
	if look, _ := querySource(path).Load(context.Background()); look.rows["abc"] != "pro" {
		t.Fatalf("the tier query wrote to the platform database: %v", look.rows)
	}
	src.Query = "SELECT id FROM tenant_customers"
	if _, err := src.Load(context.Background()); err == nil || !strings.Contains(err.Error(), "must return (tenant id, tier)") {
		t.Fatalf("one column: %v", err)
	}
	src.DSN = filepath.Join(t.TempDir(), "missing.db")
	if _, err := src.Load(context.Background()); err == nil || !strings.Contains(err.Error(), "open platform database") {
		t.Fatalf("missing database: %v", err)
	}
	if _, err := os.Stat(src.DSN); err == nil {
		t.Fatal("the tier query created the platform database")
	}
}

func TestDirSnapshotTierPerInstance(t *testing.T) {
	base := t.TempDir()
	for _, inst := range []string{"abc", "def", "xyz"} {
		os.MkdirAll(filepath.Join(base, inst), 0o755)
		os.WriteFile(filepath.Join(base, inst, "home.txt"), []byte("home of "+inst), 0o644)
	}
	store, _ := local.New(t.TempDir())
	src := &TierSource{Kind: "map", Map: map[string]string{"abc": "pro", "def": "enterprise"}, TenantFrom: "{id}", Tiers: tierNames}
	snap := NewDirSnapshot("homes", DirSnapshotConfig{BaseDir: base, KeyTemplate: "on-demand/{instance}/{date}_{time}.tar.gz", Tiers: src, Node: "n1",
		Now: func() time.Time { return pruneNow }}, store)
	res, err := snap.Run(context.Background())
	if err == nil {
		t.Fatal("an instance without a tier did not fail")
	}
	by := map[string]TargetResult{}
	for _, tr := range res.Targets {
		by[tr.Name] = tr
	}
	if by["abc"].Status != TargetOK || by["def"].Status != TargetOK {
		t.Fatalf("results: %+v", res.Targets)
	}
	// The instance the map does not know: backed up all the same, the target fails clearly, and
	// its manifest records no tier (prune keeps all of it), never a silent free.
	x := by["xyz"]
	if x.Status != TargetFailed || !strings.Contains(x.Err.Error(), `backed up to on-demand/xyz/20261126_060000.tar.gz, but prune keeps all its backups until its tier is known: tier: tenant "xyz" (xyz) not found in the tier source (map)`) {
		t.Fatalf("xyz: %+v", x)
	}
	for inst, want := range map[string]string{"abc": "pro", "def": "enterprise", "xyz": ""} {
		m, err := artifact.ReadManifest(context.Background(), store, "on-demand/"+inst+"/20261126_060000.tar.gz")
		if err != nil || m.Tier != want || m.Tenant != inst || m.TierSource != "map" {
			t.Fatalf("%s manifest: tier %q tenant %q source %q, %v", inst, m.Tier, m.Tenant, m.TierSource, err)
		}
	}
}

// tenantYear is the simulated history of one tenant.
type tenantYear struct {
	id string
	// tier at export time (the platform database's, or a fixed one for tenants gone since)
	tier string
	// nightly: days back from pruneNow with a nightly archive; onDemand: days back with an
	// on-demand snapshot (taken at 12:00 UTC).
	nightly, onDemand []int
	// keepNightly, keepOnDemand: the days back prune keeps.
	keepNightly, keepOnDemand []int
}

func span(from, to, step int) []int {
	var out []int
	for d := from; d <= to; d += step {
		out = append(out, d)
	}
	return out
}

// counts11 are the nightlies a 7 daily + 4 weekly tier keeps of daily archives when pruneNow
// (a Thursday) is day 0: days 0-6, then Thu Nov 19 (rest of week 47), Sun Nov 15, 8 and 1.
var counts11 = []int{0, 1, 2, 3, 4, 5, 6, 7, 11, 18, 25}

func tenantsOfAYear() []tenantYear {
	year := span(0, 364, 1)
	od := span(1, 399, 2) // every other day, 200 snapshots
	return []tenantYear{
		// free: 3 nightlies; on-demand: at most 1 (and 7 days).
		{id: "free1", tier: "free", nightly: year, onDemand: od, keepNightly: []int{0, 1, 2}, keepOnDemand: []int{1}},
		// starter: 11 nightlies; on-demand capped at 5 (15 are younger than 30 days).
		{id: "starter1", tier: "starter", nightly: year, onDemand: od, keepNightly: counts11, keepOnDemand: []int{1, 3, 5, 7, 9}},
		// pro: 11 nightlies (not ~90); on-demand capped at 20 (45 are younger than 90 days).
		{id: "pro1", tier: "pro", nightly: year, onDemand: od, keepNightly: counts11, keepOnDemand: span(1, 39, 2)},
		// enterprise: 11 nightlies; on-demand unlimited but expired after 365 days: 183 of 200.
		{id: "ent1", tier: "enterprise", nightly: year, onDemand: od, keepNightly: counts11, keepOnDemand: span(1, 365, 2)},
		// starter with few on-demand snapshots: the 30-day expiry bites before the cap of 5.
		{id: "sparse1", tier: "starter", nightly: span(0, 59, 1), onDemand: span(1, 91, 10), keepNightly: counts11, keepOnDemand: []int{1, 11, 21}},
		// starter whose on-demand snapshots all expired: the guard keeps the newest one.
		{id: "lapsed1", tier: "starter", nightly: span(0, 59, 1), onDemand: span(100, 200, 10), keepNightly: counts11, keepOnDemand: []int{100}},
		// a tier the table does not know: a per-target error, nothing of it deleted.
		{id: "plat1", tier: "platinum", nightly: span(0, 59, 1), onDemand: span(1, 40, 3), keepNightly: span(0, 59, 1), keepOnDemand: span(1, 40, 3)},
		// gone from the platform, last backup 60 days ago: an expired orphan (orphan_keep 30d).
		{id: "gone1", tier: "pro", nightly: span(60, 200, 1), onDemand: span(61, 120, 5), keepNightly: nil, keepOnDemand: nil},
		// gone from the platform 10 days ago: within orphan_keep, pruned by its recorded tier.
		{id: "left1", tier: "pro", nightly: span(10, 100, 1), onDemand: span(11, 100, 5), keepNightly: []int{10, 11, 12, 13, 14, 15, 16, 17, 18, 25, 32},
			keepOnDemand: span(11, 86, 5)}, // 91 and 96 days back are past pro's 90 days
	}
}

func nightlyKey(id string, d int) string {
	c := "tenant_" + id
	return fmt.Sprintf("nightly/n1/%s/%s_%s.tar.gz", c, c, pruneNow.AddDate(0, 0, -d).Format("20060102"))
}

func onDemandKey(id string, d int) string {
	at := pruneNow.AddDate(0, 0, -d)
	return fmt.Sprintf("on-demand/tenant_%s/snap-%sT120000.tar.gz", id, at.Format("20060102"))
}

// seedYear writes every tenant's history, with the tier resolved from the platform database as
// an export would (the tenants gone since were resolved while they existed).
func seedYear(t *testing.T, store storage.Store, look *TierLookup, tenants []tenantYear) (want []string) {
	var objs []seedObj
	add := func(key string, keep bool, tier string) {
		objs = append(objs, seedObj{key, tier, "container"})
		if keep {
			want = append(want, key, artifact.ManifestKey(key))
		}
	}
	for _, ty := range tenants {
		tier := ty.tier
		if r, err := look.Resolve("tenant_"+ty.id, nil); err == nil {
			tier = r.Tier
		} else if ty.id == "plat1" {
			tier = "" // what the export records when the tier is unknown
		}
		keepN, keepO := map[int]bool{}, map[int]bool{}
		for _, d := range ty.keepNightly {
			keepN[d] = true
		}
		for _, d := range ty.keepOnDemand {
			keepO[d] = true
		}
		for _, d := range ty.nightly {
			add(nightlyKey(ty.id, d), keepN[d], tier)
		}
		for _, d := range ty.onDemand {
			add(onDemandKey(ty.id, d), keepO[d], tier)
		}
	}
	// Platform databases: 30 days of sets are kept.
	for d := 0; d < 40; d++ {
		date := pruneNow.AddDate(0, 0, -d).Format("20060102")
		key := fmt.Sprintf("platform/%s/auth-%s.db", date, date)
		add(key, d <= 30, "")
	}
	seed(t, store, objs)
	sort.Strings(want)
	return want
}

func storeKeys(t *testing.T, store storage.Store, prefix string) []string {
	t.Helper()
	all, err := storage.ListAll(context.Background(), store, prefix)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, o := range all {
		out = append(out, o.Key)
	}
	sort.Strings(out)
	return out
}

// TestTierRetentionYear: a platform database with tenants on each tier, a year of nightly and
// on-demand backups per tenant; prune keeps exactly each tier's counts, expires and caps the
// on-demand snapshots, holds the guards, refuses an unknown tier, deletes an expired orphan, and
// prunes a tenant whose tier changed by its new tier from the next run.
func TestTierRetentionYear(t *testing.T) {
	for _, tt := range []struct {
		name  string
		store func(t *testing.T) storage.Store
	}{
		{"local", func(t *testing.T) storage.Store { s, _ := local.New(t.TempDir()); return s }},
		{"in-process-s3", func(t *testing.T) storage.Store { return storagetest.NewS3(t, storagetest.NewFakeS3(t).Config) }},
		{"seaweedfs", func(t *testing.T) storage.Store { return storagetest.NewS3(t, storagetest.RealS3(t)) }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			path := platformDB(t, yearTenants)
			tierRetentionYear(t, tt.store(t), querySource(path), func(id, tier string) { setTier(t, path, id, tier) })
		})
	}
}

// yearTenants are the platform's tenant records of TestTierRetentionYear (gone1 and left1 are
// gone from it).
var yearTenants = map[string]string{"free1": "free", "starter1": "starter", "pro1": "pro", "ent1": "enterprise",
	"sparse1": "starter", "lapsed1": "starter", "plat1": "platinum"}

// tierRetentionYear runs the year against a platform database: src reads its tenants' tiers and
// setTier changes one.
func tierRetentionYear(t *testing.T, store storage.Store, src *TierSource, setTier func(id, tier string)) {
	ctx := context.Background()
	look, err := src.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tenants := tenantsOfAYear()
	want := seedYear(t, store, look, tenants)

	now := pruneNow
	p := NewPrune("prune", PruneConfig{Rules: referenceRules(), Tiers: referenceTiers(), DeletesPerSecond: 100000,
		OrphanKeep: 30 * 24 * time.Hour, Tenants: src, Now: func() time.Time { return now }}, store)

	// The dry run shows each target's tier, where it came from, its policy and the expiries.
	res, err := p.WithDryRun(true).Run(ctx)
	if err == nil || !strings.Contains(err.Error(), `unknown`) && !strings.Contains(err.Error(), "records no tier") {
		t.Fatalf("dry run: the unknown tier is not an error: %v", err)
	}
	for _, line := range []string{
		"nightly/n1/tenant_pro1: keep 11, would delete 354",
		"tier pro (keep_daily=7 keep_weekly=4 on_demand_max=20 retention_days=90) from nightly/n1/tenant_pro1/tenant_pro1_20261126.tar.gz",
		"policy daily=7 weekly=4(after daily) min=1",
		"on-demand/tenant_pro1: keep 20, would delete 180",
		"policy last=20 expire=90d min=1",
		"keep          on-demand/tenant_pro1/snap-20261125T120000.tar.gz  (keep_last)  expires 2027-02-23T12:00:00Z",
		"bytes; beyond the newest 20)",
		"on-demand/tenant_pro1/snap-20260827T120000.tar.gz  (2 objects, ",
		"bytes; expired 2026-11-25T12:00:00Z)",
		"nightly/n1/tenant_free1: keep 3, would delete 362",
		"on-demand/tenant_ent1: keep 183, would delete 17",
		"policy last=unlimited expire=365d min=1",
		"tier unknown from nightly/n1/tenant_plat1/tenant_plat1_20261126.tar.gz",
		"REFUSED  nightly/n1/tenant_plat1/tenant_plat1_20261126.tar.gz.manifest.json records no tier: nothing pruned",
		`ORPHAN   orphan: tenant "gone1" is gone from ` + src.String() + ` and the newest backup (2026-09-27) is older than orphan_keep 30d`,
		"on-demand/tenant_lapsed1: keep 1, would delete 10",
		"keep          on-demand/tenant_lapsed1/snap-20260818T120000.tar.gz  (min_keep)",
	} {
		if !strings.Contains(res.Report, line) {
			t.Errorf("the dry run does not say %q", line)
		}
	}
	if t.Failed() {
		t.Fatalf("report:\n%s", res.Report)
	}

	res, err = p.Run(ctx)
	if err == nil || !strings.Contains(err.Error(), "tenant_plat1") {
		t.Fatalf("prune: the unknown tier of tenant_plat1 is not reported: %v", err)
	}
	if got := storeKeys(t, store, ""); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("after prune: %d keys, want %d\n%s", len(got), len(want), diff(got, want))
	}
	if res.Prune.Refused != 2 {
		t.Fatalf("refused %d targets, want 2 (tenant_plat1's nightly and on-demand)", res.Prune.Refused)
	}

	// Next night: pro1 is downgraded to free in the platform database. The export records the
	// new tier and the next prune applies it.
	setTier("pro1", "free")
	look, err = src.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	now = pruneNow.Add(24 * time.Hour)
	r, err := look.Resolve("tenant_pro1", nil)
	if err != nil || r.Tier != "free" {
		t.Fatalf("after the downgrade: %+v %v", r, err)
	}
	next := fmt.Sprintf("nightly/n1/tenant_pro1/tenant_pro1_%s.tar.gz", now.Format("20060102"))
	seed(t, store, []seedObj{{next, r.Tier, "container"}})
	if _, err := p.Run(ctx); err == nil {
		t.Fatal("tenant_plat1 is still unknown: the run must say so")
	}
	wantPro := []string{next, "nightly/n1/tenant_pro1/tenant_pro1_20261126.tar.gz", "nightly/n1/tenant_pro1/tenant_pro1_20261125.tar.gz"}
	var gotPro []string
	for _, k := range storeKeys(t, store, "nightly/n1/tenant_pro1/") {
		if !artifact.IsManifest(k) {
			gotPro = append(gotPro, k)
		}
	}
	sort.Strings(wantPro)
	if strings.Join(gotPro, ",") != strings.Join(wantPro, ",") {
		t.Fatalf("after the downgrade to free, pro1 keeps %v, want the 3 newest %v", gotPro, wantPro)
	}
	// On-demand: the free tier's cap of 1, by the tier of pro1's newest manifest. Its
	// on-demand prefix has its own newest manifest (still pro) until a snapshot is taken: take one.
	od := fmt.Sprintf("on-demand/tenant_pro1/snap-%sT030000.tar.gz", now.Format("20060102"))
	seed(t, store, []seedObj{{od, r.Tier, "snapshot"}})
	p.Run(ctx)
	if got := storeKeys(t, store, "on-demand/tenant_pro1/"); len(got) != 2 || got[0] != od {
		t.Fatalf("after the downgrade, pro1's on-demand snapshots: %v, want only %s", got, od)
	}

	// Forget starter1: every object of it goes, every other tenant's stays.
	before := storeKeys(t, store, "")
	var keep []string
	for _, k := range before {
		if !strings.Contains(k, "/tenant_starter1/") {
			keep = append(keep, k)
		}
	}
	places := []ForgetPlace{{Prefix: "nightly/", Depth: 2}, {Prefix: "on-demand/", Depth: 1}, {Prefix: "pre-restore/", Depth: 1}, {Prefix: "latest/", Depth: 1}}
	res, err = NewForget(ForgetConfig{Tenant: "starter1", Names: []string{"starter1", "tenant_starter1"}, Places: places, DeletesPerSecond: 100000}, store).Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := storeKeys(t, store, ""); strings.Join(got, "\n") != strings.Join(keep, "\n") || len(before)-len(keep) != 2*(11+5) {
		t.Fatalf("forget starter1 (%s): %d keys left, want %d\n%s", res.Summary, len(got), len(keep), diff(got, keep))
	}
}

// TestContainerExportTierFromQuery: real containers whose tier the platform database gives (the
// label is ignored), one of them unknown to it: backed up all the same, the target fails with a
// clear error and its manifest records no tier.
func TestContainerExportTierFromQuery(t *testing.T) {
	dc := dockertest.Client(t)
	r := newRig(t)
	store, _ := local.New(t.TempDir())
	sfx := fmt.Sprintf("opsdtq%d", time.Now().UnixNano()%1e9)
	prefix := "tenant_" + sfx + "_"
	dockertest.Run(t, dc, prefix+"ent", map[string]string{"wopr.tier": "free"}, "echo e > /data/e.txt; exit 0")
	dockertest.Run(t, dc, prefix+"new", nil, "echo n > /data/n.txt; exit 0")
	path := platformDB(t, map[string]string{sfx + "_ent": "enterprise"})
	exp := newExport(t, dc, r.state, store, func(c *ContainerExportConfig) {
		c.NamePrefix, c.Tiers = prefix, querySource(path)
	})
	o := r.runner.Run(context.Background(), exp, time.Minute, TriggerManual)
	if o.OK() {
		t.Fatal("the container the platform does not know did not fail")
	}
	key := func(c string) string { return fmt.Sprintf("nightly/n1/%s/%s_20261125.tar.gz", c, c) }
	m, err := artifact.ReadManifest(context.Background(), store, key(prefix+"ent"))
	if err != nil || m.Tier != "enterprise" || m.Tenant != sfx+"_ent" || !strings.HasPrefix(m.TierSource, "query on ") {
		t.Fatalf("manifest of %sent: tier %q tenant %q source %q, %v", prefix, m.Tier, m.Tenant, m.TierSource, err)
	}
	m, err = artifact.ReadManifest(context.Background(), store, key(prefix+"new"))
	if err != nil || m.Tier != "" {
		t.Fatalf("manifest of %snew: tier %q, %v (backed up, no tier)", prefix, m.Tier, err)
	}
	for _, tr := range o.Result.Targets {
		if tr.Name == prefix+"new" && (tr.Status != TargetFailed || !strings.Contains(tr.Err.Error(), `not found in the tier source`)) {
			t.Fatalf("%s: %+v", tr.Name, tr)
		}
	}
}

// TestOrphanPolicyOffWithoutTenantRecord: when the platform database cannot be read, no target is
// an orphan that run (nothing of a tenant is deleted for being "gone"), and the run says why.
func TestOrphanPolicyOffWithoutTenantRecord(t *testing.T) {
	store, _ := local.New(t.TempDir())
	var objs []seedObj
	for d := 60; d < 70; d++ {
		objs = append(objs, seedObj{nightlyKey("gone1", d), "free", "container"})
	}
	seed(t, store, objs)
	src := querySource(filepath.Join(t.TempDir(), "moved-away.db"))
	p := NewPrune("prune", PruneConfig{Rules: referenceRules(), Tiers: referenceTiers(), DeletesPerSecond: 100000,
		OrphanKeep: 30 * 24 * time.Hour, Tenants: src, Now: func() time.Time { return pruneNow }}, store)
	res, err := p.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "orphan policy off this run: tier query: open platform database") {
		t.Fatalf("run error: %v", err)
	}
	// The free tier's 3 newest stay: pruned by its tier, not deleted as an orphan.
	if got := storeKeys(t, store, "nightly/"); len(got) != 6 || strings.Contains(res.Report, "ORPHAN") {
		t.Fatalf("kept %v\n%s", got, res.Report)
	}
}

func TestTierFromLabel(t *testing.T) {
	look, err := (&TierSource{Kind: "label", Label: "wopr.tier", Default: "free", TenantFrom: "tenant_{id}", Tiers: tierNames}).Load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		labels map[string]string
		tier   string
		err    string
	}{
		{map[string]string{"wopr.tier": "pro"}, "pro", ""},
		{nil, "free", ""}, // no label: the default, as before
		{map[string]string{"wopr.tier": "gold"}, "", `tier: unknown tier "gold" for tenant_abc from label wopr.tier`},
	} {
		r, err := look.Resolve("tenant_abc", tt.labels)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%v: %v, want %q", tt.labels, err, tt.err)
			}
			continue
		}
		if err != nil || r.Tier != tt.tier || r.Tenant != "abc" {
			t.Errorf("%v: %+v %v", tt.labels, r, err)
		}
	}
	look, _ = (&TierSource{Kind: "label", Label: "wopr.tier", Tiers: tierNames}).Load(context.Background())
	if _, err := look.Resolve("tenant_abc", nil); err == nil || !strings.Contains(err.Error(), "tenant_abc has no wopr.tier label") {
		t.Fatalf("no label, no default: %v", err)
	}
}

// TestOrphansOnlyOnTierTargets: an expired orphan loses its nightlies, but a prefix with its own
// rules (pre-restore copies) keeps its guards: the newest copy stays.
func TestOrphansOnlyOnTierTargets(t *testing.T) {
	store, _ := local.New(t.TempDir())
	seed(t, store, []seedObj{
		{nightlyKey("gone1", 100), "pro", "container"}, {nightlyKey("gone1", 101), "pro", "container"},
		{"pre-restore/tenant_gone1/tenant_gone1_20260801.tar.gz", "", "container"},
		{"pre-restore/tenant_gone1/tenant_gone1_20260601.tar.gz", "", "container"},
	})
	src := &TierSource{Kind: "map", Map: map[string]string{"other": "pro"}, TenantFrom: "tenant_{id}", Tiers: tierNames}
	p := NewPrune("prune", PruneConfig{Rules: referenceRules(), Tiers: referenceTiers(), DeletesPerSecond: 100000,
		OrphanKeep: 30 * 24 * time.Hour, Tenants: src, Now: func() time.Time { return pruneNow }}, store)
	if _, err := p.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	want := []string{"pre-restore/tenant_gone1/tenant_gone1_20260801.tar.gz", "pre-restore/tenant_gone1/tenant_gone1_20260801.tar.gz.manifest.json"}
	if got := storeKeys(t, store, ""); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("after prune: %v, want %v", got, want)
	}
}
