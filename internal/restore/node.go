package restore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
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
	Inspect(ctx context.Context, id string, size bool) (docker.Details, error)
	Import(ctx context.Context, r io.Reader, ref string) (string, error)
	CreateNetworked(ctx context.Context, name string, cfg *container.Config, host *container.HostConfig, nets *network.NetworkingConfig) (string, error)
	NetworkConnect(ctx context.Context, networkName, id string, ep *network.EndpointSettings) error
	EnsureNetwork(ctx context.Context, name string, ns docker.NetworkSpec) (bool, error)
	EnsureVolume(ctx context.Context, vs docker.VolumeSpec) (bool, error)
	Start(ctx context.Context, id string) error
	Remove(ctx context.Context, id string) error
	RemoveImage(ctx context.Context, id string) error
}

// RecreateOptions configure recreating one container that does not exist on this engine (a lost
// node's tenant) from its backup and its captured create spec.
type RecreateOptions struct {
	Store      storage.Store
	Engine     RecreateEngine
	Key        string
	Identities []age.Identity
	TempDir    string
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
func Recreate(ctx context.Context, o RecreateOptions) (res RecreateResult) {
	start := time.Now()
	res = RecreateResult{Key: o.Key, Phases: map[string]float64{}}
	phase, phaseStart := "", time.Now()
	enter := func(p string) {
		if phase != "" {
			res.Phases[phase] += time.Since(phaseStart).Seconds()
		}
		phase, phaseStart = p, time.Now()
	}
	defer func() {
		enter("")
		res.Seconds = time.Since(start).Seconds()
	}()
	fail := func(err error) RecreateResult {
		res.Outcome, res.Error = "failed", err.Error()
		return res
	}
	if o.Probe == 0 {
		o.Probe = 5 * time.Second
	}
	e := o.Engine
	m, err := artifact.ReadManifest(ctx, o.Store, o.Key)
	if err != nil {
		return fail(err)
	}
	if m.Kind != "container" {
		return fail(fmt.Errorf("%s is a %s backup, not a container export", o.Key, m.Kind))
	}
	spec, err := ReadSpec(m, o.Identities)
	if err != nil {
		return fail(err)
	}
	res.Name, res.Bytes = spec.Name, m.Size
	ref := ImageRef(spec.Name, m)
	if o.Sandbox != "" {
		ref = fmt.Sprintf("opsd-drill/%s:%d", strings.ToLower(spec.Name), time.Now().UnixNano())
		spec = sandboxed(spec, o.Sandbox)
	} else if d, err := e.Inspect(ctx, spec.Name, false); err == nil {
		if d.Image == ref && d.Running == spec.Running {
			res.Outcome, res.ID, res.Image, res.Running = "skipped", d.ID, ref, d.Running
			res.Warnings = append(res.Warnings, "already restored from this artifact")
			return res
		}
		if d.Image != ref {
			return fail(fmt.Errorf("a container named %s exists already (from %s): it is never replaced here; use restore container --replace", spec.Name, d.Image))
		}
		// Created from this artifact by a restore that was cut short: finish it from scratch.
		if err := e.Remove(ctx, d.ID); err != nil {
			return fail(err)
		}
	} else if !docker.IsNotFound(err) {
		return fail(err)
	}

	enter("download")
	cleanup := context.WithoutCancel(ctx)
	image, err := ImportVerified(ctx, o.Store, e, m, o.Identities, ref, o.OnBytes, enter)
	if err != nil {
		return fail(err)
	}
	var newID string
	if o.Sandbox != "" {
		defer func() {
			if newID != "" {
				e.Remove(cleanup, newID)
			}
			e.RemoveImage(cleanup, image)
		}()
	}
	undo := func(cause error) RecreateResult {
		if newID != "" {
			e.Remove(cleanup, newID)
		}
		e.RemoveImage(cleanup, image)
		return fail(cause)
	}
	if o.AfterImport != nil {
		if err := o.AfterImport(spec.Name); err != nil {
			return undo(err)
		}
	}
	enter("create")
	names := make([]string, 0, len(spec.Networks))
	for n := range spec.Networks {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		created, err := e.EnsureNetwork(ctx, n, spec.Networks[n])
		if err != nil {
			return undo(err)
		}
		if created {
			res.Warnings = append(res.Warnings, "created network "+n)
		}
	}
	for _, v := range spec.Volumes {
		created, err := e.EnsureVolume(ctx, v)
		if err != nil {
			return undo(err)
		}
		if created {
			res.Warnings = append(res.Warnings, fmt.Sprintf("created volume %s EMPTY (mounted at %s): exports do not contain volumes; restore its data separately", v.Name, v.Destination))
		}
	}
	for _, src := range spec.BindSources() {
		if _, err := os.Stat(src); err != nil {
			res.Warnings = append(res.Warnings, fmt.Sprintf("bind mount source %s does not exist on this host", src))
		}
	}
	cfg, host, nets, others := spec.CreateOptions(ref)
	newID, err = e.CreateNetworked(ctx, spec.Name, cfg, host, nets)
	if err != nil {
		return undo(err)
	}
	for _, n := range others {
		if err := e.NetworkConnect(ctx, n, newID, &network.EndpointSettings{Aliases: spec.Networks[n].Aliases}); err != nil {
			return undo(err)
		}
	}
	res.ID, res.Image = newID, ref
	if spec.Running {
		enter("start")
		if err := e.Start(ctx, newID); err != nil {
			return undo(err)
		}
		enter("probe")
		select {
		case <-time.After(o.Probe):
		case <-ctx.Done():
			return undo(ctx.Err())
		}
		d, err := e.Inspect(ctx, newID, false)
		if err != nil {
			return undo(err)
		}
		if !d.Running {
			return undo(fmt.Errorf("the restored %s did not keep running for %s", spec.Name, o.Probe))
		}
		res.Running = true
	}
	res.Outcome = "restored"
	return res
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
		host.Resources = s.HostConfig.Resources
		host.CapAdd, host.CapDrop, host.SecurityOpt = s.HostConfig.CapAdd, s.HostConfig.CapDrop, s.HostConfig.SecurityOpt
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
	// Parallel containers at once (default 4).
	Parallel int
	// Only and Exclude select containers by name.
	Only, Exclude []string
	DryRun        bool
	Probe         time.Duration
	// Progress receives a line per container event.
	Progress    func(RecreateResult)
	AfterImport func(name string) error
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
	var mu sync.Mutex
	sem := make(chan struct{}, o.Parallel)
	var wg sync.WaitGroup
	for i, n := range names {
		if o.DryRun {
			rep.Containers[i] = RecreateResult{Name: n, Key: cands[n], Outcome: "planned", Phases: map[string]float64{}}
			if m, err := artifact.ReadManifest(ctx, o.Store, cands[n]); err == nil {
				rep.Containers[i].Bytes = m.Size
				if _, err := ReadSpec(m, o.Identities); err != nil {
					rep.Containers[i].Outcome, rep.Containers[i].Error = "failed", err.Error()
				}
			}
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				rep.Containers[i] = RecreateResult{Name: n, Key: cands[n], Outcome: "failed", Error: ctx.Err().Error()}
				return
			}
			defer func() { <-sem }()
			r := Recreate(ctx, RecreateOptions{Store: o.Store, Engine: o.Engine, Key: cands[n], Identities: o.Identities, TempDir: o.TempDir, Probe: o.Probe, AfterImport: o.AfterImport})
			if r.Name == "" {
				r.Name = n
			}
			rep.Containers[i] = r
			if o.Progress != nil {
				mu.Lock()
				o.Progress(r)
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
