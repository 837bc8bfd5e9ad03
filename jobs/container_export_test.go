package jobs

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wopr-network/opsd/internal/artifact"
	"github.com/wopr-network/opsd/internal/docker"
	"github.com/wopr-network/opsd/internal/docker/dockertest"
	"github.com/wopr-network/opsd/internal/state"
	"github.com/wopr-network/opsd/internal/storage"
	"github.com/wopr-network/opsd/internal/storage/local"
	"github.com/wopr-network/opsd/internal/storage/storagetest"
)

// archiveFiles reads a stored .tar.gz and returns its files' contents by path.
func archiveFiles(t *testing.T, store storage.Store, key string) map[string]string {
	t.Helper()
	m, err := artifact.ReadManifest(context.Background(), store, key)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := artifact.Open(context.Background(), store, m, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	out := map[string]string{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("%s is not a complete tar: %v", key, err)
		}
		if h.Typeflag == tar.TypeReg {
			out[h.Name] = "<large>"
			if h.Size < 1<<20 {
				b, _ := io.ReadAll(tr)
				out[h.Name] = string(b)
			}
		}
	}
	return out
}

func newExport(t *testing.T, dc *docker.Client, st *state.Store, store storage.Store, mutate func(*ContainerExportConfig)) *ContainerExport {
	cfg := ContainerExportConfig{NamePrefix: exportPrefix, Node: "n1", Now: func() time.Time { return day1 }}
	if mutate != nil {
		mutate(&cfg)
	}
	return NewContainerExport("export", cfg, dc, st, store)
}

func TestContainerExportNightlyOnDocker(t *testing.T) {
	dc := dockertest.Client(t)
	r := newRig(t)
	store, _ := local.New(t.TempDir())
	dockertest.Run(t, dc, exportPrefix+"a", nil, "echo hello-from-a > /data/hello.txt; sleep 3600")
	dockertest.Run(t, dc, exportPrefix+"b", map[string]string{"wopr.tier": "pro"}, "echo b > /data/b.txt; exit 0")
	dockertest.Run(t, dc, otherPrefix+"c", nil, "sleep 3600")
	time.Sleep(500 * time.Millisecond)
	o := r.runner.Run(context.Background(), newExport(t, dc, r.state, store, nil), time.Minute, TriggerManual)
	if !o.OK() {
		t.Fatalf("export: %v", o.Err)
	}
	keyA := "nightly/n1/" + exportPrefix + "a/" + exportPrefix + "a_20261125.tar.gz"
	files := archiveFiles(t, store, keyA)
	if files["data/hello.txt"] != "hello-from-a\n" {
		t.Fatalf("archive lacks the written file: %d files", len(files))
	}
	mb, err := artifact.ReadManifest(context.Background(), store, "nightly/n1/"+exportPrefix+"b/"+exportPrefix+"b_20261125.tar.gz")
	if err != nil || mb.Tier != "pro" || mb.Container == nil || mb.Compression != "gzip" || !strings.Contains(mb.Note, "volumes") {
		t.Fatalf("manifest of b (a stopped container): %+v %v", mb, err)
	}
	if all, _ := storage.ListAll(context.Background(), store, "nightly/n1/"+otherPrefix+"c/"); len(all) != 0 {
		t.Fatal("a container outside the name prefix was exported")
	}
	st, _ := r.state.GetBackup(context.Background(), exportPrefix+"a", time.Now(), time.Hour)
	if !st.LastBackupSuccess || *st.LastBackupPath != keyA {
		t.Fatalf("backup_status: %+v", st)
	}
	// The archive imports as an image.
	m, _ := artifact.ReadManifest(context.Background(), store, keyA)
	rc, _, _ := store.Get(context.Background(), keyA)
	id, err := dc.Import(context.Background(), rc, "")
	rc.Close()
	if err != nil {
		t.Fatalf("docker import of the backup: %v", err)
	}
	dc.RemoveImage(context.Background(), id)
	_ = m
}

func TestContainerExportChangedOnlySurvivesRestart(t *testing.T) {
	dc := dockertest.Client(t)
	r := newRig(t)
	store, _ := local.New(t.TempDir())
	id := dockertest.Run(t, dc, exportPrefix+"hot", nil, "echo one > /data/one.txt; sleep 3600")
	time.Sleep(500 * time.Millisecond)
	hot := func() *ContainerExport {
		return newExport(t, dc, r.state, store, func(c *ContainerExportConfig) { c.ChangedOnly = true })
	}
	ctx := context.Background()
	run := func() TargetResult {
		o := r.runner.Run(ctx, hot(), time.Minute, TriggerSchedule)
		if o.Err != nil {
			t.Fatal(o.Err)
		}
		return o.Result.Targets[0]
	}
	if tr := run(); tr.Status != TargetOK || tr.Key != "latest/"+exportPrefix+"hot/latest.tar.gz" {
		t.Fatalf("first run: %+v", tr)
	}
	if tr := run(); tr.Status != TargetSkipped || tr.SkipReason != "unchanged" {
		t.Fatalf("second run: %+v", tr)
	}
	// A write inside the container.
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Name: "two.txt", Mode: 0o644, Size: 4, Typeflag: tar.TypeReg})
	tw.Write([]byte("two\n"))
	tw.Close()
	if err := dc.CopyTo(ctx, id, "/data", &buf); err != nil {
		t.Fatal(err)
	}
	if tr := run(); tr.Status != TargetOK {
		t.Fatalf("after a write: %+v", tr)
	}
	if files := archiveFiles(t, store, "latest/"+exportPrefix+"hot/latest.tar.gz"); files["data/two.txt"] != "two\n" {
		t.Fatal("the new file is not in the hot backup")
	}
	// A new process on the same state database: the unchanged container is skipped.
	path := r.state.Path()
	r.state.Close()
	st, err := state.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	o := NewContainerExport("export", ContainerExportConfig{NamePrefix: exportPrefix, Node: "n1", ChangedOnly: true}, dc, st, store).Run
	res, err := o(ctx)
	if err != nil || res.Targets[0].Status != TargetSkipped {
		t.Fatalf("after restart: %+v %v", res.Targets, err)
	}
}

// removingEngine removes the container once its export stream has delivered some bytes, and
// ends the stream there, as an engine that restarts or drops the connection does. (Docker 20.10
// itself finishes the export of a container removed meanwhile: that archive is whole and kept.)
type removingEngine struct {
	*docker.Client
	victim string
}

type removeAfter struct {
	io.ReadCloser
	n    int
	once sync.Once
	kill func()
}

func (r *removeAfter) Read(p []byte) (int, error) {
	if r.n > 256<<10 {
		r.once.Do(r.kill)
		return 0, io.EOF // the stream ends mid-archive
	}
	n, err := r.ReadCloser.Read(p)
	r.n += n
	return n, err
}

func (e *removingEngine) Export(ctx context.Context, id string) (io.ReadCloser, error) {
	rc, err := e.Client.Export(ctx, id)
	if err != nil || id != e.victim {
		return rc, err
	}
	return &removeAfter{ReadCloser: rc, kill: func() { e.Client.Remove(context.Background(), id) }}, nil
}

func TestContainerRemovedMidExport(t *testing.T) {
	dc := dockertest.Client(t)
	r := newRig(t)
	store, _ := local.New(t.TempDir())
	victim := dockertest.Run(t, dc, exportPrefix+"victim", nil, "dd if=/dev/urandom of=/data/big bs=1M count=40 2>/dev/null; sleep 3600")
	dockertest.Run(t, dc, exportPrefix+"fine", nil, "echo fine > /data/f.txt; sleep 3600")
	time.Sleep(3 * time.Second)
	j := NewContainerExport("export", ContainerExportConfig{NamePrefix: exportPrefix, Node: "n1", Now: func() time.Time { return day1 }}, &removingEngine{dc, victim}, r.state, store)
	o := r.runner.Run(context.Background(), j, time.Minute, TriggerManual)
	var bad, good TargetResult
	for _, tr := range o.Result.Targets {
		if tr.Name == exportPrefix+"victim" {
			bad = tr
		} else {
			good = tr
		}
	}
	if bad.Status != TargetFailed || good.Status != TargetOK {
		t.Fatalf("victim %+v, fine %+v", bad, good)
	}
	if !strings.Contains(bad.Err.Error(), "vanished during its export") || !strings.Contains(bad.Err.Error(), "tar stream ended before the end of the archive") {
		t.Fatalf("victim error: %v", bad.Err)
	}
	key := "nightly/n1/" + exportPrefix + "victim/" + exportPrefix + "victim_20261125.tar.gz"
	if _, err := store.Stat(context.Background(), key); !errors.Is(err, storage.ErrNotFound) {
		t.Fatal("a partial export is stored at the key")
	}
	if _, err := store.Stat(context.Background(), artifact.ManifestKey(key)); !errors.Is(err, storage.ErrNotFound) {
		t.Fatal("a manifest exists for the partial export")
	}
}

// failingStore fails every upload after reading a little.
type failingStore struct{ storage.Store }

func (f failingStore) Put(ctx context.Context, key string, r io.Reader, o storage.PutOptions) (storage.ObjectInfo, error) {
	io.CopyN(io.Discard, r, 4096)
	return storage.ObjectInfo{}, errors.New("store unavailable")
}

func TestPauseAlwaysUnpauses(t *testing.T) {
	dc := dockertest.Client(t)
	r := newRig(t)
	store, _ := local.New(t.TempDir())
	id := dockertest.Run(t, dc, exportPrefix+"paused", nil, "sleep 3600")
	time.Sleep(300 * time.Millisecond)
	j := newExport(t, dc, r.state, failingStore{store}, func(c *ContainerExportConfig) { c.Pause = true })
	o := r.runner.Run(context.Background(), j, time.Minute, TriggerManual)
	if o.OK() {
		t.Fatal("upload to a failing store succeeded")
	}
	d, err := dc.Inspect(context.Background(), id, false)
	if err != nil || !d.Running || d.Paused {
		t.Fatalf("after a failed paused export the container is running=%v paused=%v (%v)", d.Running, d.Paused, err)
	}
	// And on success too.
	j = newExport(t, dc, r.state, store, func(c *ContainerExportConfig) { c.Pause = true; c.Only = []string{exportPrefix + "paused"} })
	if o := r.runner.Run(context.Background(), j, time.Minute, TriggerManual); !o.OK() {
		t.Fatal(o.Err)
	}
	if d, _ := dc.Inspect(context.Background(), id, false); !d.Running || d.Paused {
		t.Fatal("container left paused")
	}
}

func TestTarVerifierRejectsTruncatedStream(t *testing.T) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Name: "f", Mode: 0o644, Size: 10000, Typeflag: tar.TypeReg})
	tw.Write(bytes.Repeat([]byte("x"), 10000))
	tw.Close()
	full := buf.Bytes()
	if _, err := io.Copy(io.Discard, artifact.NewTarVerifier(bytes.NewReader(full))); err != nil {
		t.Fatalf("complete tar rejected: %v", err)
	}
	if _, err := io.Copy(io.Discard, artifact.NewTarVerifier(bytes.NewReader(full[:5000]))); err == nil {
		t.Fatal("truncated tar accepted")
	}
}

func TestDirSnapshotUnderWrites(t *testing.T) {
	base := t.TempDir()
	for _, inst := range []string{"inst-1", "inst-2"} {
		os.MkdirAll(filepath.Join(base, inst, "memory"), 0o755)
		os.WriteFile(filepath.Join(base, inst, "memory", "notes.md"), []byte("hello "+inst), 0o644)
		os.Symlink("memory/notes.md", filepath.Join(base, inst, "latest"))
	}
	// A file appended to while the snapshot reads it.
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		f, _ := os.OpenFile(filepath.Join(base, "inst-1", "log.txt"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		defer f.Close()
		for {
			select {
			case <-stop:
				return
			default:
				f.Write(bytes.Repeat([]byte("line\n"), 1000))
			}
		}
	}()
	time.Sleep(50 * time.Millisecond)
	store, _ := local.New(t.TempDir())
	r := newRig(t)
	j := NewDirSnapshot("wopr-home", DirSnapshotConfig{BaseDir: base, Node: "n1", Now: func() time.Time { return day1 }}, store)
	o := r.runner.Run(context.Background(), j, time.Minute, TriggerManual)
	close(stop)
	<-done
	if !o.OK() {
		t.Fatalf("snapshot under writes: %v", o.Err)
	}
	files := archiveFiles(t, store, "nightly/n1/inst-1/inst-1_20261125.tar.gz")
	if files["inst-1/memory/notes.md"] != "hello inst-1" {
		t.Fatalf("archive: %v", keys(files))
	}
	if _, ok := files["inst-1/log.txt"]; !ok {
		t.Fatal("the file being written is missing")
	}
	st, _ := r.state.GetBackup(context.Background(), "inst-2", time.Now(), time.Hour)
	if !st.LastBackupSuccess || st.Kind != "snapshot" {
		t.Fatalf("status: %+v", st)
	}
}

func keys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// TestContainerExportOnSeaweedFS: nightly and hot runs on the integration tier's S3 engine write
// the REFERENCE.md keys with manifests; downloads match their SHA-256 and import with docker.
func TestContainerExportOnSeaweedFS(t *testing.T) {
	cfg := storagetest.RealS3(t)
	dc := dockertest.Client(t)
	store := storagetest.NewS3(t, cfg)
	r := newRig(t)
	dockertest.Run(t, dc, exportPrefix+"s3", map[string]string{"wopr.tier": "enterprise"}, "echo s3 > /data/s3.txt; sleep 3600")
	time.Sleep(300 * time.Millisecond)
	ctx := context.Background()
	for _, hot := range []bool{false, true} {
		j := newExport(t, dc, r.state, store, func(c *ContainerExportConfig) { c.ChangedOnly = hot; c.Only = []string{exportPrefix + "s3"} })
		if o := r.runner.Run(ctx, j, time.Minute, TriggerManual); !o.OK() {
			t.Fatalf("hot=%v: %v", hot, o.Err)
		}
	}
	for _, key := range []string{"nightly/n1/" + exportPrefix + "s3/" + exportPrefix + "s3_20261125.tar.gz", "latest/" + exportPrefix + "s3/latest.tar.gz"} {
		m, err := artifact.ReadManifest(ctx, store, key)
		if err != nil || m.Tier != "enterprise" {
			t.Fatalf("%s: %+v %v", key, m, err)
		}
		rc, _, _ := store.Get(ctx, key)
		sum, n, err := sha256Reader(rc)
		rc.Close()
		if err != nil || sum != m.SHA256 || n != m.Size {
			t.Fatalf("%s: sha %s (%d bytes), manifest %s (%d)", key, sum, n, m.SHA256, m.Size)
		}
		rc, _, _ = store.Get(ctx, key)
		id, err := dc.Import(ctx, rc, "")
		rc.Close()
		if err != nil {
			t.Fatalf("docker import of %s: %v", key, err)
		}
		dc.RemoveImage(ctx, id)
	}
}

func sha256Reader(r io.Reader) (string, int64, error) {
	h := sha256.New()
	n, err := io.Copy(h, r)
	return hex.EncodeToString(h.Sum(nil)), n, err
}

// exportPrefix names this run's test containers (unique on a shared engine).
var exportPrefix = dockertest.Unique("tenant_opsdtest_")

// otherPrefix names this run's test containers (unique on a shared engine).
var otherPrefix = dockertest.Unique("other_opsdtest_")
