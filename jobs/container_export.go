package jobs

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"time"

	"filippo.io/age"

	"github.com/wopr-network/opsd/internal/artifact"
	"github.com/wopr-network/opsd/internal/docker"
	"github.com/wopr-network/opsd/internal/layout"
	"github.com/wopr-network/opsd/internal/storage"
)

// Engine is what container exports need from Docker.
type Engine interface {
	List(ctx context.Context, prefix string, labels map[string]string) ([]docker.Container, error)
	Inspect(ctx context.Context, id string, size bool) (docker.Details, error)
	DiffDigest(ctx context.Context, id string) (string, int, error)
	Export(ctx context.Context, id string) (io.ReadCloser, error)
	Pause(ctx context.Context, id string) error
	Unpause(ctx context.Context, id string) error
	CaptureSpec(ctx context.Context, id string) (docker.Spec, error)
}

// Fingerprints persist what a container looked like at its last successful hot backup.
type Fingerprints interface {
	Fingerprint(ctx context.Context, container string) (string, error)
	SaveFingerprint(ctx context.Context, container, fingerprint, key string, at time.Time) error
}

// ContainerExportConfig configures a ContainerExport.
type ContainerExportConfig struct {
	// NamePrefix selects containers by name (default "tenant_"); Labels must all match.
	NamePrefix string
	Labels     map[string]string
	// Only restricts the run to these container names (the CLI's arguments).
	Only []string
	// KeyTemplate: {node}, {container}, {date} (UTC YYYYMMDD). Default: layout.DefaultNightly, or
	// layout.DefaultHot with ChangedOnly.
	KeyTemplate string
	Compression string // gzip (default) or zstd
	Recipients  []age.Recipient
	// ChangedOnly exports a container only when its fingerprint changed since its last
	// successful export (the hot backup).
	ChangedOnly bool
	TierLabel   string
	DefaultTier string
	Parallel    int
	// Pause freezes a running container during its export; it is always unpaused after.
	Pause bool
	// PauseMarks is the directory of the pause marks (see RecoverPaused; default: the state
	// database's directory when the Fingerprints are the state database).
	PauseMarks string
	Node       string
	Now        func() time.Time

	// Tiers is where each container's tier comes from (default: the TierLabel label).
	Tiers *TierSource
}

// ContainerExport is the `container_export` kind: docker export → compression → optional
// encryption → multipart upload of unknown length, SHA-256 on the way, then the manifest. No temp
// file; memory does not grow with the container's size.
type ContainerExport struct {
	name   string
	cfg    ContainerExportConfig
	engine Engine
	fps    Fingerprints
	store  storage.Store
	tpl    layout.Template
	err    error    // a bad key template, reported by Run
	tiers  runTiers // this run's tier lookup
}

// NewContainerExport returns the job.
func NewContainerExport(name string, cfg ContainerExportConfig, engine Engine, fps Fingerprints, store storage.Store) *ContainerExport {
	if cfg.NamePrefix == "" {
		cfg.NamePrefix = "tenant_"
	}
	if cfg.Compression == "" {
		cfg.Compression = artifact.Gzip
	}
	if cfg.KeyTemplate == "" {
		cfg.KeyTemplate = layout.DefaultNightly
		if cfg.ChangedOnly {
			cfg.KeyTemplate = layout.DefaultHot
		}
	}
	if cfg.TierLabel == "" {
		cfg.TierLabel = "wopr.tier"
	}
	if cfg.DefaultTier == "" {
		cfg.DefaultTier = "free"
	}
	if cfg.Tiers == nil {
		cfg.Tiers = &TierSource{Kind: "label", Label: cfg.TierLabel, Default: cfg.DefaultTier, TenantFrom: cfg.NamePrefix + "{id}"}
	}
	if cfg.Parallel < 1 {
		cfg.Parallel = 2
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if p, ok := fps.(interface{ Path() string }); ok && cfg.PauseMarks == "" && p.Path() != "" {
		cfg.PauseMarks = filepath.Dir(p.Path())
	}
	tpl, err := layout.Parse(cfg.KeyTemplate)
	return &ContainerExport{name: name, cfg: cfg, engine: engine, fps: fps, store: store, tpl: tpl, err: err}
}

// Name returns the job's name.
func (c *ContainerExport) Name() string { return c.name }

// Kind returns "container_export".
func (c *ContainerExport) Kind() string { return "container_export" }

// WithOnly returns a copy restricted to the named containers.
func (c *ContainerExport) WithOnly(names []string) *ContainerExport {
	cp := *c
	cp.cfg.Only = names
	return &cp
}

// Key returns the object key for a container at a time.
func (c *ContainerExport) Key(container string, at time.Time) string {
	return c.tpl.Key(layout.Fields{Node: c.cfg.Node, Target: container, Date: layout.Date(at)}) + artifact.Suffix(c.cfg.Compression, len(c.cfg.Recipients) > 0)
}

// Run exports every selected container; each one fails or succeeds on its own.
func (c *ContainerExport) Run(ctx context.Context) (Result, error) {
	if c.err != nil {
		return Result{}, fmt.Errorf("container export %s: %w", c.name, c.err)
	}
	unpaused, recErr := c.RecoverPaused(ctx)
	list, err := c.engine.List(ctx, c.cfg.NamePrefix, c.cfg.Labels)
	if err != nil {
		return Result{}, fmt.Errorf("docker unreachable: %w", err)
	}
	var present []string
	for _, ct := range list {
		present = append(present, ct.Name)
	}
	if len(c.cfg.Only) > 0 {
		want := map[string]bool{}
		for _, n := range c.cfg.Only {
			want[n] = true
		}
		var sel []docker.Container
		for _, ct := range list {
			if want[ct.Name] {
				sel = append(sel, ct)
				delete(want, ct.Name)
			}
		}
		if len(want) > 0 {
			var missing []string
			for n := range want {
				missing = append(missing, n)
			}
			return Result{}, fmt.Errorf("no container named %s (with prefix %q)", strings.Join(missing, ", "), c.cfg.NamePrefix)
		}
		list = sel
	}
	now := c.cfg.Now()
	run := *c
	run.tiers = loadRunTiers(ctx, c.cfg.Tiers)
	results := make([]TargetResult, len(list))
	ForEach(ctx, len(list), c.cfg.Parallel, func(i int) { results[i] = run.exportOne(ctx, list[i], now) }, func(i int) {
		results[i] = TargetResult{Name: list[i].Name, Status: TargetFailed, Tracked: true, StatusKind: "container", Err: ctx.Err()}
	})
	res := Result{Targets: results}
	exported, skipped := 0, 0
	for _, t := range results {
		if !t.Current {
			res.Bytes += t.Bytes
		}
		switch t.Status {
		case TargetOK:
			exported++
			res.Artifacts = append(res.Artifacts, t.Key)
		case TargetSkipped:
			skipped++
		}
	}
	if len(c.cfg.Only) == 0 && !c.cfg.ChangedOnly {
		res.Retire = &Retire{Kind: "container", Present: present}
	}
	res.Summary = fmt.Sprintf("%d of %d containers exported, %d unchanged", exported, len(results), skipped)
	if len(unpaused) > 0 {
		res.Summary += fmt.Sprintf("; unpaused %s, left paused by an export opsd did not survive", strings.Join(unpaused, ", "))
	}
	if recErr != nil {
		res.Summary += "; " + recErr.Error()
	}
	return res, res.TargetsError("containers")
}

// RecoverPaused unpauses the containers an export of a process that is gone paused and never
// unpaused (opsd killed mid-export), and returns their names. Every run does it first; the
// daemon also does it at start (Runner.RecoverInterrupted).
func (c *ContainerExport) RecoverPaused(ctx context.Context) ([]string, error) {
	return recoverPaused(ctx, c.cfg.PauseMarks, c.engine)
}

func (c *ContainerExport) exportOne(ctx context.Context, ct docker.Container, now time.Time) (t TargetResult) {
	start := time.Now()
	t = TargetResult{Name: ct.Name, Tracked: true, StatusKind: "container", Key: c.Key(ct.Name, now)}
	var tm Timer
	defer func() { t.Phases, t.Duration = tm.Phases(), time.Since(start) }()
	fail := func(err error) TargetResult {
		t.Status, t.Err = TargetFailed, err
		return t
	}
	tm.Start("inspect")
	d, err := c.engine.Inspect(ctx, ct.ID, c.cfg.ChangedOnly)
	if err != nil {
		if docker.IsNotFound(err) {
			return fail(fmt.Errorf("container %s vanished before its export", ct.Name))
		}
		return fail(err)
	}
	var fp string
	if c.cfg.ChangedOnly {
		digest, n, err := c.engine.DiffDigest(ctx, ct.ID)
		if err != nil {
			return fail(err)
		}
		// SizeRw alone misses same-size changes; the change list (paths and kinds) and the start
		// time catch new, removed and re-created files and restarts.
		fp = fmt.Sprintf("id=%s size_rw=%d started=%s changes=%d/%s", d.ID[:min(12, len(d.ID))], d.SizeRw, d.StartedAt, n, digest)
		old, err := c.fps.Fingerprint(ctx, ct.Name)
		if err != nil {
			return fail(err)
		}
		if old == fp {
			// Unchanged: its hot backup is current, if the store still holds it whole.
			size, err := c.current(ctx, t.Key, d.ID)
			if err == nil {
				t.Status, t.SkipReason, t.Note, t.Bytes, t.Current = TargetSkipped, "unchanged", "unchanged since its last hot backup", size, true
				return t
			}
			if ctx.Err() != nil {
				return fail(ctx.Err())
			}
			t.Note = fmt.Sprintf("unchanged, but its hot backup is not usable (%v): exported again", err)
		}
	}
	if c.cfg.Pause && d.Running && !d.Paused {
		tm.Start("pause")
		// The mark lets the next start unpause the container if opsd dies before it does.
		if err := markPaused(c.cfg.PauseMarks, ct.ID, ct.Name); err != nil {
			return fail(fmt.Errorf("%w (not paused, nothing exported)", err))
		}
		if err := c.engine.Pause(ctx, ct.ID); err != nil {
			unmarkPaused(c.cfg.PauseMarks, ct.ID)
			return fail(err)
		}
		defer func() {
			// Always unpause, also when the run is cancelled or the upload failed.
			uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			defer cancel()
			if err := c.engine.Unpause(uctx, ct.ID); err != nil {
				if t.Err == nil {
					t.Status, t.Err = TargetFailed, fmt.Errorf("export done but %w", err)
				}
				return // the mark stays: the next run or start tries again
			}
			unmarkPaused(c.cfg.PauseMarks, ct.ID)
		}()
	}
	tm.Start("export")
	rc, err := c.engine.Export(ctx, ct.ID)
	if err != nil {
		if docker.IsNotFound(err) {
			return fail(fmt.Errorf("container %s vanished before its export", ct.Name))
		}
		return fail(err)
	}
	defer rc.Close()
	spec, err := c.sealedSpec(ctx, ct)
	if err != nil {
		return fail(err)
	}
	tier, tierErr := c.tiers.resolve(ct.Name, d.Labels)
	tv := artifact.NewTarVerifier(rc)
	defer tv.Close() // an upload that fails half way abandons the stream
	m, err := artifact.Store(ctx, c.store, tv, artifact.Options{Compression: c.cfg.Compression, Recipients: c.cfg.Recipients}, artifact.Manifest{
		Key: t.Key, Kind: "container", Target: ct.Name, Source: d.ID, Node: c.cfg.Node, CreatedAt: now.UTC(), Tier: tier.Tier, Tenant: tier.Tenant, TierSource: tier.Source,
		Container: &artifact.ContainerInfo{ID: d.ID, Name: ct.Name, Image: d.Image}, Labels: d.Labels,
		Note: "docker export holds the container's filesystem only: volumes and bind mounts are not part of it",
		Spec: spec,
	})
	if err != nil {
		if _, ierr := c.engine.Inspect(context.WithoutCancel(ctx), ct.ID, false); docker.IsNotFound(ierr) {
			return fail(fmt.Errorf("container %s vanished during its export (nothing stored): %w", ct.Name, err))
		}
		return fail(err)
	}
	if c.cfg.ChangedOnly {
		if err := c.fps.SaveFingerprint(ctx, ct.Name, fp, t.Key, now); err != nil {
			return fail(fmt.Errorf("exported but %w", err))
		}
	}
	t.Status, t.Bytes = TargetOK, m.Size
	if tierErr != nil {
		t.Status, t.Err = TargetFailed, tierError(t.Key, tierErr)
	}
	if d := time.Since(start).Seconds(); d > 0 {
		t.Note = strings.TrimPrefix(t.Note+"; "+fmt.Sprintf("%.1f MB/s raw", float64(m.RawSize)/1e6/d), "; ")
	}
	return t
}

// current checks that key holds a whole backup of the container id (its manifest, and an
// object of the manifest's size) and returns its size.
func (c *ContainerExport) current(ctx context.Context, key, id string) (int64, error) {
	m, err := artifact.ReadManifest(ctx, c.store, key)
	if err != nil {
		return 0, err
	}
	if m.Source != id {
		return 0, fmt.Errorf("%s is a backup of another container (%s)", key, m.Source)
	}
	st, err := c.store.Stat(ctx, key)
	if err != nil {
		return 0, err
	}
	if st.Size != m.Size {
		return 0, fmt.Errorf("%s holds %d bytes, its manifest says %d", key, st.Size, m.Size)
	}
	return m.Size, nil
}

// sealedSpec captures the container's create spec (command, env, mounts, networks, restart
// policy, ...) so that it can be recreated on another node, sealed like the archive: env values
// are tenant secrets, so an encrypted export also encrypts its spec.
func (c *ContainerExport) sealedSpec(ctx context.Context, ct docker.Container) (*artifact.Sealed, error) {
	spec, err := c.engine.CaptureSpec(ctx, ct.ID)
	if err != nil {
		return nil, err
	}
	// The key and the manifest name the container as listed; a spec naming another (renamed as
	// its export began) would be refused by every restore of this backup.
	if got := strings.TrimPrefix(spec.Name, "/"); got != ct.Name {
		return nil, fmt.Errorf("container %s was renamed to %s as its export began: nothing stored (the next run backs it up under its new name)", ct.Name, got)
	}
	b, err := json.Marshal(spec)
	if err != nil {
		return nil, fmt.Errorf("capture spec of %s: %w", ct.Name, err)
	}
	return artifact.Seal(b, c.cfg.Recipients)
}
