package restore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"filippo.io/age"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"

	"github.com/wopr-network/opsd/internal/artifact"
	"github.com/wopr-network/opsd/internal/docker"
	"github.com/wopr-network/opsd/internal/layout"
	"github.com/wopr-network/opsd/internal/storage"
)

// RecreateEngine is what recreating a container from its backup needs from Docker.
type RecreateEngine interface {
	ContainerCreator
	EnsureNetwork(ctx context.Context, name string, ns docker.NetworkSpec) (bool, error)
	EnsureVolume(ctx context.Context, vs docker.VolumeSpec) (bool, error)
}

// HostAccess says which host access a captured spec may ask for when a container is recreated
// from it (docker.Spec.HostAccess lists what counts). The spec comes from the bucket, and its
// manifest's checksum sits beside it, so whoever can write to the bucket could otherwise have
// this host run a privileged container or bind its root: by default such a spec is refused,
// naming each item.
type HostAccess struct {
	// BindRoots are the host directories bind mounts may come from (typically the WOPR_HOME
	// base directory).
	BindRoots []string
	// Allow accepts every item (an operator who checked the spec); each is still reported.
	Allow bool
}

// check returns the report's notes for a spec's host access, or an error refusing it.
func (h HostAccess) check(key string, spec docker.Spec) ([]string, error) {
	access := spec.HostAccess(h.BindRoots)
	if len(access) == 0 {
		return nil, nil
	}
	if !h.Allow {
		return nil, fmt.Errorf("%s: the captured spec of %s asks for host access: %s; refused, nothing created (the spec comes from the bucket: check it, then allow bind sources with --allow-bind DIR, allowBinds in the admin API, or everything with --allow-host-access, allowHostAccess)",
			key, spec.Name, strings.Join(access, ", "))
	}
	notes := make([]string, len(access))
	for i, a := range access {
		notes[i] = "host access allowed by the operator: " + a
	}
	return notes, nil
}

// RecreateOptions configure recreating one container that does not exist on this engine (a lost
// node's tenant) from its backup and its captured create spec.
type RecreateOptions struct {
	Store  storage.Store
	Engine RecreateEngine
	Key    string
	// Name is the container the key is a backup of (the node restore's candidate, the container
	// restore's argument): a spec naming another container is refused. "" skips the check.
	Name       string
	Identities []age.Identity
	TempDir    string
	// HostAccess says which host access a captured spec may ask for (none by default).
	HostAccess HostAccess
	// Probe: a container that ran before must still run this long after its start (default 5s).
	Probe time.Duration
	// OnBytes reports download progress.
	OnBytes artifact.Progress
	// AfterImport runs once the image is imported (tests inject failures and kills here).
	AfterImport func(name string) error
	// Sandbox, when set, is a drill: the container is created under this name with no network,
	// no mounts, no published ports and no restart policy, probed, and then removed with its
	// image; nothing of the tenant's is touched.
	Sandbox string
	// wait is the probe's wait (tests hold it; default: sleep).
	wait func(ctx context.Context, name string, d time.Duration) error
}

// Phase names of a recreate, in order.
var RecreatePhases = []string{"download", "verify", "import", "create", "start", "probe"}

// RecreateResult describes one recreated container.
type RecreateResult struct {
	Name     string             `json:"name"`
	Key      string             `json:"key"`
	Outcome  string             `json:"outcome"` // restored, skipped, failed, planned
	Error    string             `json:"error,omitempty"`
	ID       string             `json:"id,omitempty"`
	Image    string             `json:"image,omitempty"`
	Running  bool               `json:"running"`
	Bytes    int64              `json:"bytes"`
	Phases   map[string]float64 `json:"phases"` // seconds
	Warnings []string           `json:"warnings,omitempty"`
	Seconds  float64            `json:"seconds"`
}

// ImageRef is the image a container restored from m is created from. It names the artifact's
// checksum, so a re-run recognises a container already restored from the same artifact.
func ImageRef(name string, m artifact.Manifest) string {
	return fmt.Sprintf("opsd-restore/%s:%s", strings.ToLower(name), m.SHA256[:min(16, len(m.SHA256))])
}

// ReadSpec opens the container spec sealed in an export's manifest.
func ReadSpec(m artifact.Manifest, ids []age.Identity) (docker.Spec, error) {
	if m.Spec == nil {
		return docker.Spec{}, fmt.Errorf("%s has no captured container spec (exported by an opsd before specs were captured): restore it over an existing container instead", m.Key)
	}
	b, err := m.Spec.Open(ids)
	if err != nil {
		return docker.Spec{}, fmt.Errorf("spec of %s: %w", m.Key, err)
	}
	var s docker.Spec
	if err := json.Unmarshal(b, &s); err != nil {
		return docker.Spec{}, fmt.Errorf("spec of %s: %w", m.Key, err)
	}
	if s.Version != docker.SpecVersion {
		return docker.Spec{}, fmt.Errorf("spec of %s: version %d, this opsd reads %d", m.Key, s.Version, docker.SpecVersion)
	}
	return s, nil
}

// Recreate creates a container from a verified backup and its captured spec: download and
// SHA-256 check before a byte is trusted, import as an image, create missing networks and named
// volumes (volumes are not in exports: they are created empty and the result says so), create
// the container with the captured configuration, start it when it ran before and check it keeps
// running. A container of that name that exists already is never touched: when it was created
// from the same artifact and is in the captured state the result is "skipped" (re-runs are
// idempotent); otherwise it is an error. A failure removes what this call created.
func Recreate(ctx context.Context, o RecreateOptions) RecreateResult {
	r, ok := prepareRecreate(ctx, o)
	if !ok {
		return r.res
	}
	if !r.create(ctx) {
		return r.res
	}
	return r.settle(ctx)
}

// recreation is one recreate in its three stages, which a node restore schedules apart:
// prepareRecreate (manifest, spec, skip check, download, verify and import: the CPU- and
// I/O-bound part), create (networks, volumes, create and start: short calls to the engine) and
// settle (the probe: only waiting). Time between stages (waiting for a slot) is in no phase and
// not in the result's Seconds.
type recreation struct {
	o     RecreateOptions
	res   RecreateResult
	spec  docker.Spec
	ref   string
	image string // the imported image, once imported
	newID string // the created container, once created
	phase string
	since time.Time // start of the current phase
	began time.Time // start of the current stage
}

func (r *recreation) enter(p string) {
	now := time.Now()
	if r.phase != "" {
		r.res.Phases[r.phase] += now.Sub(r.since).Seconds()
	}
	r.phase, r.since = p, now
}

// resume starts a stage's clock; pause stops it and closes the current phase.
func (r *recreation) resume() { r.began = time.Now() }

func (r *recreation) pause() {
	r.enter("")
	r.res.Seconds += time.Since(r.began).Seconds()
}

func (r *recreation) fail(err error) {
	r.res.Outcome, r.res.Error = "failed", err.Error()
}

// failed ends a recreate that created nothing yet.
func (r *recreation) failed(err error) (*recreation, bool) {
	r.fail(err)
	return r, false
}

// undo removes what the recreate created (its container, its image), even once ctx ended, and
// fails it with cause.
func (r *recreation) undo(ctx context.Context, cause error) {
	cleanup := context.WithoutCancel(ctx)
	if r.newID != "" {
		r.o.Engine.Remove(cleanup, r.newID)
	}
	if r.image != "" {
		r.o.Engine.RemoveImage(cleanup, r.image)
	}
	r.fail(cause)
}

// prepareRecreate reads the artifact's manifest and spec, skips a container already restored
// from it, and downloads, verifies and imports the image. ok is false when the recreate is over
// (skipped or failed: r.res says which).
func prepareRecreate(ctx context.Context, o RecreateOptions) (r *recreation, ok bool) {
	r = &recreation{o: o, res: RecreateResult{Key: o.Key, Phases: map[string]float64{}}}
	r.resume()
	defer r.pause()
	if r.o.Probe == 0 {
		r.o.Probe = 5 * time.Second
	}
	e := o.Engine
	m, err := artifact.ReadManifest(ctx, o.Store, o.Key)
	if err != nil {
		return r.failed(err)
	}
	if m.Kind != "container" {
		return r.failed(fmt.Errorf("%s is a %s backup, not a container export", o.Key, m.Kind))
	}
	spec, err := ReadSpec(m, o.Identities)
	if err != nil {
		return r.failed(err)
	}
	if o.Name != "" && spec.Name != o.Name {
		r.res.Name = o.Name
		return r.failed(fmt.Errorf("%s is a backup of %s, but its captured spec names the container %q: refused (nothing created)", o.Key, o.Name, spec.Name))
	}
	r.res.Name, r.res.Bytes = spec.Name, m.Size
	ref := ImageRef(spec.Name, m)
	redo := "" // a container this artifact's restore created and never started
	if o.Sandbox != "" {
		ref = fmt.Sprintf("opsd-drill/%s:%d", strings.ToLower(spec.Name), time.Now().UnixNano())
		if access := spec.HostAccess(nil); len(access) > 0 {
			r.res.Warnings = append(r.res.Warnings, "the sandbox leaves out the host access the captured spec asks for: "+strings.Join(access, ", "))
		}
		spec = sandboxed(spec, o.Sandbox)
	} else if d, err := e.Inspect(ctx, spec.Name, false); err == nil {
		if d.Image == ref && d.Running == spec.Running {
			r.res.Outcome, r.res.ID, r.res.Image, r.res.Running = "skipped", d.ID, ref, d.Running
			r.res.Warnings = append(r.res.Warnings, "already restored from this artifact")
			return r, false
		}
		if d.Image != ref {
			return r.failed(fmt.Errorf("a container named %s exists already (from %s): it is never replaced here; use restore container --replace", spec.Name, d.Image))
		}
		// Restored from this artifact, and it has run since (its tenant started or used it):
		// never removed, what it wrote since would be lost.
		if d.Running {
			r.res.Outcome, r.res.ID, r.res.Image, r.res.Running = "skipped", d.ID, ref, true
			r.res.Warnings = append(r.res.Warnings, "already restored from this artifact; running now (it was stopped when exported)")
			return r, false
		}
		if d.StartedAt != "" && !strings.HasPrefix(d.StartedAt, "0001-01-01") {
			return r.failed(fmt.Errorf("%s was restored from this artifact and has run since (started %s, stopped now): it is never removed here; start it, or remove it to restore it again", spec.Name, d.StartedAt))
		}
		// Created from this artifact by a restore cut short before its start: finish it from
		// scratch (removed below, once the spec is allowed).
		redo = d.ID
	} else if !docker.IsNotFound(err) {
		return r.failed(err)
	}
	if o.Sandbox == "" {
		warn, err := o.HostAccess.check(o.Key, spec)
		if err != nil {
			return r.failed(err)
		}
		r.res.Warnings = append(r.res.Warnings, warn...)
	}
	if redo != "" {
		if err := e.Remove(ctx, redo); err != nil {
			return r.failed(err)
		}
	}
	r.spec, r.ref = spec, ref

	r.enter("download")
	image, err := ImportVerified(ctx, o.Store, e, m, o.Identities, ref, o.OnBytes, r.enter)
	if err != nil {
		return r.failed(err)
	}
	r.image = image
	if o.AfterImport != nil {
		if err := o.AfterImport(spec.Name); err != nil {
			r.undo(ctx, err)
			return r, false
		}
	}
	return r, true
}

// create creates the container of a prepared recreate (and its missing networks and volumes)
// and starts it when it ran before. It returns false when it failed (r.res says why; what it
// created is removed).
func (r *recreation) create(ctx context.Context) bool {
	r.resume()
	defer r.pause()
	e, spec := r.o.Engine, r.spec
	r.enter("create")
	names := make([]string, 0, len(spec.Networks))
	for n := range spec.Networks {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		created, err := e.EnsureNetwork(ctx, n, spec.Networks[n])
		if err != nil {
			r.undo(ctx, err)
			return false
		}
		if created {
			r.res.Warnings = append(r.res.Warnings, "created network "+n)
		}
	}
	for _, v := range spec.Volumes {
		created, err := e.EnsureVolume(ctx, v)
		if err != nil {
			r.undo(ctx, err)
			return false
		}
		if created {
			r.res.Warnings = append(r.res.Warnings, fmt.Sprintf("created volume %s EMPTY (mounted at %s): exports do not contain volumes; restore its data separately", v.Name, v.Destination))
		}
	}
	for _, src := range spec.BindSources() {
		if _, err := os.Stat(src); err != nil {
			r.res.Warnings = append(r.res.Warnings, fmt.Sprintf("bind mount source %s does not exist on this host", src))
		}
	}
	cfg, host, nets, others := spec.CreateOptions(r.ref)
	id, err := e.CreateNetworked(ctx, spec.Name, cfg, host, nets)
	if err != nil {
		r.undo(ctx, err)
		return false
	}
	r.newID = id
	for _, n := range others {
		if err := e.NetworkConnect(ctx, n, id, &network.EndpointSettings{Aliases: spec.Networks[n].Aliases}); err != nil {
			r.undo(ctx, err)
			return false
		}
	}
	r.res.ID, r.res.Image = id, r.ref
	if spec.Running {
		r.enter("start")
		if err := e.Start(ctx, id); err != nil {
			r.undo(ctx, err)
			return false
		}
	}
	return true
}

// settle probes a started container (it must still run o.Probe later) and gives the result; a
// drill's sandbox is removed here.
func (r *recreation) settle(ctx context.Context) RecreateResult {
	r.resume()
	if err := r.probe(ctx); err != nil {
		r.undo(ctx, err)
	} else {
		r.res.Outcome = "restored"
		if r.o.Sandbox != "" {
			cleanup := context.WithoutCancel(ctx)
			r.o.Engine.Remove(cleanup, r.newID)
			r.o.Engine.RemoveImage(cleanup, r.image)
		}
	}
	r.pause()
	return r.res
}

func (r *recreation) probe(ctx context.Context) error {
	if !r.spec.Running {
		return nil
	}
	r.enter("probe")
	wait := r.o.wait
	if wait == nil {
		wait = sleep
	}
	if err := wait(ctx, r.spec.Name, r.o.Probe); err != nil {
		return err
	}
	d, err := r.o.Engine.Inspect(ctx, r.newID, false)
	if err != nil {
		return err
	}
	if !d.Running {
		return fmt.Errorf("the restored %s did not keep running for %s", r.spec.Name, r.o.Probe)
	}
	r.res.Running = true
	return nil
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, _ string, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// sandboxed turns a spec into a drill's: renamed, no network, no mounts or binds, no published
// ports, no restart policy, labelled as a drill.
func sandboxed(s docker.Spec, name string) docker.Spec {
	s.Name = name
	cfg := container.Config{}
	if s.Config != nil {
		cfg = *s.Config
	}
	cfg.ExposedPorts, cfg.Hostname, cfg.Domainname = nil, "", ""
	labels := map[string]string{"opsd.drill": "node"}
	for k, v := range cfg.Labels {
		labels[k] = v
	}
	cfg.Labels = labels
	s.Config = &cfg
	host := container.HostConfig{NetworkMode: "none"}
	if s.HostConfig != nil {
		// Limits and dropped capabilities stay; nothing that reaches into the host does.
		host.Resources = s.HostConfig.Resources
		host.Devices, host.DeviceCgroupRules, host.DeviceRequests = nil, nil, nil
		host.CapDrop = s.HostConfig.CapDrop
		for _, o := range s.HostConfig.SecurityOpt {
			if !strings.Contains(o, "unconfined") && o != "label=disable" && o != "label:disable" && !strings.HasPrefix(o, "systempaths=") {
				host.SecurityOpt = append(host.SecurityOpt, o)
			}
		}
	}
	s.HostConfig = &host
	s.Networks, s.Volumes = nil, nil
	return s
}

// NodeOptions configure restoring every tenant container a node backed up (runbook Procedure 3).
type NodeOptions struct {
	Store      storage.Store
	Layout     *layout.Layout
	Engine     RecreateEngine
	FromNode   string
	Identities []age.Identity
	TempDir    string
	// Parallel containers downloaded, verified and imported at once (default 4): the CPU- and
	// I/O-bound stage.
	Parallel int
	// StartParallel containers created and started at once (default: Parallel). A container
	// leaves its import slot once imported, and its start slot once started: its probe holds
	// no slot, so the next import and start do not wait for it.
	StartParallel int
	// HostAccess says which host access the captured specs may ask for (none by default).
	HostAccess HostAccess
	// Only and Exclude select containers by name.
	Only, Exclude []string
	DryRun        bool
	Probe         time.Duration
	// Progress receives a line per container event.
	Progress    func(RecreateResult)
	AfterImport func(name string) error
	// wait is each probe's wait (tests hold it; default: sleep).
	wait func(ctx context.Context, name string, d time.Duration) error
}

// NodeReport is the result of a node restore.
type NodeReport struct {
	FromNode   string           `json:"fromNode"`
	DryRun     bool             `json:"dryRun"`
	Containers []RecreateResult `json:"containers"`
	Restored   int              `json:"restored"`
	Skipped    int              `json:"skipped"`
	Failed     int              `json:"failed"`
	Bytes      int64            `json:"bytes"`
	// RTOSeconds is the whole node's restore time.
	RTOSeconds float64 `json:"rtoSeconds"`
}

// RestoreNode recreates, in parallel, every tenant container last backed up by a node from its
// newest verified archive. Each container succeeds or fails on its own; re-running skips those
// already restored from the same artifact and retries the rest.
func RestoreNode(ctx context.Context, o NodeOptions) (NodeReport, error) {
	start := time.Now()
	rep := NodeReport{FromNode: o.FromNode, DryRun: o.DryRun}
	if o.Parallel < 1 {
		o.Parallel = 4
	}
	cands, err := NodeCandidates(ctx, o.Store, o.Layout, o.FromNode)
	if err != nil {
		return rep, err
	}
	if err := unknownNames(cands, o.Only, o.Exclude); err != nil {
		return rep, fmt.Errorf("restore node %s: %w: nothing restored", o.FromNode, err)
	}
	only, exclude := set(o.Only), set(o.Exclude)
	var names []string
	for n := range cands {
		if (len(only) == 0 || only[n]) && !exclude[n] {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	if len(names) == 0 {
		return rep, fmt.Errorf("restore node %s: no container backups of that node found", o.FromNode)
	}
	rep.Containers = make([]RecreateResult, len(names))
	if o.StartParallel < 1 {
		o.StartParallel = o.Parallel
	}
	var mu sync.Mutex
	imports, starts := make(chan struct{}, o.Parallel), make(chan struct{}, o.StartParallel)
	acquire := func(slots chan struct{}) error {
		select {
		case slots <- struct{}{}:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	var wg sync.WaitGroup
	for i, n := range names {
		if o.DryRun {
			rep.Containers[i] = RecreateResult{Name: n, Key: cands[n], Outcome: "planned", Phases: map[string]float64{}}
			if m, err := artifact.ReadManifest(ctx, o.Store, cands[n]); err == nil {
				rep.Containers[i].Bytes = m.Size
				if spec, err := ReadSpec(m, o.Identities); err != nil {
					rep.Containers[i].Outcome, rep.Containers[i].Error = "failed", err.Error()
				} else if warn, err := o.HostAccess.check(cands[n], spec); err != nil {
					rep.Containers[i].Outcome, rep.Containers[i].Error = "failed", err.Error()
				} else {
					rep.Containers[i].Warnings = warn
				}
			}
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			rep.Containers[i] = restoreOne(ctx, RecreateOptions{Store: o.Store, Engine: o.Engine, Key: cands[n], Name: n, Identities: o.Identities, TempDir: o.TempDir,
				HostAccess: o.HostAccess, Probe: o.Probe, AfterImport: o.AfterImport, wait: o.wait}, acquire, imports, starts)
			if rep.Containers[i].Name == "" {
				rep.Containers[i].Name = n
			}
			if o.Progress != nil {
				mu.Lock()
				o.Progress(rep.Containers[i])
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	var errs []error
	for _, c := range rep.Containers {
		rep.Bytes += c.Bytes
		switch c.Outcome {
		case "restored":
			rep.Restored++
		case "skipped":
			rep.Skipped++
		case "failed":
			rep.Failed++
			errs = append(errs, fmt.Errorf("%s: %s", c.Name, c.Error))
		}
	}
	rep.RTOSeconds = time.Since(start).Seconds()
	if len(errs) > 0 {
		return rep, fmt.Errorf("restore node %s: %d of %d containers failed: %w", o.FromNode, rep.Failed, len(names), errors.Join(errs...))
	}
	return rep, nil
}

// unknownNames refuses only and exclude names that match no backup of the node: a typo would
// restore what was meant to be skipped, or skip what was meant to be restored, silently.
func unknownNames(cands map[string]string, only, exclude []string) error {
	var unknown []string
	for _, l := range []struct {
		flag  string
		names []string
	}{{"only", only}, {"exclude", exclude}} {
		for _, n := range l.names {
			if _, ok := cands[n]; !ok {
				unknown = append(unknown, fmt.Sprintf("%s (%s)", n, l.flag))
			}
		}
	}
	if len(unknown) > 0 {
		return fmt.Errorf("no container backups of that node named %s", strings.Join(unknown, ", "))
	}
	return nil
}

// restoreOne recreates one container of a node restore: its download, verification and import
// hold a slot of imports, its create and start a slot of starts, and its probe none.
// A panic (a bug) in one container's restore fails that container, with its slots released, and
// never takes opsd and the node's other containers down with it.
func restoreOne(ctx context.Context, o RecreateOptions, acquire func(chan struct{}) error, imports, starts chan struct{}) (res RecreateResult) {
	defer func() {
		if p := recover(); p != nil {
			res = RecreateResult{Key: o.Key, Name: o.Name, Outcome: "failed", Error: fmt.Sprintf("internal error (a bug in opsd, please report it): %v", p), Phases: map[string]float64{}}
		}
	}()
	if err := acquire(imports); err != nil {
		return RecreateResult{Key: o.Key, Outcome: "failed", Error: err.Error(), Phases: map[string]float64{}}
	}
	r, ok := func() (*recreation, bool) {
		defer func() { <-imports }()
		return prepareRecreate(ctx, o)
	}()
	if !ok {
		return r.res
	}
	if err := acquire(starts); err != nil {
		r.undo(ctx, err) // imported, never created: remove its image
		return r.res
	}
	ok = func() bool {
		defer func() { <-starts }()
		return r.create(ctx)
	}()
	if !ok {
		return r.res
	}
	return r.settle(ctx)
}

func set(xs []string) map[string]bool {
	m := map[string]bool{}
	for _, x := range xs {
		m[x] = true
	}
	return m
}

// NodeCandidates returns, per container a node backed up, the newest archive with a manifest:
// its newest nightly export, or its hot archive when that node wrote it later.
func NodeCandidates(ctx context.Context, store storage.Store, keys *layout.Layout, node string) (map[string]string, error) {
	return NodeArtifacts(ctx, store, keys, node, "container")
}

// NodeArtifacts returns, per target (container or WOPR_HOME instance) of a manifest kind
// ("container" or "snapshot") that a node backed up, the key of its newest artifact (for
// containers, a newer hot archive written by that node wins).
func NodeArtifacts(ctx context.Context, store storage.Store, keys *layout.Layout, node, kind string) (map[string]string, error) {
	lk := layout.Nightly
	if kind == "snapshot" {
		lk = layout.Snapshot
	}
	list, err := keys.Artifacts(ctx, store, layout.Fields{Node: node}, lk)
	if err != nil {
		return nil, err
	}
	newest := map[string]artifact.Manifest{}
	for _, a := range list { // newest first
		if _, done := newest[a.Target]; done {
			continue
		}
		// Snapshots and nightly exports may share a template: the manifest says which is which.
		if m, err := artifact.ReadManifest(ctx, store, a.Key); err == nil && m.Kind == kind {
			newest[a.Target] = m
		}
	}
	out := map[string]string{}
	for name, m := range newest {
		if kind == "container" {
			if m, err = newerHot(ctx, store, keys, node, name, m); err != nil {
				return nil, err
			}
		}
		out[name] = m.Key
	}
	return out, nil
}

// NewestContainerKey is the newest verified archive of one container that node backed up: its
// newest nightly, or its hot archive when that node wrote it later.
func NewestContainerKey(ctx context.Context, store storage.Store, keys *layout.Layout, node, name string) (string, error) {
	k, err := ContainerKey(ctx, store, keys, node, name, "", "", false)
	if err != nil {
		return "", err
	}
	m, err := artifact.ReadManifest(ctx, store, k)
	if err != nil {
		return "", err
	}
	if m, err = newerHot(ctx, store, keys, node, name, m); err != nil {
		return "", err
	}
	return m.Key, nil
}

// newerHot returns the container's hot archive when node wrote it after than.
func newerHot(ctx context.Context, store storage.Store, keys *layout.Layout, node, name string, than artifact.Manifest) (artifact.Manifest, error) {
	hot, err := keys.Artifacts(ctx, store, layout.Fields{Target: name}, layout.Hot)
	if err != nil {
		return than, err
	}
	for _, h := range hot {
		if m, err := artifact.ReadManifest(ctx, store, h.Key); err == nil && m.Kind == "container" && m.Node == node && m.CreatedAt.After(than.CreatedAt) {
			than = m
		}
	}
	return than, nil
}
