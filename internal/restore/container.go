package restore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"filippo.io/age"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"

	"github.com/wopr-network/opsd/internal/artifact"
	"github.com/wopr-network/opsd/internal/docker"
	"github.com/wopr-network/opsd/internal/layout"
	"github.com/wopr-network/opsd/internal/scratch"
	"github.com/wopr-network/opsd/internal/storage"
)

// ContainerEngine is what a container restore needs from Docker.
type ContainerEngine interface {
	ContainerCreator
	Export(ctx context.Context, id string) (io.ReadCloser, error)
	Stop(ctx context.Context, id string, timeout time.Duration) error
	Rename(ctx context.Context, id, name string) error
}

// ContainerCreator is what making a container from a backup needs from Docker, whether it
// replaces one (ContainerEngine) or recreates a lost one (RecreateEngine): import the image,
// create, connect and start the container, and clean up.
type ContainerCreator interface {
	ImageImporter
	Inspect(ctx context.Context, id string, size bool) (docker.Details, error)
	CreateNetworked(ctx context.Context, name string, cfg *container.Config, host *container.HostConfig, nets *network.NetworkingConfig) (string, error)
	NetworkConnect(ctx context.Context, networkName, id string, ep *network.EndpointSettings) error
	Start(ctx context.Context, id string) error
	Remove(ctx context.Context, id string) error
}

// ContainerOptions configure a container restore.
type ContainerOptions struct {
	Store      storage.Store
	Engine     ContainerEngine
	Name       string
	Key        string
	Identities []age.Identity
	Node       string
	TempDir    string
	// HostAccess says which host access the captured spec may ask for when the container is
	// recreated (it does not exist here); a replace keeps the existing container's own.
	HostAccess HostAccess
	// StopTimeout before the old container is killed (default 30s).
	StopTimeout time.Duration
	// Probe: the new container must still run this long after its start (default 5s).
	Probe    time.Duration
	Progress func(string)
	OnBytes  artifact.Progress
	// AfterStop is called once the old container is stopped (tests inject failures here).
	AfterStop func() error
	Now       func() time.Time
	// Layout names the safety export (nil: the default layout).
	Layout *layout.Layout
	// Tracker times the phases and records the safety export and the kept container before
	// the original is touched (nil: not tracked).
	Tracker *Tracker
}

// ContainerResult describes a container restore.
type ContainerResult struct {
	Key       string        `json:"key"`
	SafetyKey string        `json:"safetyKey"`
	OldID     string        `json:"oldId"`
	NewID     string        `json:"newId"`
	Image     string        `json:"image"`
	Downtime  time.Duration `json:"downtime"`
}

// ContainerKey resolves which archive to restore: key as given, the newest hot backup (whatever
// its compression and encryption suffix), the nightly of a date, or (default) the newest nightly
// with a manifest. l nil means the default layout.
func ContainerKey(ctx context.Context, store storage.Store, l *layout.Layout, node, name, key, date string, latest bool) (string, error) {
	if l == nil {
		l = layout.Default()
	}
	want, kind, what := layout.Fields{Node: node, Target: name, Date: date}, layout.Nightly, "nightly"
	switch {
	case key != "":
		return key, nil
	case latest:
		want, kind, what = layout.Fields{Target: name}, layout.Hot, "hot"
	}
	a, ok, err := l.Newest(ctx, store, want, kind)
	switch {
	case err != nil:
		return "", err
	case ok:
		return a.Key, nil
	case date != "":
		return "", fmt.Errorf("no nightly backup of %s for %s under %s", name, date, l.Templates(kind)[0].Prefix(want))
	}
	return "", fmt.Errorf("no %s backup of %s with a manifest under %s", what, name, l.Templates(kind)[0].Prefix(want))
}

// RestoreContainer replaces a container with one made from a backup (runbook Procedure 2): the
// backup is verified; the current container is exported to pre-restore/, stopped and kept under
// another name until the new one (same configuration: env, labels, mounts, networks, restart
// policy, command) runs; any failure brings the original back under its own name and state.
func RestoreContainer(ctx context.Context, o ContainerOptions) (ContainerResult, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.StopTimeout == 0 {
		o.StopTimeout = 30 * time.Second
	}
	if o.Probe == 0 {
		o.Probe = 5 * time.Second
	}
	say := sayer(o.Progress)
	res := ContainerResult{Key: o.Key}
	e := o.Engine
	m, err := artifact.ReadManifest(ctx, o.Store, o.Key)
	if err != nil {
		return res, fmt.Errorf("restore %s: %w", o.Name, err)
	}
	if m.Kind != "container" {
		return res, fmt.Errorf("restore %s: %s is a %s backup, not a container export", o.Name, o.Key, m.Kind)
	}
	old, err := e.Inspect(ctx, o.Name, false)
	if err != nil {
		return res, fmt.Errorf("restore %s: the container to replace: %w", o.Name, err)
	}
	res.OldID = old.ID
	scratch, err := os.MkdirTemp(o.TempDir, scratch.Pattern("restore"))
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(scratch)
	file := filepath.Join(scratch, "backup")
	o.Tracker.Phase("download")
	say("downloading %s", o.Key)
	if err := artifact.DownloadVerified(ctx, o.Store, m, file, o.OnBytes); err != nil {
		return res, fmt.Errorf("restore %s: %w (nothing was changed)", o.Name, err)
	}
	say("verified %s (sha256)", o.Key)

	if o.Layout == nil {
		o.Layout = layout.Default()
	}
	now := o.Now()
	ts := layout.Stamp(now)
	res.SafetyKey = o.Layout.PreRestoreKey(o.Node, o.Name, now, ".tar.gz")
	o.Tracker.Phase("safety_copy")
	say("safety export of %s to %s", o.Name, res.SafetyKey)
	rc, err := e.Export(ctx, old.ID)
	if err != nil {
		return res, fmt.Errorf("restore %s: safety export: %w (nothing was changed)", o.Name, err)
	}
	safety := artifact.NewTarVerifier(rc)
	defer safety.Close()
	_, err = artifact.Store(ctx, o.Store, safety, artifact.Options{Compression: artifact.Gzip}, artifact.Manifest{
		Key: res.SafetyKey, Kind: "container", Target: o.Name, Source: old.ID, Node: o.Node, Labels: old.Labels,
		Container: &artifact.ContainerInfo{ID: old.ID, Name: o.Name, Image: old.Image}, Note: "safety export taken before restoring " + o.Key})
	rc.Close()
	if err != nil {
		return res, fmt.Errorf("restore %s: safety export: %w (nothing was changed)", o.Name, err)
	}
	keptName := fmt.Sprintf("%s-pre-restore-%s", o.Name, ts)
	if err := o.Tracker.Safety(ctx, res.SafetyKey); err != nil {
		return res, fmt.Errorf("restore %s: %w", o.Name, err)
	}
	if err := o.Tracker.Safety(ctx, fmt.Sprintf("the original container %s (%s) is kept as %s until the restored one runs", o.Name, shortID(old.ID), keptName)); err != nil {
		return res, fmt.Errorf("restore %s: %w", o.Name, err)
	}

	cleanup := context.WithoutCancel(ctx)
	wasRunning := old.Running
	downStart := time.Now()
	var renamed bool
	var image, newID string
	rollback := func(cause error) (ContainerResult, error) {
		var errs []error
		if newID != "" {
			errs = append(errs, e.Remove(cleanup, newID))
		}
		if renamed {
			errs = append(errs, e.Rename(cleanup, old.ID, o.Name))
		}
		if wasRunning {
			errs = append(errs, e.Start(cleanup, old.ID))
		}
		if image != "" {
			errs = append(errs, e.RemoveImage(cleanup, image))
		}
		res.Downtime = time.Since(downStart)
		if err := errors.Join(errs...); err != nil {
			return res, &RollbackFailedError{Err: cause, Rollback: err, Where: fmt.Sprintf("the original is container %s; its export is %s", shortID(old.ID), res.SafetyKey)}
		}
		say("rolled back: %s is the original container again", o.Name)
		return res, &RolledBackError{Err: cause, What: "the original " + o.Name + " is back"}
	}
	o.Tracker.Phase("stop")
	if wasRunning {
		say("stopping %s", o.Name)
		if err := e.Stop(ctx, old.ID, o.StopTimeout); err != nil {
			return rollback(fmt.Errorf("restore %s: stop: %w", o.Name, err))
		}
	}
	if err := e.Rename(ctx, old.ID, keptName); err != nil {
		return rollback(fmt.Errorf("restore %s: keep the old container: %w", o.Name, err))
	}
	renamed = true
	if o.AfterStop != nil {
		if err := o.AfterStop(); err != nil {
			return rollback(fmt.Errorf("restore %s: %w", o.Name, err))
		}
	}
	o.Tracker.Phase("import")
	say("importing %s", o.Key)
	f, err := os.Open(file)
	if err != nil {
		return rollback(err)
	}
	dec, err := artifact.Decode(f, m, o.Identities, f)
	if err != nil {
		return rollback(fmt.Errorf("restore %s: %w", o.Name, err))
	}
	imported := artifact.NewTarVerifier(dec)
	defer imported.Close()
	image, err = e.Import(ctx, imported, fmt.Sprintf("opsd-restore/%s:%s", strings.ToLower(o.Name), strings.ToLower(ts)))
	dec.Close()
	if err != nil {
		return rollback(fmt.Errorf("restore %s: import: %w", o.Name, err))
	}
	res.Image = image
	cfg := *old.Raw.Config
	cfg.Image = image
	host := old.Raw.HostConfig
	primary := ""
	if host != nil {
		primary = string(host.NetworkMode)
	}
	var nets *network.NetworkingConfig
	var others []string
	if old.Raw.NetworkSettings != nil {
		for name, ep := range old.Raw.NetworkSettings.Networks {
			if name == primary || (primary == "default" && name == "bridge") {
				nets = &network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{name: endpoint(ep)}}
			} else {
				others = append(others, name)
			}
		}
	}
	o.Tracker.Phase("create")
	newID, err = e.CreateNetworked(ctx, o.Name, &cfg, host, nets)
	if err != nil {
		return rollback(fmt.Errorf("restore %s: create: %w", o.Name, err))
	}
	sort.Strings(others)
	for _, n := range others {
		if err := e.NetworkConnect(ctx, n, newID, endpoint(old.Raw.NetworkSettings.Networks[n])); err != nil {
			return rollback(fmt.Errorf("restore %s: %w", o.Name, err))
		}
	}
	res.NewID = newID
	if wasRunning {
		o.Tracker.Phase("start")
		say("starting the restored %s", o.Name)
		if err := e.Start(ctx, newID); err != nil {
			return rollback(fmt.Errorf("restore %s: start: %w", o.Name, err))
		}
		o.Tracker.Phase("probe")
		select {
		case <-time.After(o.Probe):
		case <-ctx.Done():
			return rollback(fmt.Errorf("restore %s: %w", o.Name, ctx.Err()))
		}
		d, err := e.Inspect(ctx, newID, false)
		if err != nil || !d.Running {
			return rollback(fmt.Errorf("restore %s: the restored container did not keep running for %s", o.Name, o.Probe))
		}
		res.Downtime = time.Since(downStart)
	}
	if err := e.Remove(cleanup, old.ID); err != nil {
		say("warning: the old container %s (%s) could not be removed: %v", keptName, shortID(old.ID), err)
	}
	say("restored %s from %s", o.Name, o.Key)
	return res, nil
}

func endpoint(ep *network.EndpointSettings) *network.EndpointSettings {
	if ep == nil {
		return &network.EndpointSettings{}
	}
	var aliases []string
	for _, a := range ep.Aliases {
		if len(a) != 12 { // the old container's short id alias is not carried over
			aliases = append(aliases, a)
		}
	}
	return &network.EndpointSettings{IPAMConfig: ep.IPAMConfig, Links: ep.Links, Aliases: aliases, DriverOpts: ep.DriverOpts}
}

func shortID(id string) string { return id[:min(12, len(id))] }
