package main

import (
	"compress/gzip"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
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

	"github.com/wopr-network/opsd/internal/metrics"
)

// idleScenario runs `opsd run` with config/example.yaml's jobs, as the idle goal states: a local
// store instead of S3, paths under the work directory, the heartbeat pinging a local server. The
// job file sits alone in its directory, which the daemon watches. CPU counts from 15 s after
// the start (past the runs due at start) for the size's idle time.
func (b *bench) idleScenario(ctx context.Context) error {
	bin, err := b.opsdBinary(ctx)
	if err != nil {
		return err
	}
	example, err := os.ReadFile("config/example.yaml")
	if err != nil {
		return fmt.Errorf("read the example's jobs: %w", err)
	}
	root := filepath.Join(b.dir, "idle")
	for _, d := range []string{"cfg", "lib/tmp", "data/platform", "data/instances"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			return fmt.Errorf("idle dirs: %w", err)
		}
	}
	cfgText := strings.NewReplacer("/var/lib/opsd", root+"/lib", "/data/", root+"/data/", "listen: 0.0.0.0:9100", `listen: "127.0.0.1:0"`).Replace(string(example))
	cfgText = strings.Replace(cfgText, "backend: s3 ", "backend: local ", 1)
	cfg := filepath.Join(root, "cfg", "example.yaml")
	if err := os.WriteFile(cfg, []byte(cfgText), 0o600); err != nil {
		return fmt.Errorf("write idle config: %w", err)
	}
	ping := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer ping.Close()
	cmd := exec.CommandContext(ctx, bin, "run", "-c", cfg, "--log-level", "warn")
	cmd.Env = append(os.Environ(), "NODE_ID=bench", "HEARTBEAT_URL="+ping.URL, "OPSD_ADMIN_TOKEN=bench-idle-admin-token-0123456789")
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() { cmd.Process.Signal(os.Interrupt); cmd.Wait() }()
	// Past start-up: the runs due at start.
	time.Sleep(15 * time.Second)
	pid := cmd.Process.Pid
	t0, c0, n0 := time.Now(), cpuTicks(pid), cpuNanos(pid)
	rs := sampleRSS(pid)
	time.Sleep(b.sz.idle)
	el := time.Since(t0).Seconds()
	cpu := float64(cpuTicks(pid)-c0) / 100 / el * 100
	cpuNs := float64(cpuNanos(pid)-n0) / 1e9 / el * 100
	rss := rs.Stop()
	anon, file := rssSplit(pid)
	fmt.Printf("## idle: `opsd run` with config/example.yaml's jobs (local store), idle for %s\n\nGoal: CPU at most 0.01%%, RSS at most 25 MiB. CPU from /proc/<pid>/stat (utime+stime, 10 ms ticks) and from the threads' schedstat (ns).\n\n| measure | value |\n|---|---|\n| CPU (stat) | %.4f%% |\n| CPU (schedstat) | %.4f%% |\n| peak RSS | %.1f MiB |\n| RSS at the end: anonymous / file | %.1f / %.1f MiB |\n\n", b.sz.idle, cpu, cpuNs, rss, anon, file)
	return nil
}

// rssSplit returns a process's anonymous and file-backed resident memory in MiB.
func rssSplit(pid int) (anon, file float64) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		v, _ := strconv.ParseFloat(f[1], 64)
		switch f[0] {
		case "RssAnon:":
			anon = v / 1024
		case "RssFile:":
			file = v / 1024
		}
	}
	return anon, file
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

// cpuNanos returns the time on CPU of a process's threads in nanoseconds (schedstat).
func cpuNanos(pid int) int64 {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/schedstat", pid))
	var n int64
	for _, t := range tasks {
		if b, err := os.ReadFile(t); err == nil {
			if f := strings.Fields(string(b)); len(f) > 0 {
				v, _ := strconv.ParseInt(f[0], 10, 64)
				n += v
			}
		}
	}
	return n
}

// scrapeScenario serves /metrics as the daemon does (metrics.Registry, metrics.Handler) with
// the state a nightly export leaves (each target tracked, with its throughput and three
// phases), at the size's target count and ten times it. It measures the CPU time of a scrape
// alone, then the latency of scrapes while a backup runs beside them: a goroutine compressing
// and hashing data as an export does, recording a target every 10 ms.
func (b *bench) scrapeScenario(ctx context.Context) error {
	var rows []string
	for _, n := range []int{b.sz.targets, 10 * b.sz.targets} {
		reg := metrics.NewRegistry()
		m := metrics.New(reg, "bench")
		now := time.Now()
		for i := 0; i < n; i++ {
			name := fmt.Sprintf("tenant_%05d", i)
			m.Backups.Set(name, metrics.TargetState{Job: "containers-nightly", Kind: "container", Node: "n1", LastSuccess: now.Add(-time.Duration(i) * time.Second), LastOK: true, SizeBytes: int64(i) << 20})
			m.Throughput.WithLabelValues("containers-nightly", name).Set(float64(i) * 1234.5)
			for _, p := range []string{"copy", "check", "upload"} {
				m.BackupPhase.WithLabelValues("containers-nightly", name, p).Set(float64(i%600) / 10)
			}
		}
		srv := httptest.NewServer(metrics.Handler(reg))
		scrape := func() (time.Duration, int, error) {
			start := time.Now()
			req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
			req.Header.Set("Accept-Encoding", "gzip") // as Prometheus asks; decompressing is the scraper's CPU
			resp, err := http.DefaultTransport.RoundTrip(req)
			if err != nil {
				return 0, 0, err
			}
			size, _ := io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			return time.Since(start), int(size), nil
		}
		const quiet = 50
		c0 := selfCPU()
		var size int
		for i := 0; i < quiet; i++ {
			var err error
			if _, size, err = scrape(); err != nil {
				srv.Close()
				return err
			}
		}
		cpuPer := (selfCPU() - c0) / quiet
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(1)
		go func() { // the backup beside the scrapes
			defer wg.Done()
			buf := make([]byte, 1<<20)
			for i := range buf {
				buf[i] = byte(rand.IntN(16))
			}
			zw := gzip.NewWriter(io.Discard)
			h := sha256.New()
			last := time.Now()
			for k := 0; ; k++ {
				select {
				case <-stop:
					return
				default:
				}
				zw.Write(buf)
				h.Write(buf)
				if time.Since(last) > 10*time.Millisecond {
					last = time.Now()
					m.Backups.Set(fmt.Sprintf("tenant_%05d", k%n), metrics.TargetState{Job: "containers-nightly", Kind: "container", Node: "n1", LastSuccess: last, LastOK: true, SizeBytes: int64(k)})
				}
			}
		}()
		var lat []time.Duration
		for i := 0; i < 200; i++ {
			d, _, err := scrape()
			if err != nil {
				close(stop)
				wg.Wait()
				srv.Close()
				return err
			}
			lat = append(lat, d)
		}
		close(stop)
		wg.Wait()
		srv.Close()
		sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
		rows = append(rows, fmt.Sprintf("| %d | %d KiB | %s | %s | %s | %s | %s |", n, size>>10, dur(cpuPer), dur(lat[100]), dur(lat[180]), dur(lat[198]), dur(lat[199])))
	}
	fmt.Printf("## scrape: `/metrics` as Prometheus fetches it, while a backup runs\n\nEach target tracked with its throughput and three phases (5 series); 200 scrapes beside a goroutine compressing and hashing as an export does. CPU per scrape: the bench process's CPU time over %d scrapes with nothing else running (the client reads the gzip body without decompressing it, as the scraper's own CPU is not opsd's). Goal: p99 at most 25 ms at 10,000 targets, 250 ms at 100,000.\n\n| targets | gzip body | CPU per scrape | p50 | p90 | p99 | max |\n|---|---|---|---|---|---|---|\n%s\n\n", 50, strings.Join(rows, "\n"))
	return nil
}
