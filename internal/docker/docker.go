// Package docker is opsd's Docker engine client (github.com/moby/moby/client, API version
// negotiated). It returns plain types; jobs depend on narrow interfaces they define themselves.
package docker

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"
)

// Client talks to one Docker engine.
type Client struct {
	c *client.Client
}

// New connects to host (e.g. unix:///var/run/docker.sock); empty means DOCKER_HOST or the default.
func New(host string) (*Client, error) {
	opts := []client.Opt{client.FromEnv}
	if host != "" {
		opts = append(opts, client.WithHost(host))
	}
	c, err := client.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("docker client: %w", err)
	}
	return &Client{c: c}, nil
}

// Close releases the client.
func (c *Client) Close() error { return c.c.Close() }

// Ping checks the engine answers.
func (c *Client) Ping(ctx context.Context) error {
	if _, err := c.c.Ping(ctx, client.PingOptions{}); err != nil {
		return fmt.Errorf("docker ping: %w", err)
	}
	return nil
}

// IsNotFound reports whether err says a container or image does not exist.
func IsNotFound(err error) bool { return cerrdefs.IsNotFound(err) }

// Container is a container as a list shows it.
type Container struct {
	ID     string
	Name   string
	Image  string
	State  string // running, exited, paused, ...
	Labels map[string]string
}

// List returns the containers (running and stopped) whose name starts with prefix and that carry
// every label in labels (value "" matches any value), by name.
func (c *Client) List(ctx context.Context, prefix string, labels map[string]string) ([]Container, error) {
	f := client.Filters{}
	for k, v := range labels {
		if v == "" {
			f = f.Add("label", k)
		} else {
			f = f.Add("label", k+"="+v)
		}
	}
	res, err := c.c.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: f})
	if err != nil {
		return nil, fmt.Errorf("list containers: %w", err)
	}
	var out []Container
	for _, s := range res.Items {
		name := ""
		if len(s.Names) > 0 {
			name = strings.TrimPrefix(s.Names[0], "/")
		}
		if !strings.HasPrefix(name, prefix) {
			continue
		}
		out = append(out, Container{ID: s.ID, Name: name, Image: s.Image, State: string(s.State), Labels: s.Labels})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Details is what inspect says about a container.
type Details struct {
	ID, Name, Image string
	Running, Paused bool
	StartedAt       string
	// SizeRw is the writable layer's size; -1 unless asked for with size.
	SizeRw int64
	Labels map[string]string
	Raw    container.InspectResponse
}

// Inspect returns a container's details; with size the engine computes SizeRw (costly).
func (c *Client) Inspect(ctx context.Context, id string, size bool) (Details, error) {
	res, err := c.c.ContainerInspect(ctx, id, client.ContainerInspectOptions{Size: size})
	if err != nil {
		return Details{}, fmt.Errorf("inspect %s: %w", id, err)
	}
	r := res.Container
	d := Details{ID: r.ID, Name: strings.TrimPrefix(r.Name, "/"), Image: r.Image, SizeRw: -1, Raw: r}
	if r.Config != nil {
		d.Labels = r.Config.Labels
		d.Image = r.Config.Image
	}
	if r.State != nil {
		d.Running, d.Paused, d.StartedAt = r.State.Running, r.State.Paused, r.State.StartedAt
	}
	if r.SizeRw != nil {
		d.SizeRw = *r.SizeRw
	}
	return d, nil
}

// DiffDigest returns a digest of the container's filesystem change list (paths and kinds).
func (c *Client) DiffDigest(ctx context.Context, id string) (string, int, error) {
	res, err := c.c.ContainerDiff(ctx, id, client.ContainerDiffOptions{})
	if err != nil {
		return "", 0, fmt.Errorf("diff %s: %w", id, err)
	}
	lines := make([]string, len(res.Changes))
	for i, ch := range res.Changes {
		lines[i] = fmt.Sprintf("%d %s", ch.Kind, ch.Path)
	}
	sort.Strings(lines)
	sum := sha256.Sum256([]byte(strings.Join(lines, "\n")))
	return hex.EncodeToString(sum[:8]), len(lines), nil
}

// Export streams the container's filesystem as a tar (docker export).
func (c *Client) Export(ctx context.Context, id string) (io.ReadCloser, error) {
	rc, err := c.c.ContainerExport(ctx, id, client.ContainerExportOptions{})
	if err != nil {
		return nil, fmt.Errorf("export %s: %w", id, err)
	}
	return rc, nil
}

// Pause freezes a running container.
func (c *Client) Pause(ctx context.Context, id string) error {
	if _, err := c.c.ContainerPause(ctx, id, client.ContainerPauseOptions{}); err != nil {
		return fmt.Errorf("pause %s: %w", id, err)
	}
	return nil
}

// Unpause resumes a paused container.
func (c *Client) Unpause(ctx context.Context, id string) error {
	if _, err := c.c.ContainerUnpause(ctx, id, client.ContainerUnpauseOptions{}); err != nil {
		return fmt.Errorf("unpause %s: %w", id, err)
	}
	return nil
}

// Import creates an image from a tar stream (docker import) and returns its ID.
func (c *Client) Import(ctx context.Context, r io.Reader, ref string) (string, error) {
	rc, err := c.c.ImageImport(ctx, client.ImageImportSource{Source: r, SourceName: "-"}, ref, client.ImageImportOptions{})
	if err != nil {
		return "", fmt.Errorf("import: %w", err)
	}
	defer rc.Close()
	var id string
	sc := bufio.NewScanner(rc)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var msg struct {
			Status      string `json:"status"`
			Error       string `json:"error"`
			ErrorDetail struct {
				Message string `json:"message"`
			} `json:"errorDetail"`
		}
		if json.Unmarshal(sc.Bytes(), &msg) != nil {
			continue
		}
		if msg.Error != "" {
			return "", fmt.Errorf("import: %s", msg.Error)
		}
		if strings.HasPrefix(msg.Status, "sha256:") {
			id = msg.Status
		}
	}
	if err := sc.Err(); err != nil {
		return "", fmt.Errorf("import: %w", err)
	}
	if id == "" {
		return "", errors.New("import: the engine returned no image id")
	}
	return id, nil
}

// RemoveImage deletes an image (forced).
func (c *Client) RemoveImage(ctx context.Context, id string) error {
	if _, err := c.c.ImageRemove(ctx, id, client.ImageRemoveOptions{Force: true}); err != nil && !IsNotFound(err) {
		return fmt.Errorf("remove image %s: %w", id, err)
	}
	return nil
}

// Create creates a container.
func (c *Client) Create(ctx context.Context, name string, cfg *container.Config, host *container.HostConfig) (string, error) {
	return c.CreateNetworked(ctx, name, cfg, host, nil)
}

// CreateNetworked creates a container attached to the given networks.
func (c *Client) CreateNetworked(ctx context.Context, name string, cfg *container.Config, host *container.HostConfig, nets *network.NetworkingConfig) (string, error) {
	res, err := c.c.ContainerCreate(ctx, client.ContainerCreateOptions{Name: name, Config: cfg, HostConfig: host, NetworkingConfig: nets})
	if err != nil {
		return "", fmt.Errorf("create %s: %w", name, err)
	}
	return res.ID, nil
}

// Start starts a container.
func (c *Client) Start(ctx context.Context, id string) error {
	if _, err := c.c.ContainerStart(ctx, id, client.ContainerStartOptions{}); err != nil {
		return fmt.Errorf("start %s: %w", id, err)
	}
	return nil
}

// Stop stops a container, killing it after timeout.
func (c *Client) Stop(ctx context.Context, id string, timeout time.Duration) error {
	secs := int(timeout.Seconds())
	if _, err := c.c.ContainerStop(ctx, id, client.ContainerStopOptions{Timeout: &secs}); err != nil {
		return fmt.Errorf("stop %s: %w", id, err)
	}
	return nil
}

// Remove deletes a container (forced: a running one is killed).
func (c *Client) Remove(ctx context.Context, id string) error {
	if _, err := c.c.ContainerRemove(ctx, id, client.ContainerRemoveOptions{Force: true}); err != nil && !IsNotFound(err) {
		return fmt.Errorf("remove %s: %w", id, err)
	}
	return nil
}

// Rename renames a container.
func (c *Client) Rename(ctx context.Context, id, name string) error {
	if _, err := c.c.ContainerRename(ctx, id, client.ContainerRenameOptions{NewName: name}); err != nil {
		return fmt.Errorf("rename %s: %w", id, err)
	}
	return nil
}

// Wait waits for a container to exit and returns its exit code.
func (c *Client) Wait(ctx context.Context, id string) (int64, error) {
	res := c.c.ContainerWait(ctx, id, client.ContainerWaitOptions{Condition: container.WaitConditionNotRunning})
	select {
	case r := <-res.Result:
		return r.StatusCode, nil
	case err := <-res.Error:
		return -1, fmt.Errorf("wait %s: %w", id, err)
	}
}

// CopyTo extracts a tar stream into a directory of the container (docker cp).
func (c *Client) CopyTo(ctx context.Context, id, dir string, tarStream io.Reader) error {
	if _, err := c.c.CopyToContainer(ctx, id, client.CopyToContainerOptions{DestinationPath: dir, Content: tarStream}); err != nil {
		return fmt.Errorf("copy to %s: %w", id, err)
	}
	return nil
}

// BusyboxRootFS returns a tar of a minimal root filesystem: Debian's static /bin/busybox and its
// common applets as symlinks. `docker import` of it gives a small working image without a
// registry (the demo and the tests use it).
func BusyboxRootFS() ([]byte, error) {
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		return nil, fmt.Errorf("busybox-static is needed (apt-get install busybox-static): %w", err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, d := range []string{"bin/", "tmp/", "data/", "etc/", "proc/", "sys/", "dev/"} {
		tw.WriteHeader(&tar.Header{Name: d, Typeflag: tar.TypeDir, Mode: 0o755})
	}
	tw.WriteHeader(&tar.Header{Name: "bin/busybox", Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(bb))})
	tw.Write(bb)
	for _, a := range []string{"sh", "sleep", "echo", "cat", "ls", "mkdir", "rm", "dd", "true", "false", "test", "touch", "head", "date"} {
		tw.WriteHeader(&tar.Header{Name: "bin/" + a, Typeflag: tar.TypeSymlink, Linkname: "busybox", Mode: 0o777})
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Event is a container event.
type Event struct {
	Action string // die, stop, kill, start, destroy, oom, ...
	ID     string
	Name   string
	Attrs  map[string]string
	Time   time.Time
}

// EventActions are the container events Events asks the engine for: the life-cycle changes the
// unexpected-stop alert reads. The engine filters the rest (exec, health checks, attach, create,
// network and image events) server-side, so an idle daemon is not woken by them.
var EventActions = []string{"start", "restart", "unpause", "stop", "kill", "die", "oom", "destroy"}

// Events streams container events until ctx ends or the connection drops (the error channel then
// says why).
func (c *Client) Events(ctx context.Context) (<-chan Event, <-chan error) {
	res := c.c.Events(ctx, client.EventsListOptions{Filters: client.Filters{}.Add("type", "container").Add("event", EventActions...)})
	out := make(chan Event)
	errs := make(chan error, 1)
	go func() {
		defer close(out)
		for {
			select {
			case m, ok := <-res.Messages:
				if !ok {
					errs <- errors.New("event stream closed")
					return
				}
				ev := Event{Action: string(m.Action), ID: m.Actor.ID, Name: m.Actor.Attributes["name"], Attrs: m.Actor.Attributes, Time: time.Unix(0, m.TimeNano)}
				select {
				case out <- ev:
				case <-ctx.Done():
					return
				}
			case err := <-res.Err:
				if err == nil {
					err = errors.New("event stream closed")
				}
				errs <- err
				return
			case <-ctx.Done():
				errs <- ctx.Err()
				return
			}
		}
	}()
	return out, errs
}

// Kill sends a signal to a container.
func (c *Client) Kill(ctx context.Context, id, signal string) error {
	if _, err := c.c.ContainerKill(ctx, id, client.ContainerKillOptions{Signal: signal}); err != nil {
		return fmt.Errorf("kill %s: %w", id, err)
	}
	return nil
}

// NetworkConnect attaches a container to a network.
func (c *Client) NetworkConnect(ctx context.Context, networkName, id string, ep *network.EndpointSettings) error {
	if _, err := c.c.NetworkConnect(ctx, networkName, client.NetworkConnectOptions{Container: id, EndpointConfig: ep}); err != nil {
		return fmt.Errorf("connect %s to %s: %w", id, networkName, err)
	}
	return nil
}
