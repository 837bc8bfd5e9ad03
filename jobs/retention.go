package jobs

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// Unlimited as KeepLast keeps every backup the other limits (ExpireAfter) allow.
const Unlimited = 1 << 30

// Policy says which backups of one target to keep. Keep rules are a union: a backup is kept when
// any rule keeps it. Ages (KeepWithin) are measured from the newest backup of the target, never
// from now, so a stalled backup job never ages everything out. ExpireAfter is the one absolute
// age: measured from Now, it stops every keep rule from keeping an older backup (the on-demand
// snapshots' expiresAt); the guards (MinKeep, the newest verified backup) still hold.
type Policy struct {
	KeepLast    int
	KeepDaily   int // newest backup of each of the N newest days that have backups (UTC)
	KeepWeekly  int // ... of each of the N newest ISO weeks that have backups
	KeepMonthly int // ... of each of the N newest months that have backups
	KeepWithin  time.Duration
	// WeeklyAfterDaily counts the weekly buckets only among the backups older than the oldest
	// one KeepDaily keeps, so the weeks add to the days (the platform's nightly policy: 7 newest
	// plus the newest of each of the 4 ISO weeks before them, 11 in all).
	WeeklyAfterDaily bool
	// ExpireAfter (with Now): a backup created more than this before Now is expired.
	ExpireAfter time.Duration
	// Now also caps the newest backup's time that ages are measured from (zero: no cap).
	Now time.Time
	// MinKeep is the floor: never fewer backups than this (at least 1).
	MinKeep int
}

// String describes the policy: only the rules it uses.
func (p Policy) String() string {
	var parts []string
	add := func(name string, n int) {
		switch {
		case n >= Unlimited:
			parts = append(parts, name+"=unlimited")
		case n > 0:
			parts = append(parts, fmt.Sprintf("%s=%d", name, n))
		}
	}
	add("last", p.KeepLast)
	add("daily", p.KeepDaily)
	if p.KeepWeekly > 0 && p.WeeklyAfterDaily {
		parts = append(parts, fmt.Sprintf("weekly=%d(after daily)", p.KeepWeekly))
	} else {
		add("weekly", p.KeepWeekly)
	}
	add("monthly", p.KeepMonthly)
	if p.KeepWithin > 0 {
		parts = append(parts, "within="+days(p.KeepWithin))
	}
	if p.ExpireAfter > 0 {
		parts = append(parts, "expire="+days(p.ExpireAfter))
	}
	parts = append(parts, fmt.Sprintf("min=%d", max(p.MinKeep, 1)))
	return strings.Join(parts, " ")
}

// days prints whole days as "30d", anything else as a duration.
func days(d time.Duration) string {
	if d%(24*time.Hour) == 0 {
		return fmt.Sprintf("%dd", d/(24*time.Hour))
	}
	return d.String()
}

// Backup is one backup of a target, as retention sees it.
type Backup struct {
	ID   string // the artifact key, or the set's folder
	Time time.Time
	Size int64
	// Verified: it has a manifest (and did not fail a drill or verification).
	Verified bool
}

// Keep reasons.
const (
	ReasonLast           = "keep_last"
	ReasonDaily          = "keep_daily"
	ReasonWeekly         = "keep_weekly"
	ReasonMonthly        = "keep_monthly"
	ReasonWithin         = "keep_within"
	ReasonMinKeep        = "min_keep"
	ReasonNewestVerified = "newest_verified"
	// ReasonFutureDated keeps a backup dated after now (a clock that was wrong when it was
	// made): it is kept and reported, and counts for no rule, so it never takes the place of a
	// real backup.
	ReasonFutureDated = "future_dated"
)

// Decision is what the plan does with one backup.
type Decision struct {
	Backup  Backup
	Keep    bool
	Reasons []string
}

// PlanTarget decides, for the backups of one target, which are kept (and by which rules) and
// which are deleted, newest first. It never deletes the newest verified backup and never keeps
// fewer than MinKeep (at least one); when it would delete every backup it returns an error and
// deletes nothing.
func PlanTarget(backups []Backup, p Policy) ([]Decision, error) {
	if len(backups) == 0 {
		return nil, nil
	}
	bs := append([]Backup(nil), backups...)
	sort.SliceStable(bs, func(i, j int) bool { return bs[i].Time.After(bs[j].Time) })
	if !p.Now.IsZero() && bs[0].Time.After(p.Now) {
		// Backups dated after now are kept and the rules plan the others as if they were not
		// there: with keep_last 1 a future-dated snapshot would otherwise take the place of the
		// real newest one.
		n := 0
		for n < len(bs) && bs[n].Time.After(p.Now) {
			n++
		}
		out := make([]Decision, 0, len(bs))
		for _, b := range bs[:n] {
			out = append(out, Decision{Backup: b, Keep: true, Reasons: []string{ReasonFutureDated}})
		}
		rest, err := PlanTarget(bs[n:], p)
		return append(out, rest...), err
	}
	ds := make([]Decision, len(bs))
	for i, b := range bs {
		ds[i].Backup = b
	}
	keep := func(i int, why string) {
		ds[i].Keep = true
		ds[i].Reasons = append(ds[i].Reasons, why)
	}
	newest := bs[0].Time
	if !p.Now.IsZero() && newest.After(p.Now) {
		// A backup dated ahead of now (a clock that was wrong when it was made) does not make
		// every real backup "old": ages count from now at the latest.
		newest = p.Now
	}
	// Expired backups are kept by no rule, only by the guards below; they stay in the order,
	// so "the N newest" counts them (a cap counts what exists, not what is left).
	expired := func(i int) bool { return p.ExpireAfter > 0 && p.Now.Sub(bs[i].Time) > p.ExpireAfter }
	for i := range bs {
		if expired(i) {
			continue
		}
		if i < p.KeepLast {
			keep(i, ReasonLast)
		}
		if p.KeepWithin > 0 && newest.Sub(bs[i].Time) <= p.KeepWithin {
			keep(i, ReasonWithin)
		}
	}
	// bucket keeps the newest backup of each of the n newest buckets among bs[from:] and
	// returns the index of the first backup older than those n buckets.
	bucket := func(from, n int, why string, key func(time.Time) string) int {
		seen := map[string]bool{}
		for i := from; i < len(bs); i++ {
			k := key(bs[i].Time.UTC())
			if seen[k] {
				continue
			}
			if len(seen) >= n {
				return i
			}
			seen[k] = true
			if !expired(i) {
				keep(i, why)
			}
		}
		return len(bs)
	}
	afterDaily := bucket(0, p.KeepDaily, ReasonDaily, func(t time.Time) string { return t.Format("2006-01-02") })
	weeklyFrom := 0
	if p.WeeklyAfterDaily {
		weeklyFrom = afterDaily
	}
	bucket(weeklyFrom, p.KeepWeekly, ReasonWeekly, func(t time.Time) string { y, w := t.ISOWeek(); return fmt.Sprintf("%d-W%02d", y, w) })
	bucket(0, p.KeepMonthly, ReasonMonthly, func(t time.Time) string { return t.Format("2006-01") })
	minKeep := max(p.MinKeep, 1)
	for i := 0; i < len(bs) && i < minKeep; i++ {
		if !ds[i].Keep {
			keep(i, ReasonMinKeep)
		}
	}
	for i := range bs {
		if bs[i].Verified {
			if !ds[i].Keep {
				keep(i, ReasonNewestVerified)
			}
			break
		}
	}
	kept := 0
	for _, d := range ds {
		if d.Keep {
			kept++
		}
	}
	if kept == 0 {
		return ds, fmt.Errorf("refusing: the plan would delete all %d backups", len(bs))
	}
	return ds, nil
}
