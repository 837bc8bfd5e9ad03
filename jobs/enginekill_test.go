package jobs

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/wopr-network/opsd/internal/artifact"
	"github.com/wopr-network/opsd/internal/artifact/artifacttest"
	"github.com/wopr-network/opsd/internal/storage"
	s3store "github.com/wopr-network/opsd/internal/storage/s3"
	"github.com/wopr-network/opsd/internal/storage/storagetest"
)

// privateWeed is a SeaweedFS engine of the test's own (the shared one of the integration tier
// must not be killed under other packages' tests): its binary is the one .ci/seaweedfs.sh cached.
type privateWeed struct {
	bin, dir, port string
	mu             sync.Mutex // cmd: kill9 runs on the proxy's goroutine
	cmd            *exec.Cmd
}

// stop ends the engine with sig, if it runs, and reaps it.
func (w *privateWeed) stop(sig os.Signal) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.cmd != nil {
		w.cmd.Process.Signal(sig)
		w.cmd.Wait()
		w.cmd = nil
	}
}

func startPrivateWeed(t *testing.T) *privateWeed {
	t.Helper()
	storagetest.RealS3(t) // skips (or fails under OPSD_TEST_REQUIRE_S3) like the integration tier
	cache := os.Getenv("OPSD_CI_CACHE")
	if cache == "" {
		cache = "/var/cache/opsd-ci"
	}
	bins, _ := filepath.Glob(filepath.Join(cache, "weed-v*"))
	bin := ""
	for _, b := range bins {
		if !strings.HasSuffix(b, ".tmp") {
			bin = b
		}
	}
	if bin == "" {
		t.Skipf("no SeaweedFS binary cached in %s (.ci/seaweedfs.sh builds it)", cache)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	ln.Close()
	w := &privateWeed{bin: bin, dir: t.TempDir(), port: port}
	os.MkdirAll(filepath.Join(w.dir, "data"), 0o755)
	w.start(t)
	t.Cleanup(func() {
		w.stop(syscall.SIGKILL)
	})
	return w
}

// start runs the engine on its directory and port and waits until S3 answers.
func (w *privateWeed) start(t *testing.T) {
	t.Helper()
	log, _ := os.OpenFile(filepath.Join(w.dir, "weed.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	cmd := exec.Command(w.bin, "mini", "-dir="+filepath.Join(w.dir, "data"), "-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-master.telemetry=false",
		"-s3.port="+w.port, "-s3.port.iceberg=0", "-s3.port.lance=0", "-admin.ui=false",
		"-filer.localSocket="+filepath.Join(w.dir, "filer.sock"), "-s3.localSocket="+filepath.Join(w.dir, "s3.sock"))
	cmd.Env = append(os.Environ(), "AWS_ACCESS_KEY_ID=opsd-test-access", "AWS_SECRET_ACCESS_KEY=opsd-test-secret-key")
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.mu.Lock()
	w.cmd = cmd
	w.mu.Unlock()
	deadline := time.Now().Add(90 * time.Second)
	for {
		resp, err := http.Get("http://127.0.0.1:" + w.port + "/")
		if err == nil {
			resp.Body.Close()
			return
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(filepath.Join(w.dir, "weed.log"))
			t.Fatalf("seaweedfs did not answer: %v\n%s", err, b[max(0, len(b)-4000):])
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// restart stops the engine gracefully (SIGTERM) and starts it again on its data.
func (w *privateWeed) restart(t *testing.T) {
	t.Helper()
	w.stop(syscall.SIGTERM)
	w.start(t)
}

// kill9 kills the engine with SIGKILL and reaps it.
func (w *privateWeed) kill9() {
	w.stop(syscall.SIGKILL)
}

func (w *privateWeed) config(bucket string) s3store.Config {
	return s3store.Config{Endpoint: "127.0.0.1:" + w.port, Region: "us-east-1", Bucket: bucket,
		AccessKey: "opsd-test-access", SecretKey: "opsd-test-secret-key", PartSize: 5 << 20, CreateBucket: true}
}

// TestEngineKilledMidMultipartThenRestarted: the S3 engine itself (a real SeaweedFS process) is
// SIGKILLed in the middle of a writer's multipart upload, a same-day replacement of a good
// backup, and started again on its data. The run fails; after the restart the good backup and
// every other manifest's object are intact (size and SHA-256), the killed upload left nothing
// with a manifest, the next run succeeds, and prune's abort of incomplete uploads leaves none.
func TestEngineKilledMidMultipartThenRestarted(t *testing.T) {
	w := startPrivateWeed(t)
	cfg := w.config("opsd-enginekill")
	direct := storagetest.NewS3(t, cfg)
	dir := t.TempDir()
	src := newKillSources(t, dir)
	dbPath, base := src.dbPath, src.base
	proxy := newKillProxy(t, cfg.Endpoint)
	via := cfg
	via.Endpoint, via.MaxRetries, via.CreateBucket = proxy.addr, 1, false
	writers := []struct {
		name   string
		job    func(storage.Store) Job
		key    string
		change func()
	}{
		{"sqlite_backup", func(s storage.Store) Job {
			return NewSQLiteBackup("platform-db-backup", SQLiteBackupConfig{Databases: []SQLiteDatabase{{Name: "auth", Path: dbPath, Tables: []string{"items"}}},
				Compression: "none", TempDir: filepath.Join(dir, "tmp"), Node: "n1", Now: func() time.Time { return day1 }}, s)
		}, "platform/20261125/auth-20261125.db", func() { src.changeDB(t) }},
		{"dir_snapshot", func(s storage.Store) Job {
			return NewDirSnapshot("wopr-home", DirSnapshotConfig{BaseDir: base, Node: "n1", Now: func() time.Time { return day1 }}, s)
		}, "nightly/n1/inst-1/inst-1_20261125.tar.gz", func() { src.changeDir(t) }},
	}
	ctx := context.Background()
	for _, wr := range writers {
		t.Run(wr.name, func(t *testing.T) {
			r := newRig(t)
			if o := r.runner.Run(ctx, wr.job(storagetest.NewS3(t, via)), 5*time.Minute, TriggerManual); !o.OK() {
				t.Fatalf("first run: %v", o.Err)
			}
			// The good backup made durable by the engine before the fault: SeaweedFS can lose
			// what it acknowledged a moment before a SIGKILL (in CI the good manifest, written
			// a second earlier, was gone after the restart); the engine's durability is not what
			// this test checks, opsd's handling of the killed upload is.
			w.restart(t)
			good, err := artifact.ReadManifest(ctx, direct, wr.key)
			if err != nil {
				t.Fatal(err)
			}
			wr.change()
			var killed atomic.Bool
			proxy.arm(func(_ []byte, sent int64) bool {
				if sent > 12<<20 {
					killed.Store(true)
					w.kill9()
					return true
				}
				return false
			})
			o := r.runner.Run(ctx, wr.job(storagetest.NewS3(t, via)), 5*time.Minute, TriggerManual)
			proxy.disarm()
			if !killed.Load() {
				t.Fatal("the engine was never killed: the fault was not injected")
			}
			if o.OK() {
				t.Fatal("a run whose S3 engine was killed mid-upload succeeded")
			}
			t.Logf("run error: %v", o.Err)
			w.start(t)

			m, err := artifact.ReadManifest(ctx, direct, wr.key)
			if err != nil || m.SHA256 != good.SHA256 || m.Size != good.Size {
				t.Fatalf("after the engine's restart the key's manifest is %+v %v, want the good one", m, err)
			}
			if n := artifacttest.Check(t, direct, ""); n < 1 {
				t.Fatalf("checker verified %d artifacts", n)
			}
			st, _ := r.state.GetBackup(ctx, wrTarget(wr.key), time.Now(), 24*time.Hour)
			if st.LastBackupSuccess {
				t.Fatalf("status after the killed run says success: %+v", st)
			}

			if o := r.runner.Run(ctx, wr.job(storagetest.NewS3(t, via)), 5*time.Minute, TriggerManual); !o.OK() {
				t.Fatalf("run after the engine's restart: %v", o.Err)
			}
			m, err = artifact.ReadManifest(ctx, direct, wr.key)
			if err != nil || m.SHA256 == good.SHA256 {
				t.Fatalf("after the next run the key's manifest is %+v %v, want a new backup", m, err)
			}
			artifacttest.Check(t, direct, "")
			if n, err := direct.AbortIncompleteUploads(ctx, "", 0); err != nil {
				t.Fatalf("abort incomplete uploads after the restart: %v", err)
			} else {
				t.Logf("aborted %d incomplete uploads the killed engine kept", n)
			}
			if left := incompleteUploads(t, cfg); len(left) > 0 {
				t.Fatalf("incomplete uploads left after the abort: %v", left)
			}
		})
	}
}

// wrTarget returns the target a test key belongs to (auth, inst-1).
func wrTarget(key string) string {
	if strings.HasPrefix(key, "platform/") {
		return "auth"
	}
	return strings.Split(key, "/")[2]
}

// incompleteUploads lists the bucket's unfinished multipart uploads.
func incompleteUploads(t *testing.T, cfg s3store.Config) []string {
	t.Helper()
	c, err := minio.New(cfg.Endpoint, &minio.Options{Creds: credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, ""), Region: cfg.Region})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for u := range c.ListIncompleteUploads(context.Background(), cfg.Bucket, "", true) {
		if u.Err != nil {
			t.Fatal(u.Err)
		}
		out = append(out, fmt.Sprintf("%s (%s)", u.Key, u.UploadID))
	}
	return out
}
