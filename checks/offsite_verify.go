package checks

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/wopr-network/opsd/internal/artifact"
	"github.com/wopr-network/opsd/internal/docker"
	"github.com/wopr-network/opsd/internal/layout"
	"github.com/wopr-network/opsd/internal/prefixlock"
	"github.com/wopr-network/opsd/internal/storage"
	"github.com/wopr-network/opsd/jobs"
)

// OffsiteVerifyConfig configures an OffsiteVerify.
type OffsiteVerifyConfig struct {
	// Layout finds the backups (nil: the default layout); Prefix is what verification locks
	// against prune (default: the folder of the layout's database keys).
	Layout    *layout.Layout
	Prefix    string
	Databases []string // every date must hold each of these
	// Dates is how many of the newest date sets are checked.
	Dates int
	// MaxAge: the newest set must be younger than this.
	MaxAge time.Duration
	// Deep re-downloads the newest set and checks every SHA-256.
	Deep bool
	// Containers, when set, lists this node's tenant containers: each must have a nightly backup
	// younger than NightlyMaxAge and (with HotMaxAge set) a hot backup younger than HotMaxAge.
	Containers    ContainerLister
	NamePrefix    string
	Node          string
	NightlyMaxAge time.Duration
	HotMaxAge     time.Duration
	// PostgresDatabases are the PostgreSQL databases (postgres_backup jobs) whose dumps are
	// verified like the sets: the newest Dates dumps have a manifest matching the object (size,
	// and with Deep the newest one's SHA-256), and the newest is younger than PostgresMaxAge
	// (default MaxAge).
	PostgresDatabases []string
	PostgresMaxAge    time.Duration
	Locks             *prefixlock.Locks
	Now               func() time.Time
}

// ContainerLister lists containers (the Docker client).
type ContainerLister interface {
	List(ctx context.Context, prefix string, labels map[string]string) ([]docker.Container, error)
}

// OffsiteVerify is the `offsite_verify` kind: it checks that the object store really holds what
// the backups claim, by key, without trusting opsd's own records.
type OffsiteVerify struct {
	name  string
	cfg   OffsiteVerifyConfig
	store storage.Store
}

// NewOffsiteVerify returns the job.
func NewOffsiteVerify(name string, cfg OffsiteVerifyConfig, store storage.Store) *OffsiteVerify {
	if cfg.Layout == nil {
		cfg.Layout = layout.Default()
	}
	if cfg.Prefix == "" {
		cfg.Prefix = cfg.Layout.Root(layout.SQLite)
	}
	if cfg.Dates < 1 {
		cfg.Dates = 3
	}
	if cfg.MaxAge == 0 {
		cfg.MaxAge = 26 * time.Hour
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.PostgresMaxAge == 0 {
		cfg.PostgresMaxAge = cfg.MaxAge
	}
	if cfg.Locks == nil {
		cfg.Locks = prefixlock.New()
	}
	return &OffsiteVerify{name: name, cfg: cfg, store: store}
}

// Name returns the job's name.
func (v *OffsiteVerify) Name() string { return v.name }

// Kind returns "offsite_verify".
func (v *OffsiteVerify) Kind() string { return "offsite_verify" }

// WithDeep returns a copy that (when deep) re-downloads and checksums the newest set.
func (v *OffsiteVerify) WithDeep(deep bool) *OffsiteVerify {
	c := *v
	c.cfg.Deep = deep
	return &c
}

// Problem is one thing offsite verification found wrong.
type Problem struct {
	Kind   string `json:"kind"` // missing or mismatched
	Key    string `json:"key"`
	Detail string `json:"detail"`
}

// VerifyReport is the JSON report of a verification.
type VerifyReport struct {
	Job       string    `json:"job"`
	CheckedAt time.Time `json:"checkedAt"`
	Dates     []string  `json:"dates"`
	Deep      bool      `json:"deep"`
	Problems  []Problem `json:"problems"`
}

// Run verifies the newest sets.
func (v *OffsiteVerify) Run(ctx context.Context) (jobs.Result, error) {
	release, err := v.cfg.Locks.Acquire(ctx, v.cfg.Prefix, false, "verify "+v.name)
	if err != nil {
		return jobs.Result{}, err
	}
	defer release()
	if len(v.cfg.PostgresDatabases) > 0 {
		if root := v.cfg.Layout.Root(layout.Postgres); root != v.cfg.Prefix {
			releasePG, err := v.cfg.Locks.Acquire(ctx, root, false, "verify "+v.name)
			if err != nil {
				return jobs.Result{}, err
			}
			defer releasePG()
		}
	}
	now := v.cfg.Now()
	rep := VerifyReport{Job: v.name, CheckedAt: now.UTC(), Deep: v.cfg.Deep, Problems: []Problem{}, Dates: []string{}}
	add := func(kind, key, format string, args ...any) {
		rep.Problems = append(rep.Problems, Problem{Kind: kind, Key: key, Detail: fmt.Sprintf(format, args...)})
	}
	dates, err := v.cfg.Layout.Sets(ctx, v.store)
	if err != nil {
		return jobs.Result{}, fmt.Errorf("verify %s: %w", v.name, err)
	}
	var res jobs.Result
	// Freshness counts from the newest set not dated after tomorrow: a set written while the
	// clock was ahead (dated days or years on) would otherwise pass for fresh until its date
	// came, whatever happened to the backups meanwhile.
	fresh := -1
	for i, ds := range dates {
		if t, _ := layout.ParseDate(ds.Date); !t.After(now.Add(futureSlack)) {
			fresh = i
			break
		}
	}
	switch {
	case len(dates) == 0:
		add("missing", v.cfg.Prefix, "no backup sets at all")
	case fresh < 0:
		add("missing", v.cfg.Prefix, "no backup set dated up to today: the newest, %s, is dated after now (written while the clock was ahead)", dates[0].Date)
	default:
		if t, _ := layout.ParseDate(dates[fresh].Date); now.Sub(t.Add(24*time.Hour)) > v.cfg.MaxAge {
			future := ""
			if fresh > 0 {
				future = fmt.Sprintf(" (%s, dated after now, written while the clock was ahead, does not count)", dates[0].Date)
			}
			add("missing", v.cfg.Layout.SetPrefix(dates[fresh].Date), "the newest set is from %s, older than %s%s", dates[fresh].Date, v.cfg.MaxAge, future)
		}
	}
	for i, ds := range dates {
		if i >= v.cfg.Dates {
			break
		}
		rep.Dates = append(rep.Dates, ds.Date)
		before := len(rep.Problems)
		ms, err := ds.Manifests(ctx, v.store, "sqlite")
		if err != nil {
			return jobs.Result{}, fmt.Errorf("verify %s: %w", v.name, err)
		}
		for _, db := range v.cfg.Databases {
			m, ok := ms[db]
			if !ok {
				add("missing", v.cfg.Layout.SetPrefix(ds.Date), "%s has no backup with a manifest", db)
				continue
			}
			obj := ds.Objects[m.Key]
			switch {
			case obj.Size == 0:
				add("mismatched", m.Key, "the object is empty")
			case obj.Size != m.Size:
				add("mismatched", m.Key, "the object has %d bytes, its manifest says %d", obj.Size, m.Size)
			case i == 0 && v.cfg.Deep:
				sum, n, err := hashObject(ctx, v.store, m.Key)
				if err != nil {
					add("missing", m.Key, "cannot read: %v", err)
				} else if sum != m.SHA256 || n != m.Size {
					add("mismatched", m.Key, "sha256 %s, manifest says %s", sum, m.SHA256)
				}
			}
		}
		t := jobs.TargetResult{Name: ds.Date, Status: jobs.TargetOK, Note: "complete"}
		if n := len(rep.Problems) - before; n > 0 {
			t.Status, t.Err = jobs.TargetFailed, fmt.Errorf("%d problems", n)
		}
		res.Targets = append(res.Targets, t)
	}
	for _, db := range v.cfg.PostgresDatabases {
		before := len(rep.Problems)
		n, err := v.verifyPostgres(ctx, now, db, add)
		if err != nil {
			return jobs.Result{}, fmt.Errorf("verify %s: %w", v.name, err)
		}
		t := jobs.TargetResult{Name: "postgres " + db, Status: jobs.TargetOK, Note: fmt.Sprintf("%d dumps", n)}
		if k := len(rep.Problems) - before; k > 0 {
			t.Status, t.Err = jobs.TargetFailed, fmt.Errorf("%d problems", k)
		}
		res.Targets = append(res.Targets, t)
	}
	if v.cfg.Containers != nil {
		before := len(rep.Problems)
		n, err := v.verifyContainers(ctx, now, add)
		if err != nil {
			return jobs.Result{}, fmt.Errorf("verify %s: %w", v.name, err)
		}
		t := jobs.TargetResult{Name: "containers", Status: jobs.TargetOK, Note: fmt.Sprintf("%d containers", n)}
		if k := len(rep.Problems) - before; k > 0 {
			t.Status, t.Err = jobs.TargetFailed, fmt.Errorf("%d problems", k)
		}
		res.Targets = append(res.Targets, t)
	}
	stats := &jobs.VerifyStats{}
	var text strings.Builder
	fmt.Fprintf(&text, "Offsite verification of %s: sets %s\n", v.cfg.Prefix, strings.Join(rep.Dates, ", "))
	for _, p := range rep.Problems {
		if p.Kind == "missing" {
			stats.Missing++
		} else {
			stats.Mismatched++
		}
		fmt.Fprintf(&text, "%-10s  %s — %s\n", strings.ToUpper(p.Kind), p.Key, p.Detail)
	}
	fmt.Fprintf(&text, "Result: %d missing, %d mismatched\n", stats.Missing, stats.Mismatched)
	res.Report, res.Verify = text.String(), stats
	res.ReportJSON, _ = json.MarshalIndent(rep, "", "  ")
	res.Summary = fmt.Sprintf("%d sets checked: %d missing, %d mismatched", len(rep.Dates), stats.Missing, stats.Mismatched)
	if len(rep.Problems) > 0 {
		return res, fmt.Errorf("offsite verification found %d missing and %d mismatched objects", stats.Missing, stats.Mismatched)
	}
	return res, nil
}

// verifyPostgres checks a database's dumps: the newest is younger than PostgresMaxAge (counted
// from the end of its key's date, as sets are), and each of the newest Dates dumps has a
// manifest naming it, the database and the object's size (a deep run also re-reads the newest
// and compares its SHA-256). It returns how many dumps it checked.
func (v *OffsiteVerify) verifyPostgres(ctx context.Context, now time.Time, db string, add func(kind, key, format string, args ...any)) (int, error) {
	want := layout.Fields{Target: db}
	where := v.cfg.Layout.Templates(layout.Postgres)[0].Prefix(want)
	list, err := v.cfg.Layout.Artifacts(ctx, v.store, want, layout.Postgres)
	if err != nil {
		return 0, err
	}
	if len(list) == 0 {
		add("missing", where, "%s has no dump with a manifest", db)
		return 0, nil
	}
	// Freshness counts from the newest dump not dated after tomorrow (see the sets).
	var newest *layout.Artifact
	for i := range list {
		if !v.dayEnd(list[i]).After(now.Add(24*time.Hour + futureSlack)) {
			newest = &list[i]
			break
		}
	}
	switch {
	case newest == nil:
		add("missing", where, "no dump of %s dated up to today: the newest, %s, is dated after now (written while the clock was ahead)", db, list[0].Key)
	case now.Sub(v.dayEnd(*newest)) > v.cfg.PostgresMaxAge:
		add("missing", where, "the newest dump of %s (%s) is older than %s", db, newest.Key, v.cfg.PostgresMaxAge)
	}
	n := 0
	for i, a := range list {
		if i >= v.cfg.Dates {
			break
		}
		n++
		m, err := artifact.ReadManifest(ctx, v.store, a.Key)
		switch {
		case err != nil:
			add("mismatched", artifact.ManifestKey(a.Key), "cannot read the manifest: %v", err)
		case m.Key != a.Key || m.Kind != "postgres" || m.Target != db:
			add("mismatched", artifact.ManifestKey(a.Key), "the manifest describes %s (%s %s), not this dump of %s", m.Key, m.Kind, m.Target, db)
		case a.Object.Size == 0:
			add("mismatched", a.Key, "the object is empty")
		case a.Object.Size != m.Size:
			add("mismatched", a.Key, "the object has %d bytes, its manifest says %d", a.Object.Size, m.Size)
		case i == 0 && v.cfg.Deep:
			sum, size, err := hashObject(ctx, v.store, a.Key)
			if err != nil {
				add("missing", a.Key, "cannot read: %v", err)
			} else if sum != m.SHA256 || size != m.Size {
				add("mismatched", a.Key, "sha256 %s, manifest says %s", sum, m.SHA256)
			}
		}
	}
	return n, nil
}

// futureSlack is how far after now a key's date may start and still count as written by a
// right clock (a date template in a time zone ahead of UTC, a clock a little ahead).
const futureSlack = 24 * time.Hour

// dayEnd is when a dump's date ends (its key's date plus a day), or its upload time when the
// key names no date: ages count from there, as for the sets.
func (v *OffsiteVerify) dayEnd(a layout.Artifact) time.Time {
	if t, ok := a.KeyTime(); ok && a.Fields.Time == "" && a.Stamp == "" {
		return t.Add(24 * time.Hour)
	}
	return a.Time()
}

func hashObject(ctx context.Context, store storage.Store, key string) (string, int64, error) {
	rc, _, err := store.Get(ctx, key)
	if err != nil {
		return "", 0, err
	}
	defer rc.Close()
	return sha256Of(rc)
}

// verifyContainers checks every tenant container's newest nightly (and hot) backup by age.
func (v *OffsiteVerify) verifyContainers(ctx context.Context, now time.Time, add func(kind, key, format string, args ...any)) (int, error) {
	list, err := v.cfg.Containers.List(ctx, v.cfg.NamePrefix, nil)
	if err != nil {
		return 0, fmt.Errorf("list containers: %w", err)
	}
	for _, c := range list {
		for _, k := range []layout.Kind{layout.Nightly, layout.Hot} {
			maxAge, what, want := v.cfg.NightlyMaxAge, "nightly", layout.Fields{Node: v.cfg.Node, Target: c.Name}
			if k == layout.Hot {
				if v.cfg.HotMaxAge <= 0 {
					continue
				}
				maxAge, what = v.cfg.HotMaxAge, "hot"
			}
			where := v.cfg.Layout.Templates(k)[0].Prefix(want)
			a, ok, err := v.cfg.Layout.Newest(ctx, v.store, want, k)
			switch {
			case err != nil:
				return 0, err
			case !ok:
				add("missing", where, "%s has no %s backup with a manifest", c.Name, what)
			case now.Sub(a.Object.ModTime) > maxAge:
				add("missing", where, "the newest %s backup of %s (%s) is older than %s", what, c.Name, a.Key, maxAge)
			}
		}
	}
	return len(list), nil
}
