package jobs

import (
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

func daily(from time.Time, days int, skip func(int) bool) []Backup {
	var out []Backup
	for i := 0; i < days; i++ {
		if skip != nil && skip(i) {
			continue
		}
		t := from.AddDate(0, 0, -i)
		out = append(out, Backup{ID: t.Format("20060102"), Time: t, Verified: true})
	}
	return out
}

func kept(ds []Decision) []string {
	var out []string
	for _, d := range ds {
		if d.Keep {
			out = append(out, d.Backup.ID)
		}
	}
	return out
}

// tierPolicy is the nightly policy of a REFERENCE.md tier: counts only.
func tierPolicy(daily, weekly int) Policy {
	return tierPolicyFor("nightly", Tier{KeepDaily: daily, KeepWeekly: weekly}, 1, time.Time{})
}

func TestTiersOn400DaysOfDailyBackups(t *testing.T) {
	newest := time.Date(2026, 11, 26, 3, 0, 0, 0, time.UTC) // a Thursday
	backups := daily(newest, 400, nil)
	for _, tt := range []struct {
		tier   string
		policy Policy
		want   int
		oldest string
	}{
		// free: the 3 newest, no weekly.
		{"free", tierPolicy(3, 0), 3, "20261124"},
		// starter, pro, enterprise: the 7 newest (Nov 20-26), then the newest of each of the 4 ISO
		// weeks before them: Thu Nov 19 (W47, the rest of the week of Nov 20), Sun Nov 15, Sun
		// Nov 8, Sun Nov 1. 11 in all, whatever retention_days says.
		{"starter", tierPolicy(7, 4), 11, "20261101"},
		{"pro", tierPolicy(7, 4), 11, "20261101"},
		{"enterprise", tierPolicy(7, 4), 11, "20261101"},
		// A plain union (not the tier policy): the 4 newest weeks include the dailies' weeks:
		// Nov 26 and Nov 22 are already kept, Nov 15 and Nov 8 (Sundays) are added.
		{"weekly-only", Policy{KeepDaily: 7, KeepWeekly: 4, MinKeep: 1}, 9, "20261108"},
	} {
		ds, err := PlanTarget(backups, tt.policy)
		if err != nil {
			t.Fatal(err)
		}
		k := kept(ds)
		if len(k) != tt.want || k[len(k)-1] != tt.oldest {
			t.Errorf("%s: kept %d (oldest %s), want %d (oldest %s)", tt.tier, len(k), k[len(k)-1], tt.want, tt.oldest)
		}
	}
}

func TestOnDemandExpiryAndCap(t *testing.T) {
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	// One on-demand snapshot every 2 days for 200 days; the newest one 5 days ago.
	var bs []Backup
	for i := 0; i < 100; i++ {
		at := now.AddDate(0, 0, -5-2*i)
		bs = append(bs, Backup{ID: at.Format("20060102"), Time: at, Verified: true})
	}
	for _, tt := range []struct {
		tier   Tier
		want   int
		oldest string
	}{
		{Tier{OnDemandMax: 1, RetentionDays: 7}, 1, "20261121"},     // free: the cap
		{Tier{OnDemandMax: 5, RetentionDays: 30}, 5, "20261113"},    // starter: the cap (all 13 of 30 days)
		{Tier{OnDemandMax: 20, RetentionDays: 30}, 13, "20261028"},  // expiry before the cap: created within 30 days
		{Tier{OnDemandMax: 0, RetentionDays: 365}, 100, "20260507"}, // enterprise: unlimited, all within a year
		{Tier{OnDemandMax: 0, RetentionDays: 100}, 48, "20260819"},  // unlimited count, 100 days
	} {
		ds, err := PlanTarget(bs, tierPolicyFor("on_demand", tt.tier, 1, now))
		if err != nil {
			t.Fatal(err)
		}
		k := kept(ds)
		if len(k) != tt.want || k[len(k)-1] != tt.oldest {
			t.Errorf("%s: kept %d (oldest %s), want %d (oldest %s)", tt.tier, len(k), k[len(k)-1], tt.want, tt.oldest)
		}
	}
	// Everything expired: the guards keep the newest one, nothing else.
	old := []Backup{{ID: "a", Time: now.AddDate(0, 0, -40), Verified: true}, {ID: "b", Time: now.AddDate(0, 0, -50), Verified: true}}
	ds, err := PlanTarget(old, tierPolicyFor("on_demand", Tier{OnDemandMax: 5, RetentionDays: 30}, 1, now))
	if err != nil || strings.Join(kept(ds), ",") != "a" || ds[0].Reasons[0] != ReasonMinKeep {
		t.Fatalf("all expired: kept %v (%+v), %v", kept(ds), ds, err)
	}
}

func TestISOWeeksAcrossYearBoundary(t *testing.T) {
	// 2026-12-28 (Mon, week 2026-W53) .. 2027-01-10 (Sun, week 2027-W01).
	var bs []Backup
	for d := time.Date(2026, 12, 28, 3, 0, 0, 0, time.UTC); !d.After(time.Date(2027, 1, 10, 3, 0, 0, 0, time.UTC)); d = d.AddDate(0, 0, 1) {
		bs = append(bs, Backup{ID: d.Format("20060102"), Time: d, Verified: true})
	}
	ds, _ := PlanTarget(bs, Policy{KeepWeekly: 3, MinKeep: 1})
	got := strings.Join(kept(ds), ",")
	// Newest of 2027-W01 (Jan 10), 2026-W53 (Jan 3), and... Jan 3 2027 is a Sunday in 2026-W53.
	// Dec 28 .. Jan 3 is 2026-W53; Jan 4 .. Jan 10 is 2027-W01: two weeks in all.
	if got != "20270110,20270103" {
		t.Fatalf("weekly keeps %s", got)
	}
}

func TestGapKeepsTheDailyCount(t *testing.T) {
	newest := time.Date(2026, 11, 26, 3, 0, 0, 0, time.UTC)
	// Backups stopped for 20 days before the newest one.
	bs := daily(newest, 60, func(i int) bool { return i > 0 && i <= 20 })
	ds, err := PlanTarget(bs, tierPolicy(7, 0))
	if err != nil {
		t.Fatal(err)
	}
	if k := kept(ds); len(k) != 7 {
		t.Fatalf("after a 20-day gap kept %d: %v; the daily count must still be 7", len(k), k)
	}
}

func TestAgesFromNewestNotNow(t *testing.T) {
	// The newest backup is 100 days old (backups stalled): keep_within still keeps a week of them.
	newest := time.Now().AddDate(0, 0, -100)
	ds, _ := PlanTarget(daily(newest, 30, nil), Policy{KeepWithin: 7 * 24 * time.Hour, MinKeep: 1})
	if k := kept(ds); len(k) != 8 {
		t.Fatalf("kept %d, want 8 (within 7 days of the newest)", len(k))
	}
}

func TestNewestVerifiedAndMinKeep(t *testing.T) {
	now := time.Now()
	bs := []Backup{
		{ID: "new-unverified", Time: now},
		{ID: "older-verified", Time: now.Add(-48 * time.Hour), Verified: true},
		{ID: "oldest", Time: now.Add(-96 * time.Hour), Verified: true},
	}
	ds, _ := PlanTarget(bs, Policy{KeepLast: 1})
	if got := strings.Join(kept(ds), ","); got != "new-unverified,older-verified" {
		t.Fatalf("kept %s", got)
	}
	if ds[1].Reasons[0] != ReasonNewestVerified {
		t.Fatalf("reasons: %+v", ds[1])
	}
	ds, _ = PlanTarget(bs, Policy{MinKeep: 3})
	if len(kept(ds)) != 3 {
		t.Fatalf("min_keep 3 kept %v", kept(ds))
	}
}

// TestNoPolicyDeletesTheNewestBackup is the property: whatever the rules, the newest verified
// backup of a target is kept and a target never ends up empty.
func TestNoPolicyDeletesTheNewestBackup(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for iter := 0; iter < 5000; iter++ {
		n := 1 + r.IntN(40)
		base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(r.IntN(1e6)) * time.Minute)
		var bs []Backup
		for i := 0; i < n; i++ {
			bs = append(bs, Backup{ID: string(rune('a' + i%26)), Time: base.Add(-time.Duration(r.IntN(5000)) * time.Hour), Verified: r.IntN(3) > 0})
		}
		p := Policy{KeepLast: r.IntN(3), KeepDaily: r.IntN(3), KeepWeekly: r.IntN(3), KeepMonthly: r.IntN(2),
			KeepWithin: time.Duration(r.IntN(3)) * time.Hour, MinKeep: r.IntN(3) - 1, WeeklyAfterDaily: r.IntN(2) == 0}
		if r.IntN(2) == 0 { // an on-demand expiry, often past every backup
			p.ExpireAfter, p.Now = time.Duration(1+r.IntN(5000))*time.Hour, base.Add(time.Duration(r.IntN(5000))*time.Hour)
		}
		ds, err := PlanTarget(bs, p)
		if err != nil {
			t.Fatalf("policy %v refused: %v", p, err)
		}
		var newestVerified, newest *Decision
		for i := range ds {
			if newest == nil {
				newest = &ds[i]
			}
			if ds[i].Backup.Verified && newestVerified == nil {
				newestVerified = &ds[i]
			}
		}
		if !newest.Keep {
			t.Fatalf("policy %v deleted the newest backup", p)
		}
		if newestVerified != nil && !newestVerified.Keep {
			t.Fatalf("policy %v deleted the newest verified backup", p)
		}
	}
}

func TestKeyTime(t *testing.T) {
	for key, want := range map[string]string{
		"nightly/n1/tenant_a/tenant_a_20261126.tar.gz":       "2026-11-26T00:00:00Z",
		"on-demand/abc/20261126030405.tar.gz":                "2026-11-26T03:04:05Z",
		"on-demand/tenant_a/snap-20261125T120000.tar.gz":     "2026-11-25T12:00:00Z",
		"pre-restore/tenant_a/tenant_a_20261120_101010.tar":  "2026-11-20T10:10:10Z",
		"x/tenant_20250101/range-20261126-20261127.tar.gz":   "2026-11-27T00:00:00Z",
		"on-demand/abc/1732600000000.tar.gz":                 "",
		"on-demand/abc/3f9c1e2a-0000-4000-8000-1a2b3c4d.tgz": "",
	} {
		got, ok := keyTime(key)
		if s := got.Format(time.RFC3339); (ok && s != want) || (!ok && want != "") {
			t.Errorf("%s: %s %v, want %s", key, s, ok, want)
		}
	}
}
