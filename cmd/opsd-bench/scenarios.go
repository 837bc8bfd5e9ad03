package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	_ "modernc.org/sqlite"

	"github.com/wopr-network/opsd/internal/artifact"
	"github.com/wopr-network/opsd/internal/layout"
	"github.com/wopr-network/opsd/internal/metrics"
	"github.com/wopr-network/opsd/internal/storage"
	"github.com/wopr-network/opsd/jobs"
)

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
	if cmd.ProcessState != nil {
		s.cpu = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	}
	if err != nil {
		s.failed = fmt.Sprintf("failed: %v: %s", err, lastLine(out.String()))
	}
	return s
}

func (b *bench) idleScenario(ctx context.Context) error {
	bin, err := b.opsdBinary(ctx)
	if err != nil {
		return err
	}
	cfg := filepath.Join(b.dir, "idle.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`node_id: bench
http: {listen: "127.0.0.1:0"}
state: {path: %[1]s/idle-state.db}
storage: {backend: local, local: {path: %[1]s/idle-store}}
jobs:
  - {name: platform-db-backup, kind: sqlite_backup, schedule: "0 3 * * *"}
  - {name: platform-drill, kind: sqlite_drill, schedule: "@monthly"}
  - {name: offsite-verify, kind: offsite_verify, schedule: "0 7 * * *"}
  - {name: prune, kind: prune, schedule: "30 5 * * *"}
  - {name: heartbeat, kind: http_ping, schedule: "0 * * * *", url: "http://127.0.0.1:9/"}
`, b.dir)), 0o600)
	cmd := exec.CommandContext(ctx, bin, "run", "-c", cfg, "--log-level", "warn")
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() { cmd.Process.Signal(os.Interrupt); cmd.Wait() }()
	time.Sleep(3 * time.Second)
	t0, c0 := time.Now(), cpuTicks(cmd.Process.Pid)
	rs := sampleRSS(cmd.Process.Pid)
	time.Sleep(b.sz.idle)
	cpu := float64(cpuTicks(cmd.Process.Pid)-c0) / 100 / time.Since(t0).Seconds() * 100
	rss := rs.Stop()
	fmt.Printf("## idle: `opsd run` with the example's jobs, idle for %s\n\nGoal: CPU at most 0.01%%, RSS at most 30 MB.\n\n| measure | value |\n|---|---|\n| CPU | %.3f%% |\n| peak RSS | %.1f MiB |\n\n", b.sz.idle, cpu, rss)
	return nil
}

// cpuTicks returns utime+stime of a process in clock ticks (100/s on Linux).
func cpuTicks(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	u, _ := strconv.ParseInt(f[11], 10, 64)
	s, _ := strconv.ParseInt(f[12], 10, 64)
	return u + s
}

func (b *bench) scrapeScenario(ctx context.Context) error {
	reg := prometheus.NewRegistry()
	m := metrics.New(reg, "bench")
	now := time.Now()
	for i := 0; i < b.sz.targets; i++ {
		m.Backups.Set(fmt.Sprintf("tenant_%05d", i), metrics.TargetState{Kind: "container", Node: "n1", LastSuccess: now.Add(-time.Duration(i) * time.Minute), LastOK: true, SizeBytes: int64(i) << 20})
	}
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer srv.Close()
	var lat []time.Duration
	var size int
	for i := 0; i < 200; i++ {
		start := time.Now()
		resp, err := http.Get(srv.URL)
		if err != nil {
			return err
		}
		n, _ := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		lat = append(lat, time.Since(start))
		size = int(n)
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	fmt.Printf("## scrape: `/metrics` with %d tracked targets (%d KiB per scrape, 200 scrapes)\n\nGoal: p99 at most 50 ms.\n\n| p50 | p90 | p99 | max |\n|---|---|---|---|\n| %s | %s | %s | %s |\n\n",
		b.sz.targets, size>>10, dur(lat[100]), dur(lat[180]), dur(lat[198]), dur(lat[199]))
	return nil
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
