package checks

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"filippo.io/age"
	"github.com/moby/moby/api/types/container"

	"github.com/wopr-network/opsd/internal/artifact"
	"github.com/wopr-network/opsd/internal/layout"
	"github.com/wopr-network/opsd/internal/prefixlock"
	"github.com/wopr-network/opsd/internal/scratch"
	"github.com/wopr-network/opsd/internal/storage"
	"github.com/wopr-network/opsd/jobs"
)

// DrillEngine is what the container drill needs from Docker.
type DrillEngine interface {
	Import(ctx context.Context, r io.Reader, ref string) (string, error)
	RemoveImage(ctx context.Context, id string) error
	Create(ctx context.Context, name string, cfg *container.Config, host *container.HostConfig) (string, error)
	Start(ctx context.Context, id string) error
	Wait(ctx context.Context, id string) (int64, error)
	Remove(ctx context.Context, id string) error
}

// ContainerDrillConfig configures a ContainerDrill.
type ContainerDrillConfig struct {
	// Layout finds the archives (nil: the default layout); Prefix is what the drill locks
	// against prune (default: the folder of the layout's nightly keys).
	Layout *layout.Layout
	Prefix string
	// Tenant drills one container; Sample drills N random ones; neither: all.
	Tenant string
	Sample int
	// ProbeCmd runs in the restored container; it must exit 0 within ProbeTimeout, or, with
	// ProbeStaysUp, still be running then.
	ProbeCmd     []string
	ProbeTimeout time.Duration
	ProbeStaysUp bool
	Identities   []age.Identity
	RTOTarget    time.Duration
	// FailOnRTOBreach fails the drill when the objective is missed; otherwise it warns.
	FailOnRTOBreach bool
	TempDir         string
	Locks           *prefixlock.Locks
}

// ContainerDrill is the `container_drill` kind: the newest nightly archive of tenant containers
// is downloaded, verified, read whole as gzip + tar, imported as a throwaway image, and a
// container is created and started from it; container and image are removed on every path.
type ContainerDrill struct {
	name   string
	cfg    ContainerDrillConfig
	store  storage.Store
	engine DrillEngine
}

// NewContainerDrill returns the drill.
func NewContainerDrill(name string, cfg ContainerDrillConfig, engine DrillEngine, store storage.Store) *ContainerDrill {
	if cfg.Layout == nil {
		cfg.Layout = layout.Default()
	}
	if cfg.Prefix == "" {
		cfg.Prefix = cfg.Layout.Root(layout.Nightly)
	}
	if len(cfg.ProbeCmd) == 0 {
		cfg.ProbeCmd = []string{"/bin/sh", "-c", "true"}
	}
	if cfg.ProbeTimeout == 0 {
		cfg.ProbeTimeout = time.Minute
	}
	if cfg.RTOTarget == 0 {
		cfg.RTOTarget = 10 * time.Minute
	}
	if cfg.Locks == nil {
		cfg.Locks = prefixlock.New()
	}
	return &ContainerDrill{name: name, cfg: cfg, store: store, engine: engine}
}

// Name returns the job's name.
func (d *ContainerDrill) Name() string { return d.name }

// Kind returns "container_drill".
func (d *ContainerDrill) Kind() string { return "container_drill" }

// IsDrill marks a restore drill (jobs.Drill).
func (d *ContainerDrill) IsDrill() {}

// WithTenant returns a copy that drills one tenant container.
func (d *ContainerDrill) WithTenant(t string) *ContainerDrill {
	c := *d
	c.cfg.Tenant = t
	return &c
}

// newestArchives returns, per container, its newest nightly archive with a manifest.
func (d *ContainerDrill) newestArchives(ctx context.Context) (map[string]artifact.Manifest, error) {
	newest, err := d.cfg.Layout.NewestPerTarget(ctx, d.store, layout.Fields{Target: d.cfg.Tenant}, layout.Nightly)
	if err != nil {
		return nil, err
	}
	out := map[string]artifact.Manifest{}
	for c, a := range newest {
		m, err := artifact.ReadManifest(ctx, d.store, a.Key)
		if err != nil {
			return nil, err
		}
		if m.Kind == "container" {
			out[c] = m
		}
	}
	return out, nil
}

// Run performs the drill.
func (d *ContainerDrill) Run(ctx context.Context) (jobs.Result, error) {
	started := time.Now()
	release, err := d.cfg.Locks.Acquire(ctx, d.cfg.Prefix, false, "drill "+d.name)
	if err != nil {
		return jobs.Result{}, err
	}
	defer release()
	archives, err := d.newestArchives(ctx)
	if err != nil {
		return jobs.Result{}, fmt.Errorf("drill %s: %w", d.name, err)
	}
	if len(archives) == 0 {
		what := "any tenant container"
		if d.cfg.Tenant != "" {
			what = d.cfg.Tenant
		}
		return jobs.Result{}, fmt.Errorf("drill %s: no nightly archive with a manifest for %s under %s", d.name, what, d.cfg.Prefix)
	}
	names := slices.Sorted(maps.Keys(archives))
	if d.cfg.Sample > 0 && d.cfg.Sample < len(names) {
		rand.Shuffle(len(names), func(i, j int) { names[i], names[j] = names[j], names[i] })
		names = names[:d.cfg.Sample]
		sort.Strings(names)
	}
	scratch, err := os.MkdirTemp(d.cfg.TempDir, scratch.Pattern("container-drill"))
	if err != nil {
		return jobs.Result{}, err
	}
	defer os.RemoveAll(scratch)

	targets := make([]jobs.TargetResult, len(names))
	jobs.ForEach(ctx, len(names), 2, func(i int) { targets[i] = d.drillOne(ctx, names[i], archives[names[i]], scratch) }, func(i int) {
		targets[i] = jobs.TargetResult{Name: names[i], Status: jobs.TargetFailed, Err: ctx.Err()}
	})
	rto := time.Since(started)
	var text strings.Builder
	fmt.Fprintf(&text, "Container restore drill (%s)\n", d.cfg.Prefix)
	passed, failed := 0, 0
	breach := false
	for _, t := range targets {
		if t.Status == jobs.TargetOK {
			passed++
			fmt.Fprintf(&text, "PASS  %s — %s restored, imported and started in %s\n", t.Name, jobs.HumanBytes(t.Bytes), seconds(t.Duration))
		} else {
			failed++
			fmt.Fprintf(&text, "FAIL  %s — %v\n", t.Name, t.Err)
		}
		if t.Duration > d.cfg.RTOTarget {
			breach = true
			fmt.Fprintf(&text, "WARN  %s — restore took %s, objective %s\n", t.Name, seconds(t.Duration), seconds(d.cfg.RTOTarget))
		}
	}
	fmt.Fprintf(&text, "Result: %d passed, %d failed, 0 skipped\n", passed, failed)
	fmt.Fprintf(&text, "RTO (drill time): %s\n", seconds(rto))
	ok := failed == 0 && !(breach && d.cfg.FailOnRTOBreach)
	type row struct {
		Name    string             `json:"name"`
		Key     string             `json:"key"`
		Status  string             `json:"status"`
		Error   string             `json:"error,omitempty"`
		Seconds float64            `json:"seconds"`
		Phases  map[string]float64 `json:"phases"`
	}
	var rows []row
	for _, t := range targets {
		r := row{Name: t.Name, Key: t.Key, Status: t.Status, Seconds: t.Duration.Seconds(), Phases: map[string]float64{}}
		if t.Err != nil {
			r.Error = t.Err.Error()
		}
		for _, p := range t.Phases {
			r.Phases[p.Name] = p.Duration.Seconds()
		}
		rows = append(rows, r)
	}
	body, _ := json.MarshalIndent(map[string]any{"drill": d.name, "startedAt": started.UTC(), "rtoSeconds": rto.Seconds(),
		"rtoTargetSeconds": d.cfg.RTOTarget.Seconds(), "passed": ok, "containers": rows}, "", "  ")
	res := jobs.Result{Targets: targets, Report: text.String(), ReportJSON: body,
		Drill:   &jobs.DrillStats{RTO: rto, RTOTarget: d.cfg.RTOTarget, Passed: ok},
		Summary: fmt.Sprintf("%d passed, %d failed, RTO %s", passed, failed, seconds(rto))}
	switch {
	case failed > 0:
		return res, res.TargetsError("containers")
	case breach && d.cfg.FailOnRTOBreach:
		return res, fmt.Errorf("drill %s: recovery time objective missed", d.name)
	}
	return res, nil
}

func (d *ContainerDrill) drillOne(ctx context.Context, name string, m artifact.Manifest, scratch string) (t jobs.TargetResult) {
	start := time.Now()
	t = jobs.TargetResult{Name: name, Key: m.Key, Bytes: m.Size, StatusKind: "drill"}
	var tm jobs.Timer
	defer func() {
		t.Phases, t.Duration = tm.Phases(), time.Since(start)
		if t.Err != nil {
			t.Status = jobs.TargetFailed
		} else {
			t.Status = jobs.TargetOK
		}
	}()
	// Every step below uses a cleanup context that outlives cancellation.
	cleanup := context.WithoutCancel(ctx)

	tm.Start("download")
	file := filepath.Join(scratch, name+".archive")
	if err := artifact.CheckRoom(scratch, m.Size); err != nil { // refused before it fills the disk
		t.Err = fmt.Errorf("download %s: %w", m.Key, err)
		return t
	}
	sum, n, err := artifact.Download(ctx, d.store, m.Key, file)
	if err != nil {
		t.Err = err
		return t
	}
	tm.Start("verify")
	if n != m.Size || sum != m.SHA256 {
		t.Err = fmt.Errorf("sha256 mismatch: object has %s (%d bytes), manifest says %s (%d bytes)", sum, n, m.SHA256, m.Size)
		return t
	}
	tm.Start("import")
	f, err := os.Open(file)
	if err != nil {
		t.Err = err
		return t
	}
	rc, err := artifact.Decode(f, m, d.cfg.Identities, f)
	if err != nil {
		t.Err = err
		return t
	}
	ref := fmt.Sprintf("opsd-drill/%s:%d", strings.ToLower(name), time.Now().UnixNano())
	verified := artifact.NewTarVerifier(rc)
	defer verified.Close()
	image, err := d.engine.Import(ctx, verified, ref)
	rc.Close()
	if image != "" {
		defer d.engine.RemoveImage(cleanup, image)
	}
	if err != nil {
		t.Err = fmt.Errorf("archive is not a complete tar.gz or did not import: %w", err)
		return t
	}
	tm.Start("start")
	id, err := d.engine.Create(ctx, "opsd-drill-"+strings.ToLower(name)+fmt.Sprintf("-%d", time.Now().UnixNano()),
		&container.Config{Image: image, Cmd: d.cfg.ProbeCmd, Labels: map[string]string{"opsd.drill": d.name}}, &container.HostConfig{NetworkMode: "none"})
	if err != nil {
		t.Err = err
		return t
	}
	defer d.engine.Remove(cleanup, id)
	if err := d.engine.Start(ctx, id); err != nil {
		t.Err = fmt.Errorf("the restored container did not start: %w", err)
		return t
	}
	wctx, cancel := context.WithTimeout(ctx, d.cfg.ProbeTimeout)
	defer cancel()
	code, err := d.engine.Wait(wctx, id)
	switch {
	case d.cfg.ProbeStaysUp && wctx.Err() != nil && ctx.Err() == nil:
		// Still running at the end of the probe window: it stays up.
	case err != nil:
		t.Err = fmt.Errorf("probe did not finish within %s: %w", d.cfg.ProbeTimeout, err)
	case d.cfg.ProbeStaysUp:
		t.Err = fmt.Errorf("the restored container exited with code %d within %s; it should stay up", code, d.cfg.ProbeTimeout)
	case code != 0:
		t.Err = fmt.Errorf("probe %q exited with code %d", strings.Join(d.cfg.ProbeCmd, " "), code)
	}
	return t
}
