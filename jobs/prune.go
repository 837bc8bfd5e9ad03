package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/wopr-network/opsd/internal/artifact"
	"github.com/wopr-network/opsd/internal/layout"
	"github.com/wopr-network/opsd/internal/prefixlock"
	"github.com/wopr-network/opsd/internal/storage"
)

// PruneRule applies retention under one key prefix.
type PruneRule struct {
	Prefix string
	// Sets: each date folder under Prefix is one backup (platform/{YYYYMMDD}/...), pruned whole.
	Sets bool
	// Depth is how many path elements after Prefix name a target (nightly/{node}/{container}/: 2).
	Depth int
	// TierPolicy takes the policy from the target's tier (its newest manifest): "nightly" (daily,
	// weekly, retention days) or "on_demand" (at most the tier's on-demand maximum).
	TierPolicy string
	Policy     Policy
	// DeleteForeign opts this prefix in to deleting foreign objects (neither an opsd upload nor
	// an artifact with a manifest) older than the grace time. Off, they are only listed.
	DeleteForeign bool
}

// Tier is a retention tier, as the platform defines it: KeepDaily and KeepWeekly are counts of
// nightly archives (the newest, then one per ISO week before them); RetentionDays is only the
// expiry of on-demand snapshots and OnDemandMax caps how many are kept (0: unlimited).
type Tier struct {
	KeepDaily, KeepWeekly, OnDemandMax, RetentionDays int
}

// String lists the tier's numbers with the names of the job file.
func (t Tier) String() string {
	odm := fmt.Sprint(t.OnDemandMax)
	if t.OnDemandMax == 0 {
		odm = "unlimited"
	}
	return fmt.Sprintf("keep_daily=%d keep_weekly=%d on_demand_max=%s retention_days=%d", t.KeepDaily, t.KeepWeekly, odm, t.RetentionDays)
}

// PruneConfig configures a Prune.
type PruneConfig struct {
	Rules []PruneRule
	// Tiers: the tier table; a target's tier is the one its newest manifest records.
	Tiers map[string]Tier
	// Grace: opsd's unfinished uploads (staging objects) younger than this are left alone (an
	// upload may be in progress); older ones are removed as debris. Objects opsd did not write
	// are foreign: kept and listed, unless their rule sets DeleteForeign.
	Grace time.Duration
	// AbortUploadsAfter: unfinished multipart uploads older than this are aborted.
	AbortUploadsAfter time.Duration
	DeletesPerSecond  int
	DryRun            bool
	// LockWait: how long to wait for a drill or restore to release a prefix before skipping it.
	LockWait time.Duration
	Locks    *prefixlock.Locks
	Now      func() time.Time
	// OrphanKeep (0: forever) and Tenants: a tier-policy target (its last path element) whose tenant the
	// Tenants source no longer knows and whose newest backup is older than OrphanKeep is an
	// expired orphan: every backup of it is deleted. Nightly exports stop when a container is
	// gone, so an old newest backup also says the container no longer exists.
	OrphanKeep time.Duration
	Tenants    *TierSource
}

// Prune is the `prune` kind: retention per prefix with guards that make it impossible to prune
// away the last good backup.
type Prune struct {
	name    string
	cfg     PruneConfig
	store   storage.Store
	tenants *TierLookup // this run's view of the platform's tenants (orphan policy)
}

// NewPrune returns the job.
func NewPrune(name string, cfg PruneConfig, store storage.Store) *Prune {
	if cfg.Grace == 0 {
		cfg.Grace = 6 * time.Hour
	}
	if cfg.AbortUploadsAfter == 0 {
		cfg.AbortUploadsAfter = 24 * time.Hour
	}
	if cfg.DeletesPerSecond <= 0 {
		cfg.DeletesPerSecond = 100
	}
	if cfg.LockWait == 0 {
		cfg.LockWait = 10 * time.Minute
	}
	if cfg.Locks == nil {
		cfg.Locks = prefixlock.New()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Prune{name: name, cfg: cfg, store: store}
}

// Name returns the job's name.
func (p *Prune) Name() string { return p.name }

// Kind returns "prune".
func (p *Prune) Kind() string { return "prune" }

// WithDryRun returns a copy that only plans.
func (p *Prune) WithDryRun(dry bool) *Prune {
	c := *p
	c.cfg.DryRun = dry
	return &c
}

// PrunePlan is what a prune run decided (and, unless a dry run, did).
type PrunePlan struct {
	DryRun     bool       `json:"dryRun"`
	Rules      []RulePlan `json:"rules"`
	Deleted    int        `json:"deleted"`
	Kept       int        `json:"kept"`
	Refused    int        `json:"refused"`
	BytesFreed int64      `json:"bytesFreed"`
	Aborted    int        `json:"abortedUploads"`
	// Foreign counts objects found that opsd did not write and kept.
	Foreign   int      `json:"foreign"`
	Errors    []string `json:"errors"`
	Orphans   int      `json:"orphans"`
	byKey     map[string]int
	orphanErr error
}

// RulePlan is the plan for one prefix.
type RulePlan struct {
	Prefix  string       `json:"prefix"`
	Skipped string       `json:"skipped,omitempty"`
	Targets []TargetPlan `json:"targets"`
	// Debris are opsd's own unfinished uploads (staging objects, objects carrying opsd's upload
	// marker without a manifest, manifests whose artifact is gone) older than the grace time.
	Debris []string `json:"debris"`
	// Foreign objects (no opsd upload marker, no manifest) are kept...
	Foreign []string `json:"foreign"`
	// ...unless the rule opts in to deleting them (delete_foreign): then they are here.
	ForeignDelete []string `json:"foreignDelete"`
	// Recovered are uploads published without their manifest, finished from their staged one.
	Recovered []string `json:"recovered,omitempty"`
	// Errors are per-target problems (an unknown tier): those targets are not pruned.
	Errors []string `json:"errors,omitempty"`
	sizes  map[string]int64
	// staged: in a dry run, the manifests the real run's recovery writes first, by artifact key.
	staged map[string]stagedManifest
}

// stagedManifest is a manifest a recovery writes, and the staging object it is written from.
type stagedManifest struct {
	m  artifact.Manifest
	at string
}

// planned counts the objects and bytes the rule's plan deletes.
func (rp *RulePlan) planned() (n int, bytes int64) {
	for _, t := range rp.Targets {
		for _, d := range t.Delete {
			n += len(d.Keys)
			bytes += d.Size
		}
	}
	for _, k := range append(append([]string{}, rp.Debris...), rp.ForeignDelete...) {
		n++
		bytes += rp.sizes[k]
	}
	return n, bytes
}

// manifest reads the manifest of key, or in a dry run the staged one the real run's recovery
// writes first.
func (rp *RulePlan) manifest(ctx context.Context, store storage.Store, key string) (artifact.Manifest, error) {
	if sm, ok := rp.staged[key]; ok {
		return sm.m, nil
	}
	return artifact.ReadManifest(ctx, store, key)
}

// TargetPlan is the plan for one target.
type TargetPlan struct {
	Target string `json:"target"`
	Tier   string `json:"tier,omitempty"`
	// TierFrom is the artifact whose manifest gave the tier; TierRule the tier's numbers.
	TierFrom string `json:"tierFrom,omitempty"`
	TierRule string `json:"tierRule,omitempty"`
	Policy   string `json:"policy"`
	// Orphan says why every backup of the target goes (an expired orphan).
	Orphan  string     `json:"orphan,omitempty"`
	Refused string     `json:"refused,omitempty"`
	Keep    []KeepItem `json:"keep"`
	Delete  []DelItem  `json:"delete"`
}

// KeepItem is a kept backup and the rules that keep it.
type KeepItem struct {
	ID      string   `json:"id"`
	Reasons []string `json:"reasons"`
	// ExpiresAt is when an on-demand snapshot expires (created + the tier's retention_days).
	ExpiresAt *time.Time `json:"expiresAt,omitempty"`
}

// DelItem is a backup to delete with every object it consists of.
type DelItem struct {
	ID   string   `json:"id"`
	Keys []string `json:"keys"`
	Size int64    `json:"size"`
	Why  string   `json:"why,omitempty"`
}

var keyDate = regexp.MustCompile(`(\d{8})(?:[T_-]?(\d{6}))?(?:\D|$)`)

// keyTime is the creation time a key's file name records: its last YYYYMMDD, with the HHMMSS
// that may follow it ({date}_{time}), UTC.
func keyTime(key string) (time.Time, bool) {
	m := keyDate.FindAllStringSubmatch(key[strings.LastIndexByte(key, '/')+1:], -1)
	if len(m) == 0 {
		return time.Time{}, false
	}
	last := m[len(m)-1]
	if last[2] != "" {
		if t, err := time.Parse("20060102150405", last[1]+last[2]); err == nil {
			return t, true
		}
	}
	t, err := time.Parse("20060102", last[1])
	return t, err == nil
}

// relTime is the creation time a backup's key records below its target's folder: its file
// name's (keyTime), else the nearest folder's ({date} as a folder of a custom template, e.g.
// exports/{container}/{date}/{node}.tar). The target's own folders never give a date.
func relTime(rel string) (time.Time, bool) {
	parts := strings.Split(rel, "/")
	for i := len(parts) - 1; i >= 0; i-- {
		if t, ok := keyTime(parts[i]); ok {
			return t, true
		}
	}
	return time.Time{}, false
}

// Run plans every rule and, unless a dry run, deletes what the plan says.
func (p *Prune) Run(ctx context.Context) (Result, error) {
	plan := &PrunePlan{DryRun: p.cfg.DryRun, Errors: []string{}}
	var tm Timer
	if p.cfg.OrphanKeep > 0 && p.cfg.Tenants != nil {
		run := *p
		run.tenants, plan.orphanErr = p.cfg.Tenants.Load(ctx)
		if plan.orphanErr == nil && len(run.tenants.rows) == 0 {
			// A record without a single tenant (an emptied table, a query on the wrong schema)
			// cannot tell a gone tenant from a live one: it would make every tenant an orphan.
			run.tenants, plan.orphanErr = nil, fmt.Errorf("the tenant record (%s) has no tenant", p.cfg.Tenants)
		}
		if plan.orphanErr != nil {
			// Without the tenant record no target is an orphan this run; the rest still runs.
			plan.Errors = append(plan.Errors, fmt.Sprintf("orphan policy off this run: %v", plan.orphanErr))
		}
		p = &run
	}
	// A tenant query whose rows name none of the stored targets (a query on the wrong column or
	// table, ids of another format than tenant_from's) would make every tenant look gone, and
	// the exports' manifests, whose tiers the same query gave, may carry its default for every
	// tenant: the tenants' prefixes are left alone this run.
	var tenantsErr error
	if p.tenants != nil && p.tenants.src.Kind == "query" {
		tenantsErr = p.tenantsMatchTargets(ctx)
		if tenantsErr != nil {
			if ctx.Err() != nil {
				return Result{}, ctx.Err()
			}
			plan.Errors = append(plan.Errors, tenantsErr.Error())
		}
	}
	for _, rule := range p.cfg.Rules {
		tm.Start("plan " + rule.Prefix)
		rp := RulePlan{Prefix: rule.Prefix, Targets: []TargetPlan{}, Debris: []string{}, Foreign: []string{}, ForeignDelete: []string{}, sizes: map[string]int64{}}
		if tenantsErr != nil && tenantRule(rule) {
			rp.Skipped = "nothing pruned: " + tenantsErr.Error()
			plan.Rules = append(plan.Rules, rp)
			continue
		}
		// The rule's work runs under hctx: it ends when the hold stops keeping other hosts out
		// (the coordination database's session was lost), so prune never deletes unguarded.
		hctx, release, err := p.cfg.Locks.Guard(ctx, p.cfg.LockWait, rule.Prefix, true, "prune "+p.name)
		if err != nil {
			if ctx.Err() != nil {
				return Result{}, ctx.Err()
			}
			if errors.Is(err, context.DeadlineExceeded) {
				rp.Skipped = fmt.Sprintf("a drill, verification or restore held %s for more than %s", rule.Prefix, p.cfg.LockWait)
			} else {
				rp.Skipped = fmt.Sprintf("could not hold %s alone: %v", rule.Prefix, err)
			}
			plan.Rules = append(plan.Rules, rp)
			continue
		}
		// Uploads that died between publishing and writing their manifest are finished first.
		var rec []artifact.Recovered
		rec, err = artifact.Recover(hctx, p.store, rule.Prefix, p.cfg.Now().Add(-p.cfg.Grace), p.cfg.DryRun)
		for _, r := range rec {
			rp.Recovered = append(rp.Recovered, r.Key)
			for _, k := range r.Staging {
				rp.sizes[k] = -1 // removed by the recovery, not by prune
			}
			if p.cfg.DryRun {
				// The real run writes this manifest first: the dry run plans with it.
				if rp.staged == nil {
					rp.staged = map[string]stagedManifest{}
				}
				rp.staged[r.Key] = stagedManifest{r.Manifest, r.Staging[len(r.Staging)-1]}
			}
		}
		if err == nil {
			err = p.planRule(hctx, rule, &rp)
		}
		if err == nil && !p.cfg.DryRun {
			tm.Start("delete " + rule.Prefix)
			err = p.execute(hctx, &rp, plan)
			if err == nil {
				if n, aerr := p.store.AbortIncompleteUploads(hctx, rule.Prefix, p.cfg.AbortUploadsAfter); aerr == nil {
					plan.Aborted += n
				} else {
					plan.Errors = append(plan.Errors, aerr.Error())
				}
			}
		}
		if err != nil && ctx.Err() == nil && errors.Is(context.Cause(hctx), prefixlock.ErrLost) {
			err = context.Cause(hctx)
		}
		release()
		if err != nil {
			return Result{}, fmt.Errorf("prune %s: %w", rule.Prefix, err)
		}
		plan.Errors = append(plan.Errors, rp.Errors...)
		for _, t := range rp.Targets {
			plan.Kept += len(t.Keep)
			if t.Refused != "" {
				plan.Refused++
			}
			if t.Orphan != "" {
				plan.Orphans++
			}
		}
		plan.Foreign += len(rp.Foreign)
		if p.cfg.DryRun {
			// Exactly what the real run deletes: backups, debris and opted-in foreign objects.
			n, b := rp.planned()
			plan.Deleted += n
			plan.BytesFreed += b
		}
		plan.Rules = append(plan.Rules, rp)
	}
	res := Result{Phases: tm.Phases(), Report: plan.Text()}
	res.ReportJSON, _ = json.MarshalIndent(plan, "", "  ")
	res.Prune = &PruneStats{Deleted: plan.Deleted, Kept: plan.Kept, Refused: plan.Refused, BytesFreed: plan.BytesFreed, DryRun: plan.DryRun, Foreign: plan.Foreign}
	verb := "deleted"
	if plan.DryRun {
		verb = "would delete"
	}
	res.Summary = fmt.Sprintf("%s %d objects (%d bytes), kept %d backups and %d foreign objects, refused %d targets", verb, plan.Deleted, plan.BytesFreed, plan.Kept, plan.Foreign, plan.Refused)
	var errs []error
	for _, e := range plan.Errors {
		errs = append(errs, errors.New(e))
	}
	return res, errors.Join(errs...)
}

// planRule lists the prefix and plans every target.
func (p *Prune) planRule(ctx context.Context, rule PruneRule, rp *RulePlan) error {
	objs := map[string]storage.ObjectInfo{}
	if err := p.store.List(ctx, rule.Prefix, func(o storage.ObjectInfo) error {
		objs[o.Key] = o
		return nil
	}); err != nil {
		return err
	}
	for k, sm := range rp.staged {
		if _, ok := objs[k]; ok {
			objs[artifact.ManifestKey(k)] = storage.ObjectInfo{Key: artifact.ManifestKey(k), Size: objs[sm.at].Size, ModTime: objs[sm.at].ModTime}
		}
	}
	now := p.cfg.Now()
	type group struct {
		backups    []Backup
		keys       map[string][]string
		newestKey  string // the newest artifact with a manifest: its manifest gives the tier
		newestTime time.Time
	}
	groups := map[string]*group{}
	targetOf := func(key string) (string, bool) {
		parts := strings.Split(strings.TrimPrefix(key, rule.Prefix), "/")
		depth := rule.Depth
		if rule.Sets {
			depth = 0
		}
		if len(parts) <= depth || (rule.Sets && len(parts) < 2) {
			return "", false
		}
		return rule.Prefix + strings.Join(parts[:depth], "/"), true
	}
	keys := slices.Sorted(maps.Keys(objs))
	for _, k := range keys {
		o := objs[k]
		old := now.Sub(o.ModTime) > p.cfg.Grace
		if rp.sizes[k] == -1 {
			continue // a recovery's staging object (a dry run still sees it)
		}
		if artifact.IsManifest(k) {
			if _, ok := objs[strings.TrimSuffix(k, artifact.ManifestSuffix)]; !ok && old {
				rp.Debris = append(rp.Debris, k) // a manifest whose artifact is gone
				rp.sizes[k] = o.Size
			}
			continue
		}
		if _, ok := objs[artifact.ManifestKey(k)]; !ok {
			own, marker, err := p.opsdUpload(ctx, k)
			if staged, ok := objs[storage.StagingKey(artifact.ManifestKey(k), marker)]; ok && marker != "" && now.Sub(staged.ModTime) <= p.cfg.Grace {
				// A new key's upload whose manifest is being written: the object's date may be
				// its upload's start (S3 dates a multipart upload so), the staged manifest's is
				// not. Recover finishes it if that upload died.
				old = false
			}
			switch {
			case err != nil:
				return err
			case own && old:
				rp.Debris = append(rp.Debris, k) // opsd started it and never finished: not a backup
				rp.sizes[k] = o.Size
			case own:
				// An upload may still be running: left alone until the grace time passed.
			case rule.DeleteForeign && old:
				rp.ForeignDelete = append(rp.ForeignDelete, k)
				rp.sizes[k] = o.Size
			default:
				rp.Foreign = append(rp.Foreign, k)
			}
			continue
		}
		target, ok := targetOf(k)
		if !ok {
			continue
		}
		g := groups[target]
		if g == nil {
			g = &group{keys: map[string][]string{}}
			groups[target] = g
		}
		id, t := k, o.ModTime
		if rule.Sets {
			date := strings.SplitN(strings.TrimPrefix(k, rule.Prefix), "/", 2)[0]
			id = rule.Prefix + date + "/"
			if d, err := layout.ParseDate(date); err == nil {
				t = d
			}
		} else if kt, ok := relTime(strings.TrimPrefix(strings.TrimPrefix(k, target), "/")); ok {
			t = kt
		}
		if _, seen := g.keys[id]; !seen {
			g.backups = append(g.backups, Backup{ID: id, Time: t, Verified: true})
		}
		g.keys[id] = append(g.keys[id], artifact.ManifestKey(k), k)
		for i := range g.backups {
			if g.backups[i].ID == id {
				g.backups[i].Size += o.Size + objs[artifact.ManifestKey(k)].Size
			}
		}
		if g.newestKey == "" || t.After(g.newestTime) {
			g.newestKey, g.newestTime = k, t
		}
	}
	names := slices.Sorted(maps.Keys(groups))
	for _, name := range names {
		g := groups[name]
		tp := TargetPlan{Target: name, Keep: []KeepItem{}, Delete: []DelItem{}}
		if why := p.expiredOrphan(name, g.newestTime, now, rule); why != "" {
			tp.Orphan = why
			for _, b := range g.backups {
				tp.Delete = append(tp.Delete, DelItem{ID: b.ID, Keys: g.keys[b.ID], Size: b.Size, Why: "orphan"})
			}
			rp.Targets = append(rp.Targets, tp)
			continue
		}
		policy := rule.Policy
		if rule.TierPolicy != "" {
			tier, t, err := p.targetTier(ctx, rp, g.newestKey)
			tp.Tier, tp.TierFrom = tier, g.newestKey
			if err != nil {
				// Never a silent default: the target keeps everything and the run reports it.
				tp.Refused = fmt.Sprintf("%s: nothing pruned", err)
				rp.Errors = append(rp.Errors, fmt.Sprintf("%s: %v", name, err))
				for _, b := range g.backups {
					tp.Keep = append(tp.Keep, KeepItem{ID: b.ID, Reasons: []string{"refused"}})
				}
				rp.Targets = append(rp.Targets, tp)
				continue
			}
			tp.TierRule = t.String()
			policy = tierPolicyFor(rule.TierPolicy, t, rule.Policy.MinKeep, now)
		}
		tp.Policy = policy.String()
		policy.Now = now
		p.markUnverified(ctx, rp, g.backups, g.keys, objs)
		ds, err := PlanTarget(g.backups, policy)
		if err != nil {
			tp.Refused = err.Error()
			for _, d := range ds {
				tp.Keep = append(tp.Keep, KeepItem{ID: d.Backup.ID, Reasons: []string{"refused"}})
			}
			rp.Targets = append(rp.Targets, tp)
			continue
		}
		for _, d := range ds {
			if d.Keep {
				k := KeepItem{ID: d.Backup.ID, Reasons: d.Reasons}
				if policy.ExpireAfter > 0 {
					exp := d.Backup.Time.Add(policy.ExpireAfter).UTC()
					k.ExpiresAt = &exp
				}
				tp.Keep = append(tp.Keep, k)
			} else {
				why := "kept by no rule"
				if policy.ExpireAfter > 0 && now.Sub(d.Backup.Time) > policy.ExpireAfter {
					why = "expired " + d.Backup.Time.Add(policy.ExpireAfter).UTC().Format(time.RFC3339)
				} else if policy.KeepLast > 0 && policy.KeepLast < Unlimited {
					why = fmt.Sprintf("beyond the newest %d", policy.KeepLast)
				}
				tp.Delete = append(tp.Delete, DelItem{ID: d.Backup.ID, Keys: g.keys[d.Backup.ID], Size: d.Backup.Size, Why: why})
			}
		}
		rp.Targets = append(rp.Targets, tp)
	}
	return nil
}

// markUnverified reads the manifests of a target's newest backups until one backup's every
// object is the size its manifest records: the newer ones (cut short or overwritten at rest, which
// no reader accepts) are not verified, so the guard keeps the newest backup that is. keys are a
// backup's objects as planned, each manifest before its artifact. An unreadable manifest counts
// as a mismatch: that only ever keeps more.
func (p *Prune) markUnverified(ctx context.Context, rp *RulePlan, backups []Backup, keys map[string][]string, objs map[string]storage.ObjectInfo) {
	order := make([]int, len(backups))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return backups[b].Time.Compare(backups[a].Time) })
	for _, i := range order {
		ok := true
		for j := 1; j < len(keys[backups[i].ID]) && ok; j += 2 {
			k := keys[backups[i].ID][j]
			m, err := rp.manifest(ctx, p.store, k)
			ok = err == nil && m.Size == objs[k].Size
		}
		if ok {
			return
		}
		backups[i].Verified = false
	}
}

// opsdUpload reports whether an object without a manifest is one opsd started uploading: a
// staging key, or (on stores that keep metadata) an object carrying opsd's upload marker, which
// it returns.
func (p *Prune) opsdUpload(ctx context.Context, key string) (bool, string, error) {
	if storage.IsStaging(key) {
		return true, "", nil
	}
	st, err := p.store.Stat(ctx, key)
	if errors.Is(err, storage.ErrNotFound) {
		return false, "", nil // removed since the listing
	}
	if err != nil {
		return false, "", fmt.Errorf("prune: %w", err)
	}
	marker := st.Metadata[storage.UploadMetaKey]
	return marker != "", marker, nil
}

// tenantRule reports whether a rule's targets are tenants' (the orphan policy's targets).
func tenantRule(rule PruneRule) bool { return !rule.Sets && rule.TierPolicy != "" }

// errTenantFound stops tenantsMatchTargets' listing at the first target the record knows.
var errTenantFound = errors.New("a target's tenant is in the record")

// tenantsMatchTargets fails when the tenant record names none of the targets stored under the
// tenants' prefixes (while at least one of them names a tenant): such a record cannot tell a
// gone tenant from a live one. It lists until the first target the record knows, which in a
// working setup is one of the first.
func (p *Prune) tenantsMatchTargets(ctx context.Context) error {
	checked := map[string]bool{}
	var prefixes []string
	for _, rule := range p.cfg.Rules {
		if !tenantRule(rule) {
			continue
		}
		prefixes = append(prefixes, rule.Prefix)
		err := p.store.List(ctx, rule.Prefix, func(o storage.ObjectInfo) error {
			if !artifact.IsManifest(o.Key) {
				return nil
			}
			parts := strings.Split(strings.TrimPrefix(o.Key, rule.Prefix), "/")
			if rule.Depth < 1 || len(parts) <= rule.Depth {
				return nil
			}
			name := parts[rule.Depth-1]
			if checked[name] {
				return nil
			}
			exists, known := p.tenants.TenantExists(name)
			if !known {
				return nil
			}
			checked[name] = true
			if exists {
				return errTenantFound
			}
			return nil
		})
		if errors.Is(err, errTenantFound) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("check the tenant record against %s: %w", rule.Prefix, err)
		}
	}
	if len(checked) == 0 {
		return nil
	}
	return fmt.Errorf("the tenant record (%s) has %d tenants but none of the %d tenants backed up under %s: a query that matches no target cannot tell a gone tenant from a live one, nor give their tiers (check its query and tenant_from %q)",
		p.tenants.src, len(p.tenants.rows), len(checked), strings.Join(prefixes, ", "), p.tenants.src.TenantFrom)
}

// expiredOrphan says why a target is an expired orphan ("" when it is not): its tenant is gone
// from the platform's tenant record and its newest backup is older than orphan_keep.
func (p *Prune) expiredOrphan(target string, newest, now time.Time, rule PruneRule) string {
	// Only tier-policy targets are tenants' (nightly/{node}/{container}/, on-demand/{tenant}/);
	// other prefixes (platform sets, pre-restore copies) keep their own rules and guards.
	if p.tenants == nil || p.cfg.OrphanKeep <= 0 || rule.Sets || rule.TierPolicy == "" {
		return ""
	}
	name := target[strings.LastIndexByte(strings.TrimSuffix(target, "/"), '/')+1:]
	exists, known := p.tenants.TenantExists(name)
	if !known || exists || now.Sub(newest) <= p.cfg.OrphanKeep {
		return ""
	}
	tenant, _ := p.tenants.src.TenantOf(name)
	return fmt.Sprintf("orphan: tenant %q is gone from %s and the newest backup (%s) is older than orphan_keep %s", tenant, p.tenants.src, newest.UTC().Format("2006-01-02"), days(p.cfg.OrphanKeep))
}

// targetTier is the tier of a target: the one its newest manifest records. A manifest without a
// tier, or with one the tier table does not define, is an error for that target (never free).
func (p *Prune) targetTier(ctx context.Context, rp *RulePlan, newestKey string) (string, Tier, error) {
	m, err := rp.manifest(ctx, p.store, newestKey)
	if err != nil {
		return "", Tier{}, fmt.Errorf("read the tier of %s: %w", newestKey, err)
	}
	if m.Tier == "" {
		return "", Tier{}, fmt.Errorf("%s records no tier", artifact.ManifestKey(newestKey))
	}
	t, ok := p.cfg.Tiers[m.Tier]
	if !ok {
		return m.Tier, Tier{}, fmt.Errorf("unknown tier %q in %s (known: %s)", m.Tier, artifact.ManifestKey(newestKey), strings.Join(slices.Sorted(maps.Keys(p.cfg.Tiers)), ", "))
	}
	return m.Tier, t, nil
}

// tierPolicyFor is what a tier means, as the platform defines it. Nightly archives are counts
// only: the keep_daily newest, then the newest of each ISO week for keep_weekly weeks before
// them. On-demand snapshots expire retention_days after they were created (measured from now:
// it is an absolute expiry) and at most on_demand_max of them are kept (0: unlimited).
func tierPolicyFor(kind string, t Tier, minKeep int, now time.Time) Policy {
	if kind == "on_demand" {
		p := Policy{KeepLast: t.OnDemandMax, MinKeep: minKeep, Now: now}
		if t.OnDemandMax == 0 {
			p.KeepLast = Unlimited
		}
		if t.RetentionDays > 0 {
			p.ExpireAfter = time.Duration(t.RetentionDays) * 24 * time.Hour
		}
		return p
	}
	return Policy{KeepDaily: t.KeepDaily, KeepWeekly: t.KeepWeekly, WeeklyAfterDaily: true, MinKeep: minKeep}
}

// execute deletes the planned objects, manifest first (the backup stops counting at once),
// rate-limited.
func (p *Prune) execute(ctx context.Context, rp *RulePlan, plan *PrunePlan) error {
	tick := time.NewTicker(time.Second / time.Duration(p.cfg.DeletesPerSecond))
	defer tick.Stop()
	del := func(key string, size int64) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
		if err := p.store.Delete(ctx, key); err != nil {
			plan.Errors = append(plan.Errors, err.Error())
			return nil
		}
		plan.Deleted++
		plan.BytesFreed += size
		return nil
	}
	for _, t := range rp.Targets {
		for _, d := range t.Delete {
			for i, k := range d.Keys {
				size := int64(0)
				if i == len(d.Keys)-1 {
					size = d.Size
				}
				if err := del(k, size); err != nil {
					return err
				}
			}
		}
	}
	for _, k := range append(append([]string{}, rp.Debris...), rp.ForeignDelete...) {
		if err := del(k, rp.sizes[k]); err != nil {
			return err
		}
	}
	return nil
}

// Text renders the plan for operators: per target, what is kept and by which rule, and what is
// (or would be) deleted.
func (plan *PrunePlan) Text() string {
	var b strings.Builder
	verb := "delete"
	if plan.DryRun {
		verb = "would delete"
		b.WriteString("DRY RUN: nothing is deleted\n")
	}
	for _, r := range plan.Rules {
		fmt.Fprintf(&b, "%s\n", r.Prefix)
		if r.Skipped != "" {
			fmt.Fprintf(&b, "  skipped: %s\n", r.Skipped)
			continue
		}
		for _, t := range r.Targets {
			fmt.Fprintf(&b, "  %s: keep %d, %s %d\n", t.Target, len(t.Keep), verb, len(t.Delete))
			switch {
			case t.TierRule != "":
				fmt.Fprintf(&b, "    tier %s (%s) from %s\n", t.Tier, t.TierRule, t.TierFrom)
			case t.TierFrom != "":
				tier := "unknown"
				if t.Tier != "" {
					tier = "unknown: " + t.Tier
				}
				fmt.Fprintf(&b, "    tier %s from %s\n", tier, t.TierFrom)
			}
			switch {
			case t.Orphan != "":
				fmt.Fprintf(&b, "    ORPHAN   %s\n", t.Orphan)
			case t.Policy != "":
				fmt.Fprintf(&b, "    policy %s\n", t.Policy)
			}
			if t.Refused != "" {
				fmt.Fprintf(&b, "    REFUSED  %s\n", t.Refused)
			}
			for _, k := range t.Keep {
				exp := ""
				if k.ExpiresAt != nil {
					exp = "  expires " + k.ExpiresAt.Format(time.RFC3339)
				}
				fmt.Fprintf(&b, "    keep          %s  (%s)%s\n", k.ID, strings.Join(k.Reasons, ", "), exp)
			}
			for _, d := range t.Delete {
				fmt.Fprintf(&b, "    %-12s  %s  (%d objects, %d bytes; %s)\n", verb, d.ID, len(d.Keys), d.Size, d.Why)
			}
		}
		for _, k := range r.Recovered {
			fmt.Fprintf(&b, "  recover         %s  (published, manifest missing: written from the staged one)\n", k)
		}
		for _, k := range r.Debris {
			fmt.Fprintf(&b, "  %-14s  %s  (opsd's upload that never finished)\n", verb+" debris", k)
		}
		for _, k := range r.ForeignDelete {
			fmt.Fprintf(&b, "  %-14s  %s  (not written by opsd; delete_foreign is set for %s)\n", verb+" foreign", k, r.Prefix)
		}
		for _, k := range r.Foreign {
			fmt.Fprintf(&b, "  keep foreign    %s  (not written by opsd: kept; `opsd adopt` verifies it and brings it under retention)\n", k)
		}
	}
	fmt.Fprintf(&b, "Result: %s %d objects (%d bytes), kept %d backups and %d foreign objects, refused %d targets\n", map[bool]string{true: "would delete", false: "deleted"}[plan.DryRun], plan.Deleted, plan.BytesFreed, plan.Kept, plan.Foreign, plan.Refused)
	return b.String()
}
