package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/wopr-network/opsd/internal/artifact"
	"github.com/wopr-network/opsd/internal/layout"
	"github.com/wopr-network/opsd/internal/prefixlock"
	"github.com/wopr-network/opsd/internal/storage"
)

// ForgetPlace is where targets live in the store: under Prefix, the Depth-th path element names
// the target (nightly/{node}/{container}/: prefix nightly/, depth 2).
type ForgetPlace = layout.TargetFolder

// ForgetConfig configures a Forget.
type ForgetConfig struct {
	// Tenant is the tenant id; Names are every target name that stands for it (tenant_abc for
	// containers, abc for instances and on-demand folders).
	Tenant string
	Names  []string
	Places []ForgetPlace
	DryRun bool
	// DeletesPerSecond limits the delete rate (default 100).
	DeletesPerSecond int
	LockWait         time.Duration
	Locks            *prefixlock.Locks
}

// Forget deletes every artifact (with its manifest, and any unfinished upload debris) of one
// tenant, on request: the platform deleted the tenant and its backups must go too.
type Forget struct {
	cfg   ForgetConfig
	store storage.Store
}

// NewForget returns the job.
func NewForget(cfg ForgetConfig, store storage.Store) *Forget {
	if cfg.DeletesPerSecond <= 0 {
		cfg.DeletesPerSecond = 100
	}
	if cfg.LockWait == 0 {
		cfg.LockWait = 10 * time.Minute
	}
	if cfg.Locks == nil {
		cfg.Locks = prefixlock.New()
	}
	return &Forget{cfg: cfg, store: store}
}

// Name returns "forget".
func (f *Forget) Name() string { return "forget" }

// Kind returns "forget".
func (f *Forget) Kind() string { return "forget" }

// WithDryRun returns a copy that only plans.
func (f *Forget) WithDryRun(dry bool) *Forget {
	c := *f
	c.cfg.DryRun = dry
	return &c
}

// ForgetPlan is every object of one tenant.
type ForgetPlan struct {
	Tenant  string   `json:"tenant"`
	Names   []string `json:"names"`
	DryRun  bool     `json:"dryRun"`
	Targets []string `json:"targets"`
	Keys    []string `json:"keys"`
	Bytes   int64    `json:"bytes"`
	Deleted int      `json:"deleted"`
	Errors  []string `json:"errors"`
}

// Plan lists every object of the tenant, manifests first (a backup stops counting at once).
func (f *Forget) Plan(ctx context.Context) (*ForgetPlan, error) {
	if f.cfg.Tenant == "" || len(f.cfg.Names) == 0 {
		return nil, errors.New("forget: no tenant given")
	}
	names := map[string]bool{}
	for _, n := range f.cfg.Names {
		names[n] = true
	}
	plan := &ForgetPlan{Tenant: f.cfg.Tenant, Names: f.cfg.Names, DryRun: f.cfg.DryRun, Targets: []string{}, Keys: []string{}, Errors: []string{}}
	seen, targets := map[string]bool{}, map[string]bool{}
	var manifests, others []string
	for _, pl := range f.cfg.Places {
		err := f.store.List(ctx, pl.Prefix, func(o storage.ObjectInfo) error {
			parts := strings.Split(strings.TrimPrefix(o.Key, pl.Prefix), "/")
			if pl.Depth < 1 || len(parts) <= pl.Depth || !names[parts[pl.Depth-1]] || seen[o.Key] {
				return nil
			}
			seen[o.Key] = true
			targets[pl.Prefix+strings.Join(parts[:pl.Depth], "/")+"/"] = true
			plan.Bytes += o.Size
			if artifact.IsManifest(o.Key) {
				manifests = append(manifests, o.Key)
			} else {
				others = append(others, o.Key)
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("forget: list %s: %w", pl.Prefix, err)
		}
	}
	sort.Strings(manifests)
	sort.Strings(others)
	plan.Keys = append(manifests, others...)
	for t := range targets {
		plan.Targets = append(plan.Targets, t)
	}
	sort.Strings(plan.Targets)
	return plan, nil
}

// Run plans and, unless a dry run, deletes every object of the tenant. It holds each place's
// prefix exclusively, so no drill or restore reads what it deletes.
func (f *Forget) Run(ctx context.Context) (Result, error) {
	var tm Timer
	tm.Start("lock")
	// Every place's hold guards the work: losing one (the coordination database's session
	// ended) stops forget before its next delete.
	outer := ctx
	for _, pl := range f.places() {
		hctx, release, err := f.cfg.Locks.Guard(ctx, f.cfg.LockWait, pl, true, "forget "+f.cfg.Tenant)
		if err != nil {
			if errors.Is(err, context.DeadlineExceeded) {
				return Result{}, fmt.Errorf("forget: %s is held by a drill, verification or restore: %w", pl, err)
			}
			return Result{}, fmt.Errorf("forget: hold %s: %w", pl, err)
		}
		defer release()
		ctx = hctx
	}
	lost := func(err error) error {
		if outer.Err() == nil && errors.Is(context.Cause(ctx), prefixlock.ErrLost) {
			return fmt.Errorf("forget: %w", context.Cause(ctx))
		}
		return err
	}
	tm.Start("plan")
	plan, err := f.Plan(ctx)
	if err != nil {
		return Result{}, lost(err)
	}
	if !f.cfg.DryRun {
		tm.Start("delete")
		tick := time.NewTicker(time.Second / time.Duration(f.cfg.DeletesPerSecond))
		defer tick.Stop()
		for _, k := range plan.Keys {
			if err := ctx.Err(); err != nil { // checked first: a ready tick must not win the select
				return Result{}, lost(err)
			}
			select {
			case <-ctx.Done():
				return Result{}, lost(ctx.Err())
			case <-tick.C:
			}
			if err := f.store.Delete(ctx, k); err != nil {
				plan.Errors = append(plan.Errors, err.Error())
				continue
			}
			plan.Deleted++
		}
	}
	res := Result{Phases: tm.Phases(), Report: plan.Text()}
	res.ReportJSON, _ = json.MarshalIndent(plan, "", "  ")
	verb := "deleted"
	n := plan.Deleted
	if plan.DryRun {
		verb, n = "would delete", len(plan.Keys)
	}
	res.Summary = fmt.Sprintf("%s %d objects (%d bytes) of tenant %s in %d targets", verb, n, plan.Bytes, plan.Tenant, len(plan.Targets))
	var errs []error
	for _, e := range plan.Errors {
		errs = append(errs, errors.New(e))
	}
	return res, errors.Join(errs...)
}

// places returns the distinct prefixes, in order.
func (f *Forget) places() []string {
	var out []string
	seen := map[string]bool{}
	for _, p := range f.cfg.Places {
		if !seen[p.Prefix] {
			seen[p.Prefix] = true
			out = append(out, p.Prefix)
		}
	}
	sort.Strings(out)
	return out
}

// Text renders the plan.
func (p *ForgetPlan) Text() string {
	var b strings.Builder
	verb := "delete"
	if p.DryRun {
		b.WriteString("DRY RUN: nothing is deleted\n")
		verb = "would delete"
	}
	fmt.Fprintf(&b, "tenant %s (names: %s): %d objects, %d bytes in %d targets\n", p.Tenant, strings.Join(p.Names, ", "), len(p.Keys), p.Bytes, len(p.Targets))
	for _, t := range p.Targets {
		fmt.Fprintf(&b, "  target %s\n", t)
	}
	for _, k := range p.Keys {
		fmt.Fprintf(&b, "    %-12s  %s\n", verb, k)
	}
	return b.String()
}
