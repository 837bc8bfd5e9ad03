package docker

import (
	"context"
	"fmt"
	"path/filepath"
	"sort"
	"strings"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"
)

// SpecVersion is the version of the Spec format.
const SpecVersion = 1

// Spec is what is needed to recreate a container on another engine besides its filesystem
// (`docker export` keeps only the filesystem; `docker import` drops command, env, labels, mounts,
// networks and restart policy). It is captured at export time and stored, sealed like the
// archive, in the export's manifest.
type Spec struct {
	Version int    `json:"version"`
	Name    string `json:"name"`
	// Image is the reference the container was created from (informational: the restore
	// imports the archive instead).
	Image   string `json:"image"`
	Running bool   `json:"running"`
	// Config is the container's config: Cmd, Entrypoint, Env, WorkingDir, User, ExposedPorts,
	// Labels, StopSignal, Healthcheck, Hostname, Domainname, ...
	Config *container.Config `json:"config"`
	// HostConfig: binds and mounts with their sources, port bindings, restart policy, resources,
	// capabilities, security options, log config, extra hosts, DNS.
	HostConfig *container.HostConfig `json:"hostConfig"`
	// Networks the container was attached to, with its endpoint settings (aliases) and enough
	// of the network's own definition to create it when it is missing.
	Networks map[string]NetworkSpec `json:"networks,omitempty"`
	// Volumes are the named volumes mounted into the container (exports do not contain them).
	Volumes []VolumeSpec `json:"volumes,omitempty"`
}

// NetworkSpec is one network of a Spec.
type NetworkSpec struct {
	Driver     string            `json:"driver"`
	Internal   bool              `json:"internal,omitempty"`
	Attachable bool              `json:"attachable,omitempty"`
	EnableIPv6 bool              `json:"enableIPv6,omitempty"`
	IPAM       *network.IPAM     `json:"ipam,omitempty"`
	Options    map[string]string `json:"options,omitempty"`
	Labels     map[string]string `json:"labels,omitempty"`
	Aliases    []string          `json:"aliases,omitempty"`
	// Predefined networks (bridge, host, none) exist on every engine and are never created.
	Predefined bool `json:"predefined,omitempty"`
}

// VolumeSpec is one named volume of a Spec.
type VolumeSpec struct {
	Name        string            `json:"name"`
	Driver      string            `json:"driver"`
	Destination string            `json:"destination"`
	Options     map[string]string `json:"options,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
}

// predefinedNetworks exist on every engine.
var predefinedNetworks = map[string]bool{"bridge": true, "host": true, "none": true, "default": true}

// CaptureSpec inspects a container, its networks and its named volumes and returns its Spec.
func (c *Client) CaptureSpec(ctx context.Context, id string) (Spec, error) {
	d, err := c.Inspect(ctx, id, false)
	if err != nil {
		return Spec{}, err
	}
	r := d.Raw
	s := Spec{Version: SpecVersion, Name: d.Name, Image: d.Image, Running: d.Running, Config: r.Config, HostConfig: r.HostConfig}
	if r.NetworkSettings != nil {
		for name, ep := range r.NetworkSettings.Networks {
			ns := NetworkSpec{Predefined: predefinedNetworks[name]}
			if ep != nil {
				for _, a := range ep.Aliases {
					if a != d.ID[:min(12, len(d.ID))] && a != d.ID { // the engine adds the short id itself
						ns.Aliases = append(ns.Aliases, a)
					}
				}
			}
			if !ns.Predefined {
				res, err := c.c.NetworkInspect(ctx, name, client.NetworkInspectOptions{})
				if err != nil {
					return Spec{}, fmt.Errorf("capture spec of %s: network %s: %w", d.Name, name, err)
				}
				n := res.Network
				ipam := n.IPAM
				ns.Driver, ns.Internal, ns.Attachable, ns.EnableIPv6 = n.Driver, n.Internal, n.Attachable, n.EnableIPv6
				ns.IPAM, ns.Options, ns.Labels = &ipam, n.Options, n.Labels
			}
			if s.Networks == nil {
				s.Networks = map[string]NetworkSpec{}
			}
			s.Networks[name] = ns
		}
	}
	for _, m := range r.Mounts {
		if m.Type != mount.TypeVolume || m.Name == "" {
			continue
		}
		vs := VolumeSpec{Name: m.Name, Driver: m.Driver, Destination: m.Destination}
		if res, err := c.c.VolumeInspect(ctx, m.Name, client.VolumeInspectOptions{}); err == nil {
			vs.Driver, vs.Options, vs.Labels = res.Volume.Driver, res.Volume.Options, res.Volume.Labels
		} else if !IsNotFound(err) {
			return Spec{}, fmt.Errorf("capture spec of %s: volume %s: %w", d.Name, m.Name, err)
		}
		s.Volumes = append(s.Volumes, vs)
	}
	sort.Slice(s.Volumes, func(i, j int) bool { return s.Volumes[i].Name < s.Volumes[j].Name })
	return s, nil
}

// EnsureNetwork creates the network of a Spec unless it exists; created reports whether it did.
func (c *Client) EnsureNetwork(ctx context.Context, name string, ns NetworkSpec) (created bool, err error) {
	if ns.Predefined || predefinedNetworks[name] {
		return false, nil
	}
	if _, err := c.c.NetworkInspect(ctx, name, client.NetworkInspectOptions{}); err == nil {
		return false, nil
	} else if !IsNotFound(err) {
		return false, fmt.Errorf("network %s: %w", name, err)
	}
	ipv6 := ns.EnableIPv6
	_, err = c.c.NetworkCreate(ctx, name, client.NetworkCreateOptions{Driver: ns.Driver, IPAM: ns.IPAM, Internal: ns.Internal,
		Attachable: ns.Attachable, EnableIPv6: &ipv6, Options: ns.Options, Labels: ns.Labels})
	if err != nil {
		return false, fmt.Errorf("create network %s: %w", name, err)
	}
	return true, nil
}

// RemoveNetwork deletes a network (tests and rollbacks).
func (c *Client) RemoveNetwork(ctx context.Context, name string) error {
	if _, err := c.c.NetworkRemove(ctx, name, client.NetworkRemoveOptions{}); err != nil && !IsNotFound(err) {
		return fmt.Errorf("remove network %s: %w", name, err)
	}
	return nil
}

// EnsureVolume creates a named volume of a Spec unless it exists; created reports whether it did
// (a created volume is empty: exports do not contain volumes).
func (c *Client) EnsureVolume(ctx context.Context, vs VolumeSpec) (created bool, err error) {
	if _, err := c.c.VolumeInspect(ctx, vs.Name, client.VolumeInspectOptions{}); err == nil {
		return false, nil
	} else if !IsNotFound(err) {
		return false, fmt.Errorf("volume %s: %w", vs.Name, err)
	}
	if _, err := c.c.VolumeCreate(ctx, client.VolumeCreateOptions{Name: vs.Name, Driver: vs.Driver, DriverOpts: vs.Options, Labels: vs.Labels}); err != nil {
		return false, fmt.Errorf("create volume %s: %w", vs.Name, err)
	}
	return true, nil
}

// RemoveVolume deletes a named volume (tests).
func (c *Client) RemoveVolume(ctx context.Context, name string) error {
	if _, err := c.c.VolumeRemove(ctx, name, client.VolumeRemoveOptions{Force: true}); err != nil && !IsNotFound(err) {
		return fmt.Errorf("remove volume %s: %w", name, err)
	}
	return nil
}

// CreateOptions turns the Spec into the create call's arguments for image: the primary network
// (the host config's network mode) goes into the create call; the others are returned to be
// connected after creation.
func (s Spec) CreateOptions(image string) (*container.Config, *container.HostConfig, *network.NetworkingConfig, []string) {
	cfg := container.Config{}
	if s.Config != nil {
		cfg = *s.Config
	}
	cfg.Image = image
	host := s.HostConfig
	if host == nil {
		host = &container.HostConfig{}
	}
	primary := string(host.NetworkMode)
	var nets *network.NetworkingConfig
	var others []string
	for name, ns := range s.Networks {
		ep := &network.EndpointSettings{Aliases: ns.Aliases}
		if name == primary || (primary == "default" && name == "bridge") || (primary == "" && nets == nil && len(s.Networks) == 1) {
			nets = &network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{name: ep}}
		} else {
			others = append(others, name)
		}
	}
	sort.Strings(others)
	return &cfg, host, nets, others
}

// BindSources returns the host paths of the Spec's bind mounts (they must exist on the engine's
// host for the container to be created with them).
func (s Spec) BindSources() []string {
	var out []string
	if s.HostConfig == nil {
		return nil
	}
	for _, b := range s.HostConfig.Binds {
		src, _, _ := strings.Cut(b, ":")
		if strings.HasPrefix(src, "/") {
			out = append(out, src)
		}
	}
	for _, m := range s.HostConfig.Mounts {
		if m.Type == mount.TypeBind {
			out = append(out, m.Source)
		}
	}
	return out
}

// HostAccess lists, one entry each, what the Spec asks of the host beyond an ordinary
// container: privileged mode, added capabilities, the host's or other containers' network, pid,
// ipc, uts or user namespace, devices, disabled confinement, other containers' volumes, volumes
// or networks whose driver reaches into the host, and bind mounts whose source is not under one
// of bindRoots. A spec is read from the bucket, so whoever can write there could otherwise get
// root on the host that restores it.
func (s Spec) HostAccess(bindRoots []string) []string {
	var out []string
	if h := s.HostConfig; h != nil {
		if h.Privileged {
			out = append(out, "privileged mode")
		}
		for _, c := range h.CapAdd {
			out = append(out, "added capability "+c)
		}
		// The cgroup namespace is left out: "host" is the engine's default on cgroup v1 hosts.
		for what, mode := range map[string]string{"network": string(h.NetworkMode), "pid": string(h.PidMode), "ipc": string(h.IpcMode),
			"uts": string(h.UTSMode), "user": string(h.UsernsMode)} {
			if mode == "host" || strings.HasPrefix(mode, "container:") {
				out = append(out, fmt.Sprintf("%s namespace %s", what, mode))
			}
		}
		for _, o := range h.SecurityOpt {
			if strings.Contains(o, "unconfined") || o == "label=disable" || o == "label:disable" || strings.HasPrefix(o, "systempaths=") {
				out = append(out, "security option "+o)
			}
		}
		for _, d := range h.Devices {
			out = append(out, "device "+d.PathOnHost)
		}
		for _, r := range h.DeviceCgroupRules {
			out = append(out, "device rule "+r)
		}
		for _, r := range h.DeviceRequests {
			out = append(out, "device request "+r.Driver)
		}
		for _, v := range h.VolumesFrom {
			out = append(out, "volumes of container "+v)
		}
		for _, m := range h.Mounts {
			if m.Type == mount.TypeVolume && m.VolumeOptions != nil && m.VolumeOptions.DriverConfig != nil {
				out = append(out, fmt.Sprintf("volume mount %s with driver %s", m.Source, m.VolumeOptions.DriverConfig.Name))
			}
		}
	}
	for _, src := range s.BindSources() {
		if !under(src, bindRoots) {
			out = append(out, "bind mount of "+src)
		}
	}
	for _, v := range s.Volumes {
		if (v.Driver != "" && v.Driver != "local") || len(v.Options) > 0 {
			out = append(out, fmt.Sprintf("volume %s with driver %s and options %v", v.Name, v.Driver, v.Options))
		}
	}
	for name, n := range s.Networks {
		if !n.Predefined && n.Driver != "" && n.Driver != "bridge" && n.Driver != "overlay" {
			out = append(out, fmt.Sprintf("network %s with driver %s", name, n.Driver))
		}
	}
	sort.Strings(out)
	return out
}

// under reports whether path is one of roots or below one (both cleaned; a relative or empty
// root allows nothing).
func under(path string, roots []string) bool {
	p := filepath.Clean(path)
	for _, r := range roots {
		if r == "" || !filepath.IsAbs(r) {
			continue
		}
		r = filepath.Clean(r)
		if p == r || strings.HasPrefix(p, strings.TrimSuffix(r, "/")+"/") {
			return true
		}
	}
	return false
}
