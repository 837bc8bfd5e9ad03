package jobs

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wopr-network/opsd/internal/artifact"
	"github.com/wopr-network/opsd/internal/artifact/artifacttest"
	"github.com/wopr-network/opsd/internal/demo"
	"github.com/wopr-network/opsd/internal/docker"
	"github.com/wopr-network/opsd/internal/docker/dockertest"
	"github.com/wopr-network/opsd/internal/storage"
	"github.com/wopr-network/opsd/internal/storage/storagetest"
)

// dockerProxy is a unix socket in front of the Docker engine's. Once armed, it cuts every
// connection after limit more bytes came back from the engine: the Docker connection drops
// mid-export, as when the engine restarts or the socket's peer dies.
type dockerProxy struct {
	path   string
	ln     net.Listener
	conns  connSet
	armed  atomic.Bool
	left   atomic.Int64
	killed atomic.Bool
}

func newDockerProxy(t *testing.T) *dockerProxy {
	t.Helper()
	upstream := "/var/run/docker.sock"
	if h := os.Getenv("DOCKER_HOST"); strings.HasPrefix(h, "unix://") {
		upstream = strings.TrimPrefix(h, "unix://")
	} else if h != "" {
		t.Skipf("DOCKER_HOST %s is not a unix socket", h)
	}
	dir, err := os.MkdirTemp("", "opsd-dp-") // unix socket paths must be short
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	p := &dockerProxy{path: filepath.Join(dir, "d.sock")}
	p.ln, err = net.Listen("unix", p.path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.ln.Close(); p.kill() })
	go serveRelay(p.ln, "unix", upstream, &p.conns, copyClose, func(c, u net.Conn) { pump(c, u, p.stop) })
	return p
}

// stop counts the engine's answers once armed and cuts every connection past the limit.
func (p *dockerProxy) stop(chunk []byte) bool {
	if p.armed.Load() && p.left.Add(-int64(len(chunk))) < 0 {
		p.kill()
		return true
	}
	return false
}

func (p *dockerProxy) arm(limit int64) { p.left.Store(limit); p.armed.Store(true) }

// kill cuts every open connection; new ones pass again (the engine "comes back").
func (p *dockerProxy) kill() {
	p.killed.Store(true)
	p.armed.Store(false)
	p.conns.closeAll()
}

// TestHotExportCutMidStreamKeepsLatest: the Docker connection drops mid-export of a hot backup
// (a proxy in front of the engine's socket is killed after 8 MiB, under a real multipart upload
// of 5 MiB parts). latest/{c}/latest.tar.gz must still be the previous good export with its
// manifest, and the run must fail.
func TestHotExportCutMidStreamKeepsLatest(t *testing.T) {
	dc := dockertest.Client(t)
	proxy := newDockerProxy(t)
	pc, err := docker.New("unix://" + proxy.path)
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	name := fmt.Sprintf("tenant_opsdcut_%08x", rand.Uint32())
	dockertest.Run(t, dc, name, nil, "dd if=/dev/urandom of=/data/big bs=1M count=24 2>/dev/null; echo ok > /data/ready; sleep 3600")
	waitContainerData(t, dc, name, 24<<20)
	t.Run("in-process-s3", func(t *testing.T) {
		cutExport(t, pc, proxy, name, storagetest.NewS3(t, storagetest.NewFakeS3(t).Config))
	})
	t.Run("seaweedfs", func(t *testing.T) {
		cutExport(t, pc, proxy, name, storagetest.NewS3(t, storagetest.RealS3(t)))
	})
}

func cutExport(t *testing.T, pc *docker.Client, proxy *dockerProxy, name string, store storage.Store) {
	ctx := context.Background()
	key := "latest/" + name + "/latest.tar.gz"
	hot := func(c *ContainerExportConfig) {
		c.ChangedOnly = true
		c.NamePrefix = "tenant_opsdcut_"
		c.Only = []string{name}
	}

	r := newRig(t)
	if o := r.runner.Run(ctx, newExport(t, pc, r.state, store, hot), time.Minute, TriggerManual); !o.OK() {
		t.Fatalf("first hot export: %v", o.Err)
	}
	good, err := artifact.ReadManifest(ctx, store, key)
	if err != nil {
		t.Fatalf("manifest of the good export: %v", err)
	}

	// A fresh state database: the container counts as changed and is exported again, through a
	// connection that drops after 8 MiB.
	r2 := newRig(t)
	proxy.killed.Store(false)
	proxy.arm(8 << 20)
	o := r2.runner.Run(ctx, newExport(t, pc, r2.state, store, hot), time.Minute, TriggerManual)
	if o.OK() {
		t.Fatal("an export whose Docker connection dropped mid-stream succeeded")
	}
	if !proxy.killed.Load() {
		t.Fatal("the proxy was never cut: the test did not inject the fault")
	}
	t.Logf("run error: %v", o.Err)
	m, err := artifact.ReadManifest(ctx, store, key)
	if err != nil {
		t.Fatalf("latest.tar.gz's manifest after the cut: %v", err)
	}
	if m.SHA256 != good.SHA256 || m.Size != good.Size {
		t.Fatalf("latest.tar.gz replaced: %d bytes %s, the good one was %d bytes %s", m.Size, m.SHA256, good.Size, good.SHA256)
	}
	// The good export is complete: a full read as gzip + tar with the end marker.
	rc, err := artifact.Open(ctx, store, m, nil)
	if err != nil {
		t.Fatal(err)
	}
	n, err := artifact.VerifyTar(rc)
	rc.Close()
	if err != nil || n == 0 {
		t.Fatalf("latest.tar.gz after the cut: %d entries, %v", n, err)
	}
	if got := artifacttest.Check(t, store, ""); got != 1 {
		t.Fatalf("checker verified %d artifacts, want 1", got)
	}
	objs, _ := storage.ListAll(ctx, store, "latest/")
	if len(objs) != 2 {
		t.Fatalf("objects after the cut: %v", objs)
	}
}

// TestEveryWriterKeepsGoodBackupWhenStoreDies: the database backup and the directory snapshot
// share the staged upload: a second run the same day whose store dies after staging (a TCP proxy
// in front of the S3 server, killed) fails and leaves the first run's backups and manifests as
// they were.
func TestEveryWriterKeepsGoodBackupWhenStoreDies(t *testing.T) {
	cfg := storagetest.NewFakeS3(t).Config
	direct := storagetest.NewS3(t, cfg)
	dir := t.TempDir()
	base := filepath.Join(dir, "homes")
	os.MkdirAll(filepath.Join(base, "inst-1"), 0o750)
	os.WriteFile(filepath.Join(base, "inst-1", "notes.md"), []byte("hello"), 0o640)
	var authPath string
	writers := map[string]struct {
		job    func(storage.Store) Job
		key    string
		change func() // the source moves on between the runs
	}{
		"sqlite_backup": {func(s storage.Store) Job {
			j, paths := platformJob(t, filepath.Join(dir, "dbs"), s, func(c *SQLiteBackupConfig) { c.Databases = c.Databases[:1] })
			authPath = paths["auth"]
			return j
		}, "platform/20261125/auth-20261125.db", func() {
			db, err := demo.Open(authPath)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			if _, err := db.Exec(`DELETE FROM session`); err != nil {
				t.Fatal(err)
			}
		}},
		"dir_snapshot": {func(s storage.Store) Job {
			return NewDirSnapshot("wopr-home", DirSnapshotConfig{BaseDir: base, Node: "n1", Now: func() time.Time { return day1 }}, s)
		}, "nightly/n1/inst-1/inst-1_20261125.tar.gz", func() {
			os.WriteFile(filepath.Join(base, "inst-1", "more.md"), []byte("changed"), 0o640)
		}},
	}
	for name, w := range writers {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			if _, err := w.job(direct).Run(ctx); err != nil {
				t.Fatalf("first run: %v", err)
			}
			good, err := artifact.ReadManifest(ctx, direct, w.key)
			if err != nil {
				t.Fatal(err)
			}
			w.change()
			proxy := storagetest.NewProxy(t, cfg.Endpoint)
			dying := storagetest.NewS3(t, proxy.Via(cfg))
			hctx := artifact.WithHooks(ctx, artifact.Hooks{Staged: func(string) { proxy.Kill() }})
			if _, err := w.job(dying).Run(hctx); err == nil {
				t.Fatal("a run whose store died succeeded")
			}
			m, err := artifact.ReadManifest(ctx, direct, w.key)
			if err != nil || m.SHA256 != good.SHA256 || !m.CreatedAt.Equal(good.CreatedAt) {
				t.Fatalf("manifest after the failed run: %+v %v, want the first run's", m, err)
			}
			artifacttest.Check(t, direct, "")
		})
	}
}
