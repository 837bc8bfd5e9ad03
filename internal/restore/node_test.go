package restore

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"

	"github.com/wopr-network/opsd/internal/artifact"
	"github.com/wopr-network/opsd/internal/docker"
	"github.com/wopr-network/opsd/internal/layout"
	"github.com/wopr-network/opsd/internal/storage"
	"github.com/wopr-network/opsd/internal/storage/local"
)

// fakeNodeEngine is an engine in memory whose imports and starts tests can hold.
type fakeNodeEngine struct {
	mu         sync.Mutex
	containers map[string]*docker.Details // by name
	images     map[string]bool
	removed    []string // images removed
	// importing, when set, is called once an import read its whole stream; start when a start
	// begins (both may block; an error fails the call).
	importing func(ref string) error
	start     func(name string) error
}

func newFakeNodeEngine() *fakeNodeEngine {
	return &fakeNodeEngine{containers: map[string]*docker.Details{}, images: map[string]bool{}}
}

func (e *fakeNodeEngine) byID(id string) *docker.Details {
	for _, c := range e.containers {
		if c.ID == id || c.Name == id {
			return c
		}
	}
	return nil
}

func (e *fakeNodeEngine) Inspect(ctx context.Context, id string, size bool) (docker.Details, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if c := e.byID(id); c != nil {
		return *c, nil
	}
	return docker.Details{}, fmt.Errorf("no such container %s: %w", id, cerrdefs.ErrNotFound)
}

func (e *fakeNodeEngine) Import(ctx context.Context, r io.Reader, ref string) (string, error) {
	if _, err := io.Copy(io.Discard, r); err != nil {
		return "", err
	}
	if e.importing != nil {
		if err := e.importing(ref); err != nil {
			return "", err
		}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.images[ref] = true
	return ref, nil
}

func (e *fakeNodeEngine) CreateNetworked(ctx context.Context, name string, cfg *container.Config, host *container.HostConfig, nets *network.NetworkingConfig) (string, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.containers[name] = &docker.Details{ID: "id-" + name, Name: name, Image: cfg.Image}
	return "id-" + name, nil
}

func (e *fakeNodeEngine) NetworkConnect(ctx context.Context, networkName, id string, ep *network.EndpointSettings) error {
	return nil
}

func (e *fakeNodeEngine) EnsureNetwork(ctx context.Context, name string, ns docker.NetworkSpec) (bool, error) {
	return false, nil
}

func (e *fakeNodeEngine) EnsureVolume(ctx context.Context, vs docker.VolumeSpec) (bool, error) {
	return false, nil
}

func (e *fakeNodeEngine) Start(ctx context.Context, id string) error {
	e.mu.Lock()
	c := e.byID(id)
	e.mu.Unlock()
	if c == nil {
		return fmt.Errorf("start %s: %w", id, cerrdefs.ErrNotFound)
	}
	if e.start != nil {
		if err := e.start(c.Name); err != nil {
			return err
		}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	c.Running = true
	return nil
}

func (e *fakeNodeEngine) Remove(ctx context.Context, id string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if c := e.byID(id); c != nil {
		delete(e.containers, c.Name)
	}
	return nil
}

func (e *fakeNodeEngine) RemoveImage(ctx context.Context, id string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.images, id)
	e.removed = append(e.removed, id)
	return nil
}

// lostNode stores nightly exports of a node "lost" holding containers of names (a tiny tar each,
// a running spec), as the node's export job writes them.
func lostNode(t *testing.T, names ...string) storage.Store {
	t.Helper()
	store, err := local.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range names {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		tw.WriteHeader(&tar.Header{Name: "data/" + name, Mode: 0o644, Size: int64(len(name)), Typeflag: tar.TypeReg})
		tw.Write([]byte(name))
		tw.Close()
		spec, _ := json.Marshal(docker.Spec{Version: docker.SpecVersion, Name: name, Running: true,
			Config: &container.Config{Cmd: []string{"sleep", "3600"}}, HostConfig: &container.HostConfig{NetworkMode: "none"}})
		sealed, err := artifact.Seal(spec, nil)
		if err != nil {
			t.Fatal(err)
		}
		key := "nightly/lost/" + name + "/" + name + "_20261130.tar.gz"
		if _, err := artifact.Store(context.Background(), store, &buf, artifact.Options{Compression: artifact.Gzip},
			artifact.Manifest{Key: key, Kind: "container", Target: name, Node: "lost", Spec: sealed}); err != nil {
			t.Fatal(err)
		}
	}
	return store
}

// recv waits for a value the code under test must send; the generous limit only turns a
// scheduling deadlock into a failure instead of a hung test (no assertion on elapsed time).
func recv[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(time.Minute):
		t.Fatalf("never happened: %s", what)
		panic("unreachable")
	}
}

// A container's start and probe hold no import slot, and its probe holds no start slot: with one
// of each, the second container is imported while the first is starting, and created and started
// while the first is still being probed. Every container still reports every phase.
func TestRestoreNodeStartAndProbeHoldNoImportSlot(t *testing.T) {
	store := lostNode(t, "tenant_a", "tenant_b", "tenant_c")
	e := newFakeNodeEngine()
	imported, starting, probing := make(chan string, 3), make(chan string, 3), make(chan string, 3)
	releaseImport, releaseStart, releaseProbe := map[string]chan struct{}{}, map[string]chan struct{}{}, map[string]chan struct{}{}
	for _, n := range []string{"tenant_a", "tenant_b", "tenant_c"} {
		releaseImport[n], releaseStart[n], releaseProbe[n] = make(chan struct{}), make(chan struct{}), make(chan struct{})
	}
	e.importing = func(ref string) error {
		name := strings.Split(strings.TrimPrefix(ref, "opsd-restore/"), ":")[0]
		imported <- name
		<-releaseImport[name]
		return nil
	}
	e.start = func(name string) error {
		starting <- name
		<-releaseStart[name]
		return nil
	}
	var mu sync.Mutex
	var progress []string
	done := make(chan NodeReport)
	go func() {
		rep, err := RestoreNode(context.Background(), NodeOptions{Store: store, Layout: layout.Default(), Engine: e, FromNode: "lost", Parallel: 1, StartParallel: 1,
			Probe: time.Hour, // never elapses: the probe's wait is the test's
			wait: func(ctx context.Context, name string, d time.Duration) error {
				probing <- name
				<-releaseProbe[name]
				return nil
			},
			Progress: func(r RecreateResult) {
				mu.Lock()
				progress = append(progress, r.Outcome+" "+r.Name)
				mu.Unlock()
			}})
		if err != nil {
			t.Error(err)
		}
		done <- rep
	}()
	first := recv(t, imported, "the first import")
	close(releaseImport[first])
	if got := recv(t, starting, "the first start"); got != first {
		t.Fatalf("started %s, imported %s", got, first)
	}
	// The first is starting (held): the next import goes on.
	second := recv(t, imported, "an import while the first container is starting")
	close(releaseStart[first])
	if got := recv(t, probing, "the first probe"); got != first {
		t.Fatalf("probing %s, want %s", got, first)
	}
	// The first is being probed (held): the second is created and started meanwhile, and the
	// third imported.
	close(releaseImport[second])
	if got := recv(t, starting, "a start while the first container is probed"); got != second {
		t.Fatalf("started %s, want %s", got, second)
	}
	third := recv(t, imported, "the third import while the first is probed and the second starting")
	close(releaseImport[third])
	close(releaseStart[second])
	if got := recv(t, probing, "the second probe"); got != second {
		t.Fatalf("probing %s, want %s", got, second)
	}
	if got := recv(t, starting, "the third start"); got != third {
		t.Fatalf("started %s, want %s", got, third)
	}
	close(releaseStart[third])
	recv(t, probing, "the third probe")
	for _, n := range []string{third, first, second} {
		close(releaseProbe[n])
	}
	rep := recv(t, done, "the node restore's end")
	if rep.Restored != 3 || rep.Failed != 0 || len(progress) != 3 {
		t.Fatalf("report %+v, progress %v", rep, progress)
	}
	for _, c := range rep.Containers {
		for _, p := range RecreatePhases {
			if _, ok := c.Phases[p]; !ok {
				t.Errorf("%s lacks phase %s: %v", c.Name, p, c.Phases)
			}
		}
		if !c.Running || c.Seconds <= 0 {
			t.Errorf("%s: %+v", c.Name, c)
		}
	}
}

// In the staged pipeline each container still fails on its own and leaves nothing behind, and a
// re-run skips those restored from the same artifact and retries the failed one.
func TestRestoreNodeStagedFailureIsolationAndResume(t *testing.T) {
	store := lostNode(t, "tenant_a", "tenant_b", "tenant_c", "tenant_d")
	e := newFakeNodeEngine()
	boom := errors.New("start refused")
	fail := map[string]bool{"tenant_b": true}
	var mu sync.Mutex
	e.start = func(name string) error {
		mu.Lock()
		defer mu.Unlock()
		if fail[name] {
			return boom
		}
		return nil
	}
	// The probe finds tenant_c stopped (it exited).
	o := NodeOptions{Store: store, Layout: layout.Default(), Engine: e, FromNode: "lost", Parallel: 2, StartParallel: 1, Probe: time.Hour,
		wait: func(ctx context.Context, name string, d time.Duration) error {
			if name == "tenant_c" {
				e.mu.Lock()
				e.containers[name].Running = false
				e.mu.Unlock()
			}
			return nil
		}}
	rep, err := RestoreNode(context.Background(), o)
	if err == nil || rep.Restored != 2 || rep.Failed != 2 {
		t.Fatalf("first run: %v %+v", err, rep)
	}
	for _, c := range rep.Containers {
		switch c.Name {
		case "tenant_b":
			if c.Outcome != "failed" || !strings.Contains(c.Error, "start refused") {
				t.Fatalf("tenant_b: %+v", c)
			}
		case "tenant_c":
			if c.Outcome != "failed" || !strings.Contains(c.Error, "did not keep running") {
				t.Fatalf("tenant_c: %+v", c)
			}
		}
	}
	e.mu.Lock()
	for _, n := range []string{"tenant_b", "tenant_c"} {
		if _, ok := e.containers[n]; ok {
			t.Errorf("failed %s left its container", n)
		}
		for ref := range e.images {
			if strings.Contains(ref, "/"+n+":") {
				t.Errorf("failed %s left its image %s", n, ref)
			}
		}
	}
	e.mu.Unlock()

	// The start works now, and tenant_c keeps running: the re-run skips a and d.
	mu.Lock()
	fail["tenant_b"] = false
	mu.Unlock()
	o.wait = func(ctx context.Context, name string, d time.Duration) error { return nil }
	var lines []string
	o.Progress = func(r RecreateResult) { lines = append(lines, r.Outcome+" "+r.Name) }
	rep, err = RestoreNode(context.Background(), o)
	if err != nil || rep.Restored != 2 || rep.Skipped != 2 || len(lines) != 4 {
		t.Fatalf("re-run: %v %+v %v", err, rep, lines)
	}
}

// A node restore cut while an imported container waits for a start slot removes that image and
// reports the container failed.
func TestRestoreNodeCanceledWhileWaitingForAStartSlot(t *testing.T) {
	store := lostNode(t, "tenant_a", "tenant_b")
	e := newFakeNodeEngine()
	ctx, cancel := context.WithCancel(context.Background())
	imported := make(chan string, 2)
	e.importing = func(ref string) error {
		imported <- ref
		return nil
	}
	starting := make(chan string, 2)
	e.start = func(name string) error {
		starting <- name
		<-ctx.Done()
		return ctx.Err()
	}
	done := make(chan NodeReport)
	go func() {
		rep, _ := RestoreNode(ctx, NodeOptions{Store: store, Layout: layout.Default(), Engine: e, FromNode: "lost", Parallel: 2, StartParallel: 1, Probe: time.Hour})
		done <- rep
	}()
	recv(t, imported, "an import")
	recv(t, imported, "the other import")
	recv(t, starting, "a start") // holds the only start slot: the other waits for it
	cancel()
	rep := recv(t, done, "the node restore's end")
	if rep.Failed != 2 {
		t.Fatalf("report %+v", rep)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.images) != 0 || len(e.containers) != 0 || len(e.removed) != 2 {
		t.Fatalf("left images %v, containers %v (removed %v)", e.images, e.containers, e.removed)
	}
}

// TestRestoreNodeSurvivesAPanic: a panic in one container's restore (a bug; here in the engine's
// import) fails that container and releases its slot: with one import slot the node's other
// containers are still restored, and opsd does not crash.
func TestRestoreNodeSurvivesAPanic(t *testing.T) {
	store := lostNode(t, "tenant_a", "tenant_b", "tenant_c")
	e := newFakeNodeEngine()
	e.importing = func(ref string) error {
		if strings.Contains(ref, "tenant_b") {
			panic("a bug in the import")
		}
		return nil
	}
	rep, err := RestoreNode(context.Background(), NodeOptions{Store: store, Layout: layout.Default(), Engine: e, FromNode: "lost", Parallel: 1, Probe: time.Millisecond,
		wait: func(context.Context, string, time.Duration) error { return nil }})
	if err == nil || rep.Restored != 2 || rep.Failed != 1 {
		t.Fatalf("err %v, report %+v", err, rep.Containers)
	}
	for _, c := range rep.Containers {
		if c.Name == "tenant_b" && (c.Outcome != "failed" || !strings.Contains(c.Error, "a bug in the import")) {
			t.Fatalf("tenant_b: %+v", c)
		}
	}
}
