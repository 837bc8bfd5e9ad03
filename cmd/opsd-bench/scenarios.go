package main

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/moby/moby/api/types/container"
	_ "modernc.org/sqlite"

	"github.com/wopr-network/opsd/checks"
	"github.com/wopr-network/opsd/internal/artifact"
	"github.com/wopr-network/opsd/internal/demo"
	"github.com/wopr-network/opsd/internal/layout"
	"github.com/wopr-network/opsd/internal/sqlite"
	"github.com/wopr-network/opsd/internal/storage"
	"github.com/wopr-network/opsd/jobs"
)

// writer commits about perSecond transactions per second while running is set.
type writer struct {
	running   atomic.Bool
	committed atomic.Int64
	stop      chan struct{}
	wg        sync.WaitGroup
}

func startWriter(path string, perSecond int) (*writer, error) {
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(30000)")
	if err != nil {
		return nil, err
	}
	w := &writer{stop: make(chan struct{})}
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		defer db.Close()
		t := time.NewTicker(time.Second / time.Duration(perSecond))
		defer t.Stop()
		for {
			select {
			case <-w.stop:
				return
			case <-t.C:
				if w.running.Load() {
					if _, err := db.Exec(`INSERT INTO items (payload) VALUES (randomblob(200))`); err == nil {
						w.committed.Add(1)
					}
				}
			}
		}
	}()
	return w, nil
}

func (w *writer) Close() { close(w.stop); w.wg.Wait() }

func (b *bench) sqliteScenario(ctx context.Context) error {
	if err := need("sqlite3", "sqlite3"); err != nil {
		return err
	}
	path := filepath.Join(b.dir, "bench.db")
	fmt.Fprintf(os.Stderr, "sqlite: creating a %d MB database\n", b.sz.sqliteMB)
	if err := demo.ItemsDB(path, b.sz.sqliteMB*950); err != nil {
		return err
	}
	st, _ := os.Stat(path)
	size := st.Size()
	store, _, err := b.store(ctx, "sqlite")
	if err != nil {
		return err
	}
	// The writer aims at 250 tx/s so that, with ticks dropped under load, it stays above 200.
	w, err := startWriter(path, 250)
	if err != nil {
		return err
	}
	defer w.Close()
	rows := []row{{name: "opsd copy only under writes"}, {name: "opsd backup under writes (copy + integrity_check + upload)"},
		{name: "sqlite3 .backup under writes"}, {name: "sqlite3 .backup, database idle"}, {name: "sqlite3 VACUUM INTO under writes"}}
	var rates []float64
	for r := 0; r < b.rounds; r++ {
		w.running.Store(true)
		c0, t0 := w.committed.Load(), time.Now()
		job := jobs.NewSQLiteBackup("bench", jobs.SQLiteBackupConfig{Databases: []jobs.SQLiteDatabase{{Name: "bench", Path: path}},
			KeyTemplate: strings.TrimSuffix(layout.DefaultSQLite, ".db") + fmt.Sprintf("-%d.db", r), TempDir: b.dir}, store)
		rows[1].samples = append(rows[1].samples, timed(func() (int64, error) {
			_, err := job.Run(ctx)
			return size, err
		}))
		rates = append(rates, float64(w.committed.Load()-c0)/time.Since(t0).Seconds())
		out := filepath.Join(b.dir, "copy.db")
		rows[0].samples = append(rows[0].samples, timed(func() (int64, error) {
			defer sqlite.RemoveDB(out)
			return size, sqlite.Backup(ctx, path, out)
		}))
		rows[2].samples = append(rows[2].samples, timedCmd(ctx, b.sz.timeLimit, size, "sqlite3", path, ".backup "+out))
		sqlite.RemoveDB(out)
		w.running.Store(false)
		time.Sleep(100 * time.Millisecond)
		rows[3].samples = append(rows[3].samples, timedCmd(ctx, b.sz.timeLimit, size, "sqlite3", path, ".backup "+out))
		sqlite.RemoveDB(out)
		w.running.Store(true)
		rows[4].samples = append(rows[4].samples, timedCmd(ctx, b.sz.timeLimit, size, "sqlite3", path, "VACUUM INTO '"+out+"'"))
		sqlite.RemoveDB(out)
	}
	w.running.Store(false)
	sort.Float64s(rates)
	table(fmt.Sprintf("sqlite: backup of a %d MB WAL database", size>>20),
		fmt.Sprintf("The writer committed a median %.0f tx/s during opsd's runs (it aims at 250). opsd's row includes the integrity check and the upload to the S3 engine; the sqlite3 rows only copy locally. Goal: opsd finishes every run under writes, its copy within 1.5x of the idle `.backup`.", rates[len(rates)/2]), rows)
	return nil
}

// randomFile writes n bytes: half random, half a repeated binary, like mixed binaries.
func randomFile(path string, n int64) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	r := rand.New(rand.NewPCG(1, 2))
	buf := make([]byte, 1<<20)
	bb, _ := os.ReadFile("/bin/busybox")
	for written := int64(0); written < n; written += int64(len(buf)) {
		if (written>>20)%2 == 0 || len(bb) == 0 {
			for i := range buf {
				buf[i] = byte(r.Uint32())
			}
		} else {
			for i := 0; i < len(buf); i += len(bb) {
				copy(buf[i:], bb)
			}
		}
		if _, err := f.Write(buf); err != nil {
			return err
		}
	}
	return nil
}

func (b *bench) uploadScenario(ctx context.Context) error {
	if err := need("s3cmd", "s3cmd"); err != nil {
		return err
	}
	path := filepath.Join(b.dir, "upload.bin")
	size := int64(b.sz.uploadMB) << 20
	if err := randomFile(path, size); err != nil {
		return err
	}
	defer os.Remove(path)
	store, bucket, err := b.store(ctx, "upload")
	if err != nil {
		return err
	}
	rows := []row{{name: "opsd storage layer (minio-go, 8 MiB parts, 4 in flight, SHA-256 on the way)"}, {name: "s3cmd put"}}
	for r := 0; r < b.rounds; r++ {
		rows[0].samples = append(rows[0].samples, timed(func() (int64, error) {
			f, _ := os.Open(path)
			defer f.Close()
			_, err := artifact.Upload(ctx, store, fmt.Sprintf("upload/opsd-%d.bin", r), f, artifact.Options{})
			return size, err
		}))
		cmd := b.s3cmd(ctx, "put", path, fmt.Sprintf("s3://%s/upload/s3cmd-%d.bin", bucket, r))
		start := time.Now()
		out, err := cmd.CombinedOutput()
		s := sample{d: time.Since(start), bytes: size}
		if err != nil {
			s.failed = "failed: " + lastLine(string(out))
		}
		rows[1].samples = append(rows[1].samples, s)
	}
	table(fmt.Sprintf("upload: %d MiB file to the S3 engine", b.sz.uploadMB), "Goal: at least 1.3x s3cmd.", rows)
	return nil
}

func (b *bench) exportScenario(ctx context.Context) error {
	for _, t := range [][2]string{{"docker", "docker.io"}, {"s3cmd", "s3cmd"}, {"gzip", "gzip"}} {
		if err := need(t[0], t[1]); err != nil {
			return err
		}
	}
	dc, img, err := benchDocker(ctx)
	if err != nil {
		return err
	}
	defer dc.Close()
	var rows []row
	for _, sizeMB := range []int{b.sz.exportSmallMB, b.sz.exportMB} {
		name := fmt.Sprintf("tenant_bench_%d", sizeMB)
		dc.Remove(ctx, name)
		half := sizeMB / 2
		id, err := dc.Create(ctx, name, &container.Config{Image: img, Cmd: []string{"/bin/sh", "-c",
			fmt.Sprintf("dd if=/dev/urandom of=/data/random bs=1M count=%d 2>/dev/null; i=0; while [ $i -lt %d ]; do cat /bin/busybox; i=$((i+1)); done | head -c %d > /data/binaries", half, half*2, half<<20)}}, &container.HostConfig{})
		if err != nil {
			return err
		}
		defer dc.Remove(context.Background(), id)
		if err := dc.Start(ctx, id); err != nil {
			return err
		}
		if _, err := dc.Wait(ctx, id); err != nil {
			return err
		}
		_, bucket, err := b.store(ctx, "export") // creates the bucket
		if err != nil {
			return err
		}
		bin, err := b.opsdBinary(ctx)
		if err != nil {
			return err
		}
		opsd := row{name: fmt.Sprintf("opsd backup containers, %d MiB (parallel gzip, streaming multipart)", sizeMB)}
		peer := row{name: fmt.Sprintf("docker export \\| gzip \\| s3cmd put - (%d MiB)", sizeMB)}
		for r := 0; r < b.rounds; r++ {
			cfg := filepath.Join(b.dir, fmt.Sprintf("export-%d-%d.yaml", sizeMB, r))
			os.WriteFile(cfg, []byte(fmt.Sprintf(`node_id: bench
log: {level: warn}
state: {path: %s/export-state.db}
storage:
  backend: s3
  s3: {endpoint: %q, bucket: %s, region: us-east-1, access_key: %q, secret_key: %q, tls: false}
jobs:
  - {name: export, kind: container_export, schedule: "0 2 * * *", name_prefix: %s, key: "%s-%d.tar.gz"}
`, b.dir, b.s3.endpoint, bucket, b.s3.access, b.s3.secret, name, strings.TrimSuffix(layout.DefaultNightly, ".tar.gz"), r)), 0o600)
			opsd.samples = append(opsd.samples, runProcess(ctx, int64(sizeMB)<<20, bin, "backup", "containers", "-c", cfg))
			peer.samples = append(peer.samples, timedCmd(ctx, b.sz.timeLimit, int64(sizeMB)<<20, "bash", "-c",
				fmt.Sprintf("set -o pipefail; docker export %s | gzip | s3cmd -c %s --no-progress --multipart-chunk-size-mb=16 put - s3://%s/peer-%d.tar.gz", id, b.s3.s3cfg, bucket, r)))
		}
		rows = append(rows, opsd, peer)
	}
	// Ratios per size: put each opsd row first in its own table.
	table(fmt.Sprintf("export: container with %d MiB", b.sz.exportSmallMB), "Peak RSS is the `opsd backup containers` process's.", rows[:2])
	table(fmt.Sprintf("export: container with %d MiB", b.sz.exportMB), "Goal: at least 3x the shell pipeline; memory flat (no growth with size) and at most 64 MiB.", rows[2:])
	return nil
}

func (b *bench) drillScenario(ctx context.Context) error {
	for _, t := range []string{"sqlite3", "s3cmd"} {
		if err := need(t, t); err != nil {
			return err
		}
	}
	names := []string{"auth", "billing", "credits", "audit", "quotas", "tenant-keys", "snapshots"}
	store, bucket, err := b.store(ctx, "drill")
	if err != nil {
		return err
	}
	var dbs []jobs.SQLiteDatabase
	var drillDBs []checks.DrillDatabase
	for _, n := range names {
		p := filepath.Join(b.dir, "drill-"+n+".db")
		if err := demo.ItemsDB(p, b.sz.drillMB*950); err != nil {
			return err
		}
		dbs = append(dbs, jobs.SQLiteDatabase{Name: n, Path: p})
		drillDBs = append(drillDBs, checks.DrillDatabase{Name: n, Tables: []string{"items"}})
	}
	if _, err := jobs.NewSQLiteBackup("bench", jobs.SQLiteBackupConfig{Databases: dbs, KeyTemplate: layout.DefaultSQLite, TempDir: b.dir}, store).Run(ctx); err != nil {
		return err
	}
	date := layout.Date(time.Now())
	script := filepath.Join(b.dir, "drill.sh")
	var sh strings.Builder
	sh.WriteString("#!/usr/bin/env bash\nset -e\ncd \"$1\"\n")
	for _, n := range names {
		fmt.Fprintf(&sh, "s3cmd -c %s --no-progress get --force s3://%s/%s %s.db >/dev/null\n", b.s3.s3cfg, bucket, layout.MustParse(layout.DefaultSQLite).Key(layout.Fields{Target: n, Date: date}), n)
		fmt.Fprintf(&sh, "[ -s %s.db ]\n[ \"$(sqlite3 %s.db 'PRAGMA integrity_check')\" = ok ]\nsqlite3 %s.db .tables | grep -qw items\n", n, n, n)
	}
	os.WriteFile(script, []byte(sh.String()), 0o755)
	rows := []row{{name: "opsd sqlite_drill (parallel, SHA-256 verified)"}, {name: "the old script: sequential s3cmd get + sqlite3 integrity_check + .tables"}}
	for r := 0; r < b.rounds; r++ {
		d := checks.NewPlatformDrill("bench", checks.PlatformDrillConfig{Databases: drillDBs, TempDir: b.dir}, store)
		rows[0].samples = append(rows[0].samples, timed(func() (int64, error) {
			_, err := d.Run(ctx)
			return int64(7*b.sz.drillMB) << 20, err
		}))
		work := filepath.Join(b.dir, fmt.Sprintf("script-%d", r))
		os.MkdirAll(work, 0o755)
		rows[1].samples = append(rows[1].samples, timedCmd(ctx, b.sz.timeLimit, int64(7*b.sz.drillMB)<<20, "bash", script, work))
		os.RemoveAll(work)
	}
	table(fmt.Sprintf("drill: 7 databases of %d MB", b.sz.drillMB), "Goal: at most 0.6x the script's time (ratio ≥ 1.67).", rows)
	return nil
}

// opsdBinary builds the opsd binary once.
func (b *bench) opsdBinary(ctx context.Context) (string, error) {
	bin := filepath.Join(b.dir, "opsd")
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/opsd")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build opsd: %v: %s", err, out)
	}
	return bin, nil
}

// runProcess runs a command, sampling its peak RSS.
func runProcess(ctx context.Context, bytes int64, name string, args ...string) sample {
	cmd := exec.CommandContext(ctx, name, args...)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return sample{failed: err.Error()}
	}
	rs := sampleRSS(cmd.Process.Pid)
	err := cmd.Wait()
	s := sample{d: time.Since(start), rssMB: rs.Stop(), bytes: bytes}
	if err != nil {
		s.failed = fmt.Sprintf("failed: %v: %s", err, lastLine(out.String()))
	}
	return s
}

func (b *bench) pruneScenario(ctx context.Context) error {
	store := newMemStore()
	containers := b.sz.objects / 2 / 365
	if containers < 1 {
		containers = 1
	}
	tiers := []string{"free", "starter", "pro", "enterprise"}
	base := time.Date(2026, 11, 26, 3, 0, 0, 0, time.UTC)
	n := 0
	nightly := layout.MustParse(layout.DefaultNightly)
	for c := 0; n < b.sz.objects; c++ {
		name := fmt.Sprintf("tenant_%05d", c)
		for d := 0; d < 365 && n < b.sz.objects; d++ {
			key := nightly.Key(layout.Fields{Node: "n1", Target: name, Date: layout.Date(base.AddDate(0, 0, -d))})
			store.put(key, []byte("x"))
			mj := fmt.Sprintf(`{"version":1,"key":%q,"kind":"container","target":%q,"tier":%q,"sha256":"00","size":1}`, key, name, tiers[c%4])
			store.put(artifact.ManifestKey(key), []byte(mj))
			n += 2
		}
	}
	p := jobs.NewPrune("bench", jobs.PruneConfig{DryRun: true, Tiers: map[string]jobs.Tier{
		"free":       {KeepDaily: 3, OnDemandMax: 1, RetentionDays: 7},
		"starter":    {KeepDaily: 7, KeepWeekly: 4, OnDemandMax: 5, RetentionDays: 30},
		"pro":        {KeepDaily: 7, KeepWeekly: 4, OnDemandMax: 20, RetentionDays: 90},
		"enterprise": {KeepDaily: 7, KeepWeekly: 4, RetentionDays: 365}},
		Rules: []jobs.PruneRule{{Prefix: layout.Default().Root(layout.Nightly), Depth: 2, TierPolicy: "nightly", Policy: jobs.Policy{MinKeep: 1}}}, Now: func() time.Time { return base }}, store)
	rows := []row{{name: "opsd prune plan (dry run)"}}
	var res jobs.Result
	for r := 0; r < b.rounds; r++ {
		rows[0].samples = append(rows[0].samples, timed(func() (int64, error) {
			var err error
			res, err = p.Run(ctx)
			return 0, err
		}))
	}
	table(fmt.Sprintf("prune: plan over %d objects (in-memory store: listing cost excluded)", n),
		fmt.Sprintf("Plan: keep %d backups, delete %d objects. Goal: plan in at most 10 s.", res.Prune.Kept, res.Prune.Deleted), rows)
	return nil
}

// memStore is an in-memory object store: it isolates the prune planner from listing latency.
type memStore struct {
	mu   sync.Mutex
	objs map[string][]byte
	keys []string
}

func newMemStore() *memStore { return &memStore{objs: map[string][]byte{}} }

func (m *memStore) put(k string, b []byte) {
	if _, ok := m.objs[k]; !ok {
		m.keys = append(m.keys, k)
	}
	m.objs[k] = b
}

func (m *memStore) Put(ctx context.Context, key string, r io.Reader, o storage.PutOptions) (storage.ObjectInfo, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return storage.ObjectInfo{}, err
	}
	m.mu.Lock()
	m.put(key, b)
	m.mu.Unlock()
	return storage.ObjectInfo{Key: key, Size: int64(len(b))}, nil
}

func (m *memStore) Get(ctx context.Context, key string) (io.ReadCloser, storage.ObjectInfo, error) {
	m.mu.Lock()
	b, ok := m.objs[key]
	m.mu.Unlock()
	if !ok {
		return nil, storage.ObjectInfo{}, storage.ErrNotFound
	}
	return io.NopCloser(bytes.NewReader(b)), storage.ObjectInfo{Key: key, Size: int64(len(b))}, nil
}

func (m *memStore) Stat(ctx context.Context, key string) (storage.ObjectInfo, error) {
	_, info, err := m.Get(ctx, key)
	return info, err
}

func (m *memStore) List(ctx context.Context, prefix string, fn func(storage.ObjectInfo) error) error {
	m.mu.Lock()
	sort.Strings(m.keys)
	keys := append([]string(nil), m.keys...)
	m.mu.Unlock()
	for _, k := range keys {
		if strings.HasPrefix(k, prefix) {
			if err := fn(storage.ObjectInfo{Key: k, Size: int64(len(m.objs[k])), ModTime: time.Now().Add(-48 * time.Hour)}); err != nil {
				return err
			}
		}
	}
	return nil
}

func (m *memStore) Delete(ctx context.Context, key string) error {
	m.mu.Lock()
	delete(m.objs, key)
	m.mu.Unlock()
	return nil
}

func (m *memStore) Copy(ctx context.Context, src, dst string) (storage.ObjectInfo, error) {
	m.mu.Lock()
	b, ok := m.objs[src]
	if ok {
		m.put(dst, b)
	}
	m.mu.Unlock()
	if !ok {
		return storage.ObjectInfo{}, storage.ErrNotFound
	}
	return storage.ObjectInfo{Key: dst, Size: int64(len(b))}, nil
}

func (m *memStore) AbortIncompleteUploads(context.Context, string, time.Duration) (int, error) {
	return 0, nil
}

func (m *memStore) String() string { return "memory" }
