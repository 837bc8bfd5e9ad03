package jobs

import (
	"fmt"
	"sort"
	"time"
)

// Policy says which backups of one target to keep. Keep rules are a union: a backup is kept when
// any rule keeps it. Ages are measured from the newest backup of the target, never from now, so a
// stalled backup job never ages everything out.
type Policy struct {
	KeepLast    int
	KeepDaily   int // newest backup of each of the N newest days that have backups (UTC)
	KeepWeekly  int // ... of each of the N newest ISO weeks that have backups
	KeepMonthly int // ... of each of the N newest months that have backups
	KeepWithin  time.Duration
	// MinKeep is the floor: never fewer backups than this (at least 1).
	MinKeep int
}

// String describes the policy.
func (p Policy) String() string {
	return fmt.Sprintf("last=%d daily=%d weekly=%d monthly=%d within=%s min=%d", p.KeepLast, p.KeepDaily, p.KeepWeekly, p.KeepMonthly, p.KeepWithin, p.MinKeep)
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
	ds := make([]Decision, len(bs))
	for i, b := range bs {
		ds[i].Backup = b
	}
	keep := func(i int, why string) {
		ds[i].Keep = true
		ds[i].Reasons = append(ds[i].Reasons, why)
	}
	newest := bs[0].Time
	for i := range bs {
		if i < p.KeepLast {
			keep(i, ReasonLast)
		}
		if p.KeepWithin > 0 && newest.Sub(bs[i].Time) <= p.KeepWithin {
			keep(i, ReasonWithin)
		}
	}
	bucket := func(n int, why string, key func(time.Time) string) {
		seen := map[string]bool{}
		for i := range bs {
			if len(seen) >= n {
				return
			}
			k := key(bs[i].Time.UTC())
			if !seen[k] {
				seen[k] = true
				keep(i, why)
			}
		}
	}
	bucket(p.KeepDaily, ReasonDaily, func(t time.Time) string { return t.Format("2006-01-02") })
	bucket(p.KeepWeekly, ReasonWeekly, func(t time.Time) string { y, w := t.ISOWeek(); return fmt.Sprintf("%d-W%02d", y, w) })
	bucket(p.KeepMonthly, ReasonMonthly, func(t time.Time) string { return t.Format("2006-01") })
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
