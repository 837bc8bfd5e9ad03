package main

import (
	"context"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wopr-network/opsd/config"
	"github.com/wopr-network/opsd/internal/artifact"
	"github.com/wopr-network/opsd/internal/artifact/artifacttest"
	"github.com/wopr-network/opsd/internal/demo"
	"github.com/wopr-network/opsd/internal/docker/dockertest"
	"github.com/wopr-network/opsd/internal/storage"
	s3store "github.com/wopr-network/opsd/internal/storage/s3"
	"github.com/wopr-network/opsd/internal/storage/storagetest"
)

// assertManifestsMatchObjects fails the test unless every manifest's object exists and matches
// its size and SHA-256 (the shared checker of the fault tests).
func assertManifestsMatchObjects(t *testing.T, store storage.Store) {
	t.Helper()
	artifacttest.Check(t, store, "")
}

// writeDockerConfig writes a daemon config with a local store under dir, the Docker engine at
// the unix socket sock, the default alert rules (the unexpected-stop rule among them) evaluated
// hourly, and one nightly export of the containers named prefix*.
func writeDockerConfig(t *testing.T, cfgPath, node, dir, sock, prefix string) {
	t.Helper()
	writeConfig(t, cfgPath, fmt.Sprintf(`node_id: %s
http:
  admin_token: %s
state:
  path: %s/state.db
storage:
  backend: local
  local:
    path: %s/store
docker:
  host: unix://%s
alerts:
  interval: 1h
jobs:
  - {name: containers-nightly, kind: container_export, schedule: "0 2 * * *", name_prefix: %s}
`, node, token, dir, dir, sock, prefix))
}

// TestDockerUnreachableIsDegraded: with a container job configured and the Docker engine not
// answering (its socket does not exist), /health is degraded naming the engine and the jobs that
// need it, and the fleet-unexpected-stop alert reports an error instead of "no tenant container
// stopped unexpectedly".
func TestDockerUnreachableIsDegraded(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "opsd.yaml")
	writeDockerConfig(t, cfgPath, "nodocker", dir, filepath.Join(dir, "no-such-docker.sock"), "tenant_")
	m, base := startDaemon(t, cfgPath)
	eventually(t, "/health degraded", 10*time.Second, func() bool {
		_, body := get(t, base+"/health")
		return strings.Contains(body, `"status":"degraded"`) && strings.Contains(body, "docker engine unreachable (needed by containers-nightly)")
	})
	m.evaluator.EvaluateOnce(context.Background(), time.Now())
	_, body := getAuth(t, base+"/api/alerts", token)
	i := strings.Index(body, `"name":"fleet-unexpected-stop"`)
	if i < 0 {
		t.Fatalf("/api/alerts has no fleet-unexpected-stop: %s", body)
	}
	rest := body[i:]
	if end := strings.Index(rest, "}"); end > 0 {
		rest = rest[:end]
	}
	if !strings.Contains(rest, "docker engine unreachable") || strings.Contains(rest, "no tenant container stopped unexpectedly") {
		t.Fatalf("fleet alert with Docker unreachable: %s", rest)
	}
}

// switchProxy forwards TCP connections to target while up; while down it refuses them (accepts
// and closes at once): the object store's network is cut and restored for real.
type switchProxy struct {
	ln     net.Listener
	target string
	up     atomic.Bool
	wg     sync.WaitGroup
}

func newSwitchProxy(t *testing.T, target string) *switchProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &switchProxy{ln: ln, target: target}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if !p.up.Load() {
				c.Close()
				continue
			}
			go func() {
				defer c.Close()
				u, err := net.Dial("tcp", p.target)
				if err != nil {
					return
				}
				defer u.Close()
				go io.Copy(u, c)
				io.Copy(c, u)
			}()
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return p
}

// TestStartsWithoutObjectStore: `opsd run` with the object store unreachable starts anyway:
// /health, /metrics and the API answer, /health is degraded naming the store, and when the
// store comes back it is used without a restart (a backup run succeeds, /health is ok again).
func TestStartsWithoutObjectStore(t *testing.T) {
	// The integration tier's S3 engine when it runs, else the in-process one (over TLS).
	dir := t.TempDir()
	var s3cfg s3store.Config
	tls := "tls: false"
	if os.Getenv("OPSD_TEST_S3_ENDPOINT") != "" {
		s3cfg = storagetest.RealS3(t)
	} else {
		fake := storagetest.NewFakeS3(t)
		s3cfg = fake.Config
		ca := filepath.Join(dir, "ca.pem")
		os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: fake.Server.Certificate().Raw}), 0o600)
		tls = fmt.Sprintf("tls: true, ca_file: %q", ca)
	}
	store := storagetest.NewS3(t, s3cfg) // creates the bucket
	proxy := newSwitchProxy(t, s3cfg.Endpoint)
	paths, err := demo.Create(context.Background(), dir, 20)
	if err != nil {
		t.Fatal(err)
	}
	db := paths["auth"]
	cfgPath := filepath.Join(dir, "opsd.yaml")
	writeConfig(t, cfgPath, fmt.Sprintf(`node_id: nostore
http:
  admin_token: %s
state:
  path: %s/state.db
storage:
  backend: s3
  s3: {endpoint: %q, bucket: %s, region: us-east-1, access_key: %q, secret_key: %q, %s}
alerts:
  interval: 1h
  rules: []
jobs:
  - name: platform-db-backup
    kind: sqlite_backup
    schedule: "0 3 * * *"
    databases:
      - {name: auth, path: %q}
`, token, dir, proxy.ln.Addr().String(), s3cfg.Bucket, s3cfg.AccessKey, s3cfg.SecretKey, tls, db))
	cfgLoaded, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	m, err := NewMain(ctx, cfgLoaded, Options{Stderr: &syncBuffer{}, Listen: "127.0.0.1:0", CheckInterval: 100 * time.Millisecond})
	if err != nil {
		t.Fatalf("opsd did not start with the store unreachable: %v", err)
	}
	if err := m.Run(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close(context.Background()) })
	base := "http://" + m.Addr().String()
	if _, body := get(t, base+"/health"); !strings.Contains(body, `"status":"degraded"`) || !strings.Contains(body, "object store unreachable") {
		t.Fatalf("/health with the store unreachable: %s", body)
	}
	if code, _ := get(t, base+"/metrics"); code != 200 {
		t.Fatalf("/metrics: %d", code)
	}
	spec, _ := m.sched.Spec("platform-db-backup")
	if o := m.runner.Run(ctx, spec.Job, time.Minute, "test"); o.OK() {
		t.Fatal("a backup succeeded with the store unreachable")
	}

	proxy.up.Store(true)
	eventually(t, "the store problem to clear", 20*time.Second, func() bool {
		_, body := get(t, base+"/health")
		return !strings.Contains(body, "object store unreachable")
	})
	if o := m.runner.Run(ctx, spec.Job, time.Minute, "test"); !o.OK() {
		t.Fatalf("backup once the store is back: %v", o.Err)
	}
	if _, body := get(t, base+"/health"); !strings.Contains(body, `"status":"ok"`) {
		t.Fatalf("/health once the store is back and a backup succeeded: %s", body)
	}
	key := "platform/" + time.Now().UTC().Format("20060102") + "/auth-" + time.Now().UTC().Format("20060102") + ".db"
	if _, err := artifact.ReadManifest(ctx, store, key); err != nil {
		t.Fatalf("%s was not uploaded: %v", key, err)
	}
	assertManifestsMatchObjects(t, store)
}

// unixSwitch forwards connections on a unix socket to the Docker engine's socket while up;
// down closes every forwarded connection (the event stream sees the engine go away) and
// refuses new ones, as a stopped engine does.
type unixSwitch struct {
	ln     net.Listener
	target string
	up     atomic.Bool
	mu     sync.Mutex
	conns  map[net.Conn]bool
}

func newUnixSwitch(t *testing.T, path, target string) *unixSwitch {
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	s := &unixSwitch{ln: ln, target: target, conns: map[net.Conn]bool{}}
	s.up.Store(true)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if !s.up.Load() {
				c.Close()
				continue
			}
			u, err := net.Dial("unix", target)
			if err != nil {
				c.Close()
				continue
			}
			s.mu.Lock()
			s.conns[c], s.conns[u] = true, true
			s.mu.Unlock()
			go func() { io.Copy(u, c); u.Close() }()
			go func() { io.Copy(c, u); c.Close() }()
		}
	}()
	t.Cleanup(func() { ln.Close(); s.down() })
	return s
}

func (s *unixSwitch) down() {
	s.up.Store(false)
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		c.Close()
		delete(s.conns, c)
	}
}

// TestDockerGoneAndBackFollowsTheEventStream: with the unexpected-stop alert's event stream
// open, the daemon does not poll the engine (the check interval here is an hour): the engine
// going away ends the stream, which makes /health degraded at once; the stream reconnecting
// when the engine is back makes it ok again.
func TestDockerGoneAndBackFollowsTheEventStream(t *testing.T) {
	dockertest.Client(t) // skips without an engine
	target := "/var/run/docker.sock"
	if h := os.Getenv("DOCKER_HOST"); h != "" {
		if !strings.HasPrefix(h, "unix://") {
			t.Skip("DOCKER_HOST is not a unix socket")
		}
		target = strings.TrimPrefix(h, "unix://")
	}
	dir := t.TempDir()
	sw := newUnixSwitch(t, filepath.Join(dir, "docker.sock"), target)
	cfgPath := filepath.Join(dir, "opsd.yaml")
	writeDockerConfig(t, cfgPath, "dockerback", dir, filepath.Join(dir, "docker.sock"), dockertest.Unique("tenant_idle_"))
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	m, err := NewMain(ctx, cfg, Options{Stderr: &syncBuffer{}, Listen: "127.0.0.1:0", CheckInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Run(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close(context.Background()) })
	base := "http://" + m.Addr().String()
	eventually(t, "the event stream to open", 60*time.Second, func() bool { return m.alerts.Stops.Connected() })
	if _, body := get(t, base+"/health"); strings.Contains(body, "docker engine unreachable") {
		t.Fatalf("/health with the engine up: %s", body)
	}

	sw.down()
	// The bound only keeps a failing test from hanging: under CI's -race load 20 s was once
	// too short.
	eventually(t, "/health degraded", 60*time.Second, func() bool {
		_, body := get(t, base+"/health")
		return strings.Contains(body, `"status":"degraded"`) && strings.Contains(body, "docker engine unreachable (needed by containers-nightly)")
	})
	sw.up.Store(true)
	eventually(t, "/health without the Docker problem", 60*time.Second, func() bool {
		_, body := get(t, base+"/health")
		return !strings.Contains(body, "docker engine unreachable")
	})
	if !m.alerts.Stops.Connected() {
		t.Fatal("the problem cleared without the stream connected")
	}
}
