package restore

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"

	"github.com/wopr-network/opsd/internal/artifact"
	"github.com/wopr-network/opsd/internal/docker"
	"github.com/wopr-network/opsd/internal/docker/dockertest"
	"github.com/wopr-network/opsd/internal/storage"
	"github.com/wopr-network/opsd/internal/storage/local"
)

// importRecorder remembers every image id the engine's import returned.
type importRecorder struct {
	*docker.Client
	mu  sync.Mutex
	ids []string
}

func (r *importRecorder) Import(ctx context.Context, rd io.Reader, ref string) (string, error) {
	id, err := r.Client.Import(ctx, rd, ref)
	if id != "" {
		r.mu.Lock()
		r.ids = append(r.ids, id)
		r.mu.Unlock()
	}
	return id, err
}

// lostTenant stores a container export of the test image's root filesystem with a captured spec
// (a running `sleep`), as a lost node's nightly would hold it.
func lostTenant(t *testing.T, store storage.Store, name string) artifact.Manifest {
	t.Helper()
	spec, _ := json.Marshal(docker.Spec{Version: docker.SpecVersion, Name: name, Running: true,
		Config:     &container.Config{Cmd: []string{"/bin/sh", "-c", "exec sleep 3600"}, Labels: map[string]string{dockertest.Label: dockertest.RunID}},
		HostConfig: &container.HostConfig{NetworkMode: "none"}})
	sealed, err := artifact.Seal(spec, nil)
	if err != nil {
		t.Fatal(err)
	}
	key := "nightly/lost/" + name + "/" + name + "_20261130.tar.gz"
	m, err := artifact.Store(context.Background(), store, bytes.NewReader(dockertest.RootFS(t)), artifact.Options{Compression: artifact.Gzip},
		artifact.Manifest{Key: key, Kind: "container", Target: name, Node: "lost", Spec: sealed})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func imageExists(t *testing.T, ref string) bool {
	t.Helper()
	out, err := exec.Command("docker", "image", "inspect", "--format", "{{.Id}}", ref).CombinedOutput()
	if err != nil && !strings.Contains(strings.ToLower(string(out)), "no such image") {
		t.Fatalf("docker image inspect %s: %v: %s", ref, err, out)
	}
	return err == nil
}

// A restore from an artifact whose bytes do not match its manifest's SHA-256 leaves no container
// and no image behind; the engine never even completes an image from the unverified stream (the
// end of the tar is held back until the checksum matched). The same artifact, intact, restores.
func TestRecreateStreamedImportRefusesChecksumMismatch(t *testing.T) {
	dc := dockertest.Client(t)
	ctx := context.Background()
	store, _ := local.New(t.TempDir())
	for _, tc := range []struct {
		name   string
		tamper func(t *testing.T, m artifact.Manifest)
	}{
		// The stored archive is a perfectly good tar the engine would import: only the checksum
		// tells it is not the one the manifest describes.
		{"manifest-sha", func(t *testing.T, m artifact.Manifest) {
			m.SHA256 = strings.Repeat("0", 64)
			if err := artifact.WriteManifest(ctx, store, m); err != nil {
				t.Fatal(err)
			}
		}},
		// One byte changed in the stored bytes (same size).
		{"stored-byte", func(t *testing.T, m artifact.Manifest) {
			rc, _, err := store.Get(ctx, m.Key)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(rc)
			rc.Close()
			b[len(b)/2] ^= 0x40
			if _, err := store.Put(ctx, m.Key, bytes.NewReader(b), storage.PutOptions{}); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			name := dockertest.Unique("tenant_node-perf_") + tc.name
			t.Cleanup(func() { dc.Remove(context.Background(), name) })
			m := lostTenant(t, store, name)
			ref := ImageRef(name, m)
			t.Cleanup(func() { dc.RemoveImage(context.Background(), ref) })
			tc.tamper(t, m)
			eng := &importRecorder{Client: dc}
			res := Recreate(ctx, RecreateOptions{Store: store, Engine: eng, Key: m.Key, Probe: 100 * time.Millisecond})
			if res.Outcome != "failed" {
				t.Fatalf("outcome %q, want failed: %+v", res.Outcome, res)
			}
			if !strings.Contains(res.Error, artifact.ErrChecksum.Error()) {
				t.Fatalf("error %q does not name the checksum mismatch", res.Error)
			}
			if len(eng.ids) > 0 {
				t.Fatalf("the engine completed image %v from unverified bytes", eng.ids)
			}
			if _, err := dc.Inspect(ctx, name, false); !docker.IsNotFound(err) {
				t.Fatalf("a container %s exists after a failed verification: %v", name, err)
			}
			if imageExists(t, ref) {
				t.Fatalf("image %s exists after a failed verification", ref)
			}
		})
	}
	t.Run("intact", func(t *testing.T) {
		name := dockertest.Unique("tenant_node-perf_") + "intact"
		t.Cleanup(func() { dc.Remove(context.Background(), name) })
		m := lostTenant(t, store, name)
		ref := ImageRef(name, m)
		t.Cleanup(func() { dc.RemoveImage(context.Background(), ref) })
		var phases []string
		res := Recreate(ctx, RecreateOptions{Store: store, Engine: dc, Key: m.Key, Probe: 100 * time.Millisecond})
		if res.Outcome != "restored" || !res.Running {
			t.Fatalf("restore of the intact artifact: %+v", res)
		}
		for _, p := range RecreatePhases {
			if _, ok := res.Phases[p]; ok {
				phases = append(phases, p)
			}
		}
		if strings.Join(phases, ",") != "download,verify,import,create,start,probe" {
			t.Fatalf("phases %v", res.Phases)
		}
		d, err := dc.Inspect(ctx, name, false)
		if err != nil || !d.Running || d.Image != ref {
			t.Fatalf("restored container: %+v %v", d, err)
		}
	})
}

// ImportVerified fails with ErrChecksum and imports nothing when the stored size differs.
func TestImportVerifiedSizeMismatch(t *testing.T) {
	dc := dockertest.Client(t)
	ctx := context.Background()
	store, _ := local.New(t.TempDir())
	name := dockertest.Unique("tenant_node-perf_") + "size"
	m := lostTenant(t, store, name)
	m.Size++
	eng := &importRecorder{Client: dc}
	ref := ImageRef(name, m)
	if _, err := ImportVerified(ctx, store, eng, m, nil, ref, nil, nil); !errors.Is(err, artifact.ErrChecksum) {
		t.Fatalf("err %v, want a checksum mismatch", err)
	}
	if len(eng.ids) > 0 || imageExists(t, ref) {
		t.Fatalf("an image was imported: %v", eng.ids)
	}
}

// eagerEngine imports like an engine that stops reading at the tar's end-of-archive marker and
// completes the image right there, without waiting for the end of the stream.
type eagerEngine struct {
	completed, removed []string
}

func (e *eagerEngine) Import(ctx context.Context, r io.Reader, ref string) (string, error) {
	tr := tar.NewReader(r)
	for {
		_, err := tr.Next()
		if err == io.EOF {
			e.completed = append(e.completed, ref)
			return "sha256:eager", nil
		}
		if err != nil {
			return "", err
		}
	}
}

func (e *eagerEngine) RemoveImage(ctx context.Context, id string) error {
	e.removed = append(e.removed, id)
	return nil
}

// Even an engine that would complete an image as soon as it sees the end of the tar gets it only
// after the checksum matched: the end of the stream is held back until then.
func TestImportVerifiedHoldsTheEndBackUntilVerified(t *testing.T) {
	ctx := context.Background()
	store, _ := local.New(t.TempDir())
	m := lostTenant(t, store, "tenant_node-perf_eager")
	e := &eagerEngine{}
	var phases []string
	img, err := ImportVerified(ctx, store, e, m, nil, "opsd-restore/eager:1", nil, func(p string) { phases = append(phases, p) })
	if err != nil || img != "sha256:eager" || len(e.completed) != 1 || strings.Join(phases, ",") != "verify,import" {
		t.Fatalf("intact: image %q, err %v, completed %v, phases %v", img, err, e.completed, phases)
	}
	m.SHA256 = strings.Repeat("0", 64)
	e = &eagerEngine{}
	img, err = ImportVerified(ctx, store, e, m, nil, "opsd-restore/eager:2", nil, nil)
	if !errors.Is(err, artifact.ErrChecksum) || img != "" {
		t.Fatalf("tampered: image %q, err %v", img, err)
	}
	if len(e.completed) > 0 {
		t.Fatalf("the engine completed %v before the checksum was checked", e.completed)
	}
	if !slices.Contains(e.removed, "opsd-restore/eager:2") {
		t.Fatalf("the unverified reference was not removed: %v", e.removed)
	}
}

// rejectingEngine fails the import after reading the first bytes of the stream.
type rejectingEngine struct{ eagerEngine }

var errRejected = errors.New("engine rejects the layer")

func (e *rejectingEngine) Import(ctx context.Context, r io.Reader, ref string) (string, error) {
	io.ReadFull(r, make([]byte, 512))
	return "", errRejected
}

// ctxStore's readers fail once the context of their Get ends, as S3 downloads do.
type ctxStore struct{ storage.Store }

type ctxReader struct {
	io.ReadCloser
	ctx context.Context
}

func (r ctxReader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	return r.ReadCloser.Read(p)
}

func (s ctxStore) Get(ctx context.Context, key string) (io.ReadCloser, storage.ObjectInfo, error) {
	rc, info, err := s.Store.Get(ctx, key)
	if err != nil {
		return nil, info, err
	}
	return ctxReader{rc, ctx}, info, nil
}

// When the engine fails first, the rest of the object is still hashed: a changed object is
// reported as a checksum mismatch, an intact one with the engine's error; no image either way.
func TestImportVerifiedEngineFailsFirst(t *testing.T) {
	ctx := context.Background()
	dir, _ := local.New(t.TempDir())
	store := ctxStore{dir}
	m := lostTenant(t, store, "tenant_node-perf_reject")
	e := &rejectingEngine{}
	if _, err := ImportVerified(ctx, store, e, m, nil, "opsd-restore/reject:1", nil, nil); !errors.Is(err, errRejected) || errors.Is(err, artifact.ErrChecksum) {
		t.Fatalf("intact object: %v, want the engine's error", err)
	}
	m.SHA256 = strings.Repeat("0", 64)
	if _, err := ImportVerified(ctx, store, e, m, nil, "opsd-restore/reject:2", nil, nil); !errors.Is(err, artifact.ErrChecksum) {
		t.Fatalf("changed object: %v, want a checksum mismatch", err)
	}
	if !slices.Contains(e.removed, "opsd-restore/reject:1") || !slices.Contains(e.removed, "opsd-restore/reject:2") {
		t.Fatalf("the references were not removed: %v", e.removed)
	}
}
