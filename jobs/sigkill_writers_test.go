package jobs

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/wopr-network/opsd/internal/artifact"
	"github.com/wopr-network/opsd/internal/artifact/artifacttest"
	"github.com/wopr-network/opsd/internal/docker/dockertest"
	"github.com/wopr-network/opsd/internal/layout"
	"github.com/wopr-network/opsd/internal/opsdtest"
	"github.com/wopr-network/opsd/internal/postgres/pgtest"
	"github.com/wopr-network/opsd/internal/state"
	"github.com/wopr-network/opsd/internal/storage"
	s3store "github.com/wopr-network/opsd/internal/storage/s3"
	"github.com/wopr-network/opsd/internal/storage/storagetest"
)

// killProxy forwards TCP connections to the S3 engine and, once armed, calls trip with every
// chunk a client sends before forwarding it; when trip returns true the chunk is dropped and
// every connection cut (the caller SIGKILLs the process meanwhile).
type killProxy struct {
	addr  string
	ln    net.Listener
	mu    sync.Mutex
	trip  func(chunk []byte, sent int64) bool
	sent  atomic.Int64
	fired atomic.Bool
	conns connSet
}

func newKillProxy(t *testing.T, target string) *killProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &killProxy{addr: ln.Addr().String(), ln: ln}
	t.Cleanup(func() { ln.Close(); p.cut() })
	go serveRelay(ln, "tcp", target, &p.conns, func(u, c net.Conn) { pump(u, c, p.stop) }, copyClose)
	return p
}

// stop counts a chunk the client sends and says whether the armed trip drops it (cutting every
// connection).
func (p *killProxy) stop(chunk []byte) bool {
	p.mu.Lock()
	trip := p.trip
	p.mu.Unlock()
	sent := p.sent.Add(int64(len(chunk)))
	if trip != nil && !p.fired.Load() && trip(chunk, sent) {
		p.fired.Store(true)
		p.cut()
		return true
	}
	return false
}

func (p *killProxy) arm(trip func(chunk []byte, sent int64) bool) {
	p.mu.Lock()
	p.trip = trip
	p.mu.Unlock()
	p.sent.Store(0)
	p.fired.Store(false)
}

func (p *killProxy) disarm() { p.arm(nil) }

func (p *killProxy) cut() { p.conns.closeAll() }

// sigkillWriter is one writer the SIGKILL test drives through the real binary.
type sigkillWriter struct {
	job    string // its name in the job file
	key    string
	change func(t *testing.T)
	// target, when set, is a target known before the job runs: the killed run marks it failed.
	target string
}

// TestSIGKILLMidWriterLosesNothing: the real opsd binary runs each writer (`opsd jobs run`: the
// SQLite backup, the directory snapshot, the container export, the PostgreSQL dump) on
// SeaweedFS through a proxy and is SIGKILLed in the middle of its upload: on the first backup of
// a key (the stream goes to the key itself) and on a replacement the same day (the stream goes
// to a staging key). After each kill the bucket holds only objects that match their manifests,
// the previous good backup is still the one at the key, nothing of the killed upload has a
// manifest; the daemon started afterwards reports the killed run (interrupted:<job> on /health);
// and the next run succeeds with the changed source.
func TestSIGKILLMidWriterLosesNothing(t *testing.T) {
	cfg := storagetest.RealS3(t)
	direct := storagetest.NewS3(t, cfg) // creates the bucket
	bin := opsdtest.Binary(t)
	today := layout.Date(time.Now())
	dir := t.TempDir()

	// Sources: a 24 MiB SQLite database, an instance directory with 24 MiB of random bytes
	// (nothing for gzip to shrink), a container with as much in its filesystem.
	src := newKillSources(t, dir)
	dbPath, base := src.dbPath, src.base
	writers := []sigkillWriter{
		{job: "platform-db-backup", target: "auth", key: "platform/" + today + "/auth-" + today + ".db", change: src.changeDB},
		{job: "wopr-home", key: "nightly/kill/inst-1/inst-1_" + today + ".tar.gz", change: src.changeDir},
	}
	containerJob := ""
	{
		dc := dockertest.Client(t)
		name := dockertest.Unique("tenant_opsdkill") + "a"
		dockertest.Run(t, dc, name, nil, "dd if=/dev/urandom of=/data/big bs=1M count=24 2>/dev/null; sleep 3600")
		waitContainerData(t, dc, name, 24<<20)
		containerJob = fmt.Sprintf(`
  - name: tenant-export
    kind: container_export
    schedule: "0 2 * * *"
    name_prefix: %s
`, name)
		writers = append(writers, sigkillWriter{job: "tenant-export", key: "nightly/kill/" + name + "/" + name + "_" + today + ".tar.gz", change: func(t *testing.T) {
			if out, err := exec.Command("docker", "exec", name, "sh", "-c", "dd if=/dev/urandom of=/data/big bs=1M count=24 2>/dev/null").CombinedOutput(); err != nil {
				t.Fatalf("change the container: %v %s", err, out)
			}
		}})
	}

	// The platform's PostgreSQL database, with 32 MB of random text in it.
	pgJob := ""
	{
		server, tools := pgtest.Server(t)
		db := pgtest.NewDatabase(t, server, "opsd_kill")
		conn, err := db.Connect(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		fill := func(t *testing.T) {
			if _, err := conn.Exec(context.Background(), `CREATE TABLE IF NOT EXISTS blobs (id serial PRIMARY KEY, v text);
				INSERT INTO blobs (v) SELECT md5(random()::text) FROM generate_series(1, 1000000)`); err != nil {
				t.Fatal(err)
			}
		}
		fill(t)
		t.Cleanup(func() { conn.Close(context.Background()) })
		u, err := url.Parse(os.Getenv("OPSD_TEST_PG_DSN"))
		if err != nil {
			t.Fatal(err)
		}
		u.Path = "/" + db.Database()
		pgJob = fmt.Sprintf(`
  - name: platform-pg
    kind: postgres_backup
    schedule: "15 3 * * *"
    dsn: %q
    pg_bin_dir: %s
    compression: zstd
`, u.String(), tools.BinDir)
		writers = append(writers, sigkillWriter{job: "platform-pg", target: db.Database(), key: "postgres/" + today + "/" + db.Database() + "-" + today + ".dump.zst", change: fill})
	}

	proxy := newKillProxy(t, cfg.Endpoint)
	addr := opsdtest.FreeAddr(t)
	cfgPath := writeKillConfig(t, dir, addr, proxy.addr, cfg, fmt.Sprintf(`
  - name: platform-db-backup
    kind: sqlite_backup
    schedule: "0 3 * * *"
    compression: none
    temp_dir: %s/tmp
    databases:
      - {name: auth, path: %s, tables: [items]}
  - name: wopr-home
    kind: dir_snapshot
    schedule: "30 2 * * *"
    base_dir: %s
%s%s`, dir, dbPath, base, containerJob, pgJob))

	ctx := context.Background()
	var stderr bytes.Buffer
	runJob := func(t *testing.T, job string, trip func([]byte, int64) bool) (killed bool, err error) {
		t.Helper()
		stderr.Reset()
		cmd := exec.Command(bin, "jobs", "run", "-c", cfgPath, job)
		cmd.Stdout, cmd.Stderr = &stderr, &stderr
		// The kill is recorded before it is sent (the proxy's own flag is set after the trip
		// returns, which may be after Wait saw the process die), and cmd.Process is read only
		// once Start has set it.
		var sentKill atomic.Bool
		started := make(chan struct{})
		if trip != nil {
			proxy.arm(func(chunk []byte, sent int64) bool {
				if !trip(chunk, sent) {
					return false
				}
				<-started
				sentKill.Store(true)
				cmd.Process.Signal(syscall.SIGKILL)
				return true
			})
			defer proxy.disarm()
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		close(started)
		err = cmd.Wait()
		return sentKill.Load(), err
	}
	midUpload := func(_ []byte, sent int64) bool { return sent > 12<<20 }
	check := func(t *testing.T) int {
		t.Helper()
		return artifacttest.Check(t, direct, "")
	}

	for _, w := range writers {
		t.Run(w.job, func(t *testing.T) {
			// 1. Killed during the first backup of the key: the stream goes to the key itself.
			killed, err := runJob(t, w.job, midUpload)
			if !killed {
				t.Fatalf("the first run was never killed (err %v): %s", err, stderr.String())
			}
			if _, err := artifact.ReadManifest(ctx, direct, w.key); err == nil {
				t.Fatalf("%s has a manifest after a run killed mid-upload", w.key)
			}
			check(t)

			// 2. A complete run: the good backup.
			if _, err := runJob(t, w.job, nil); err != nil {
				t.Fatalf("run after the kill: %v\n%s", err, stderr.String())
			}
			good, err := artifact.ReadManifest(ctx, direct, w.key)
			if err != nil {
				t.Fatal(err)
			}
			check(t)

			// 3. The source changes; the replacement the same day is killed mid-upload.
			w.change(t)
			if killed, err := runJob(t, w.job, midUpload); !killed {
				t.Fatalf("the replacement was never killed (err %v): %s", err, stderr.String())
			}
			m, err := artifact.ReadManifest(ctx, direct, w.key)
			if err != nil || m.SHA256 != good.SHA256 || m.Size != good.Size {
				t.Fatalf("after a replacement killed mid-upload the key's manifest is %+v %v, want the good one", m, err)
			}
			check(t)

			// 3b. The next replacement is killed between publishing the object and writing its
			// manifest: the key holds the new object under the good one's manifest.
			manifestPUT := []byte("PUT /" + cfg.Bucket + "/" + w.key + artifact.ManifestSuffix + " ")
			if killed, err := runJob(t, w.job, func(chunk []byte, _ int64) bool { return bytes.HasPrefix(chunk, manifestPUT) }); !killed {
				t.Fatalf("the replacement was never killed before its manifest (err %v): %s", err, stderr.String())
			}
			if problems, _, err := artifacttest.Problems(ctx, direct, ""); err != nil || len(problems) == 0 {
				t.Fatalf("no object under another's manifest after a kill between publish and manifest (%v): the fault was not injected", err)
			}

			// 4. The daemon started afterwards reports the killed run and finishes its upload.
			daemon := exec.Command(bin, "run", "-c", cfgPath)
			var dlog lockedBuffer
			daemon.Stderr = &dlog
			if err := daemon.Start(); err != nil {
				t.Fatal(err)
			}
			var health string
			deadline := time.Now().Add(30 * time.Second)
			for time.Now().Before(deadline) {
				if resp, err := http.Get("http://" + addr + "/health"); err == nil {
					b, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					health = string(b)
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
			deadline = time.Now().Add(60 * time.Second)
			for {
				problems, _, err := artifacttest.Problems(ctx, direct, "")
				if err == nil && len(problems) == 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("the upload killed before its manifest is not finished after the daemon started: %v %v\n%s", problems, err, dlog.String())
				}
				time.Sleep(200 * time.Millisecond)
			}
			if m, err := artifact.ReadManifest(ctx, direct, w.key); err != nil || m.SHA256 == good.SHA256 {
				t.Fatalf("the key's manifest after the daemon finished the upload: %+v %v, want the new backup's", m, err)
			}
			if w.target != "" {
				// The daemon records the killed run's targets as it starts (/health may answer
				// meanwhile): wait for it before stopping the daemon.
				var b state.BackupStatus
				deadline := time.Now().Add(30 * time.Second)
				for {
					st, err := state.Open(ctx, filepath.Join(dir, "state", "state.db"))
					if err != nil {
						t.Fatal(err)
					}
					b, err = st.GetBackup(ctx, w.target, time.Now(), 24*time.Hour)
					st.Close()
					if err == nil && !b.LastBackupSuccess && b.IsStale {
						break
					}
					if time.Now().After(deadline) {
						t.Fatalf("%s's status after the killed run: success %v, stale %v, %v; want its last attempt failed (stale)", w.target, b.LastBackupSuccess, b.IsStale, err)
					}
					time.Sleep(200 * time.Millisecond)
				}
			}
			daemon.Process.Signal(syscall.SIGTERM)
			daemon.Wait()
			if !strings.Contains(health, "interrupted:"+w.job) || !strings.Contains(health, `"degraded"`) {
				t.Fatalf("/health after the killed run: %q\n%s", health, dlog.String())
			}

			// 5. The next run succeeds with the changed source, and clears it.
			if _, err := runJob(t, w.job, nil); err != nil {
				t.Fatalf("run after the restart: %v\n%s", err, stderr.String())
			}
			m, err = artifact.ReadManifest(ctx, direct, w.key)
			if err != nil || m.SHA256 == good.SHA256 {
				t.Fatalf("after the next run the key's manifest is %+v %v, want a new backup", m, err)
			}
			check(t)
			objs, _ := storage.ListAll(ctx, direct, "")
			for _, o := range objs {
				if storage.IsStaging(o.Key) {
					t.Logf("left for prune: %s", o.Key)
				}
			}
		})
	}
}

// writeKillConfig writes dir/opsd.yaml for the real binary: /health on addr, the state database
// under dir/state, the S3 store cfg reached through proxyAddr with 5 MiB parts, alerts quiet, and
// jobs (the YAML list after "jobs:").
func writeKillConfig(t *testing.T, dir, addr, proxyAddr string, cfg s3store.Config, jobs string) string {
	t.Helper()
	cfgPath := filepath.Join(dir, "opsd.yaml")
	if err := os.WriteFile(cfgPath, []byte(fmt.Sprintf(`node_id: kill
http:
  listen: %s
state:
  path: %s/state/state.db
storage:
  backend: s3
  s3:
    endpoint: %s
    region: us-east-1
    bucket: %s
    access_key: %s
    secret_key: %s
    tls: false
    part_size: 5MiB
    upload_memory: 16MiB
alerts:
  interval: 1h
  rules: []
scheduler:
  shutdown_timeout: 2s
jobs:%s`, addr, dir, proxyAddr, cfg.Bucket, cfg.AccessKey, cfg.SecretKey, jobs)), 0o600); err != nil {
		t.Fatal(err)
	}
	return cfgPath
}

// TestSIGKILLMidPausedExportUnpausesAtStart: an export with `pause: true` freezes the tenant's
// container; the real binary is SIGKILLed mid-upload (OOM, the host restarting opsd's
// container). Before, the container stayed paused, the tenant's bot down, until someone noticed.
// The daemon's next start unpauses it; nothing of the killed export is a backup.
func TestSIGKILLMidPausedExportUnpausesAtStart(t *testing.T) {
	cfg := storagetest.RealS3(t)
	direct := storagetest.NewS3(t, cfg)
	dc := dockertest.Client(t)
	bin := opsdtest.Binary(t)
	dir := t.TempDir()
	name := dockertest.Unique("tenant_opsdpause") + "a"
	dockertest.Run(t, dc, name, nil, "dd if=/dev/urandom of=/data/big bs=1M count=24 2>/dev/null; sleep 3600")
	waitContainerData(t, dc, name, 24<<20)
	t.Cleanup(func() { dc.Unpause(context.Background(), name) })
	proxy := newKillProxy(t, cfg.Endpoint)
	addr := opsdtest.FreeAddr(t)
	cfgPath := writeKillConfig(t, dir, addr, proxy.addr, cfg, fmt.Sprintf(`
  - name: tenant-export
    kind: container_export
    schedule: "0 2 * * *"
    name_prefix: %s
    pause: true
`, name))

	var out bytes.Buffer
	cmd := exec.Command(bin, "jobs", "run", "-c", cfgPath, "tenant-export")
	cmd.Stdout, cmd.Stderr = &out, &out
	var killed atomic.Bool
	started := make(chan struct{})
	proxy.arm(func(_ []byte, sent int64) bool {
		if sent <= 12<<20 {
			return false
		}
		<-started // cmd.Process is set by Start
		killed.Store(true)
		cmd.Process.Signal(syscall.SIGKILL)
		return true
	})
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	close(started)
	cmd.Wait()
	proxy.disarm()
	if !killed.Load() {
		t.Fatalf("the export was never killed: %s", out.String())
	}
	ctx := context.Background()
	if d, err := dc.Inspect(ctx, name, false); err != nil || !d.Paused {
		t.Fatalf("the container is not paused after the kill (paused %v, %v): the fault was not injected", d.Paused, err)
	}

	daemon := exec.Command(bin, "run", "-c", cfgPath)
	var dlog lockedBuffer
	daemon.Stderr = &dlog
	if err := daemon.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		daemon.Process.Signal(syscall.SIGTERM)
		daemon.Wait()
	}()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/health")
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the daemon never answered: %v\n%s", err, dlog.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	// The daemon answers once it started; the unpause comes before its first runs.
	deadline = time.Now().Add(30 * time.Second)
	for {
		// The unpause is logged after it is done: wait for both.
		d, err := dc.Inspect(ctx, name, false)
		if err == nil && !d.Paused && strings.Contains(dlog.String(), "unpaused a container an export opsd did not survive left paused") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the container is still paused after the daemon started (paused %v, %v)\n%s", d.Paused, err, dlog.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	if !strings.Contains(dlog.String(), "unpaused a container an export opsd did not survive left paused") {
		t.Fatalf("the unpause is not logged:\n%s", dlog.String())
	}
	artifacttest.Check(t, direct, "")
}

// lockedBuffer is a bytes.Buffer a child process's output is copied into while the test reads it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
