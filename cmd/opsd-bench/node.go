package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/moby/moby/api/types/container"

	"github.com/wopr-network/opsd/internal/docker"
	"github.com/wopr-network/opsd/internal/layout"
	"github.com/wopr-network/opsd/internal/restore"
)

// nodeRestoreScenario is runbook Procedure 3: a "lost" node's tenant containers, exported to the
// S3 engine, restored onto this machine by `opsd restore node` next to the runbook's way (a
// sequential shell loop of s3cmd get, docker import and docker run per container).
func (b *bench) nodeRestoreScenario(ctx context.Context) error {
	for _, t := range [][2]string{{"docker", "docker.io"}, {"s3cmd", "s3cmd"}} {
		if err := need(t[0], t[1]); err != nil {
			return err
		}
	}
	dc, img, err := benchDocker(ctx)
	if err != nil {
		return err
	}
	defer dc.Close()
	n, sizeMB := b.sz.nodeContainers, b.sz.nodeMB
	// OPSD_BENCH_TAG keeps two benches on one shared engine apart (names and images).
	prefix := "tenant_benchnode_"
	if tag := os.Getenv("OPSD_BENCH_TAG"); tag != "" {
		prefix = "tenant_" + tag + "_"
	}
	var names []string
	removeAll := func(extra ...string) {
		for _, name := range names {
			dc.Remove(context.Background(), name)
			for _, e := range extra {
				dc.Remove(context.Background(), e+name)
			}
		}
		out, _ := exec.Command("docker", "images", "-q", "--filter", "reference=opsd-restore/"+prefix+"*", "--filter", "reference=bench-peer/"+prefix+"*").Output()
		for _, id := range strings.Fields(string(out)) {
			dc.RemoveImage(context.Background(), id)
		}
	}
	defer removeAll("peer_")
	half := sizeMB / 2
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("%s%02d", prefix, i)
		names = append(names, name)
		dc.Remove(ctx, name)
		id, err := dc.Create(ctx, name, &container.Config{Image: img, Env: []string{fmt.Sprintf("TENANT=%d", i)}, Cmd: []string{"/bin/sh", "-c",
			fmt.Sprintf("[ -f /data/random ] || { dd if=/dev/urandom of=/data/random bs=1M count=%d 2>/dev/null; i=0; while [ $i -lt %d ]; do cat /bin/busybox; i=$((i+1)); done | head -c %d > /data/binaries; }; exec sleep 3600", half, half*2, half<<20)}},
			&container.HostConfig{RestartPolicy: container.RestartPolicy{Name: container.RestartPolicyUnlessStopped}})
		if err != nil {
			return err
		}
		if err := dc.Start(ctx, id); err != nil {
			return err
		}
	}
	// Wait until every container wrote its data (the file exists at its full size).
	for _, name := range names {
		for {
			out, _ := exec.CommandContext(ctx, "docker", "exec", name, "/bin/sh", "-c", "test -f /data/binaries && ls -l /data/binaries").Output()
			if strings.Contains(string(out), fmt.Sprint(half<<20)) {
				break
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(500 * time.Millisecond):
			}
		}
	}
	store, bucket, err := b.store(ctx, "node")
	if err != nil {
		return err
	}
	bin, err := b.opsdBinary(ctx)
	if err != nil {
		return err
	}
	config := func(node, compression string) string {
		p := filepath.Join(b.dir, "node-"+node+".yaml")
		os.WriteFile(p, []byte(fmt.Sprintf(`node_id: %s
log: {level: warn}
state: {path: %s/node-%s-state.db}
storage:
  backend: s3
  s3: {endpoint: %q, bucket: %s, region: us-east-1, access_key: %q, secret_key: %q, tls: false}
jobs:
  - {name: export, kind: container_export, schedule: "0 2 * * *", name_prefix: %s, compression: %s}
`, node, b.dir, node, b.s3.endpoint, bucket, b.s3.access, b.s3.secret, prefix, compression)), 0o600)
		return p
	}
	fresh := config("fresh", "gzip")
	total := int64(n*sizeMB) << 20
	// Each format is a lost node of its own: the same containers exported with that compression.
	type variant struct {
		format, node, script string
		rows                 []int // opsd's rows (one per --parallel), then the loop's
	}
	var variants []*variant
	var rows []row
	for _, f := range b.nodeFormats {
		v := &variant{format: f, node: "lost-" + f}
		if f == "zstd" {
			if err := need("zstd", "zstd"); err != nil {
				return err
			}
		}
		if out, err := exec.CommandContext(ctx, bin, "backup", "containers", "-c", config(v.node, f)).CombinedOutput(); err != nil {
			return fmt.Errorf("export the lost node (%s): %v: %s", f, err, lastLine(string(out)))
		}
		keys, err := restore.NodeCandidates(ctx, store, layout.Default(), v.node)
		if err != nil {
			return err
		}
		v.script = filepath.Join(b.dir, "node-restore-"+f+".sh")
		var sh strings.Builder
		// Each step's wall time is appended to a file per step, to split the loop's time like
		// opsd's phases. A zstd export must be decompressed before `docker import` (this engine
		// refuses a .tar.zst): zstd -dc pipes into it, overlapped.
		sh.WriteString("#!/usr/bin/env bash\nset -eo pipefail\ncd \"$1\"\nTIMEFORMAT=%R\n")
		for _, name := range names {
			k, ok := keys[name]
			if !ok {
				return fmt.Errorf("the %s export of %s is missing", f, name)
			}
			file := name + ".tar.gz"
			importCmd := fmt.Sprintf("docker import %s bench-peer/%s >/dev/null", file, name)
			if f == "zstd" {
				file = name + ".tar.zst"
				importCmd = fmt.Sprintf("zstd -dcq %s | docker import - bench-peer/%s >/dev/null", file, name)
			}
			fmt.Fprintf(&sh, "{ time s3cmd -c %s --no-progress get --force s3://%s/%s %s >/dev/null; } 2>>get.times\n", b.s3.s3cfg, bucket, k, file)
			fmt.Fprintf(&sh, "{ time %s; } 2>>import.times\nrm -f %s\n", importCmd, file)
			fmt.Fprintf(&sh, "{ time docker run -d --name peer_%s --restart unless-stopped -e TENANT=x bench-peer/%s /bin/sh -c 'exec sleep 3600' >/dev/null; } 2>>run.times\n", name, name)
		}
		os.WriteFile(v.script, []byte(sh.String()), 0o755)
		for _, p := range b.nodeParallel {
			v.rows = append(v.rows, len(rows))
			rows = append(rows, row{name: fmt.Sprintf("%s exports: opsd restore node --parallel %d (%d containers, SHA-256 verified, spec recreated, probed 1s)", f, p, n)})
		}
		v.rows = append(v.rows, len(rows))
		loop := "the runbook's loop: s3cmd get + docker import + docker run, sequential"
		if f == "zstd" {
			loop = "the runbook's loop: s3cmd get + zstd -dc piped into docker import + docker run, sequential"
		}
		rows = append(rows, row{name: f + " exports: " + loop})
		variants = append(variants, v)
	}
	var split []string
	for r := 0; r < b.rounds; r++ {
		for _, v := range variants {
			for i, p := range b.nodeParallel {
				removeAll("peer_")
				s, line := b.runNodeRestore(ctx, total, bin, fresh, v.node, p)
				rows[v.rows[i]].samples = append(rows[v.rows[i]].samples, s)
				split = append(split, fmt.Sprintf("| %d | %s: opsd --parallel %d | %s |", r+1, v.format, p, line))
			}
			removeAll("peer_")
			work := filepath.Join(b.dir, fmt.Sprintf("node-script-%s-%d", v.format, r))
			os.MkdirAll(work, 0o755)
			d0, c0, s0, l0 := dockerdCPU(), childrenCPU(), s3CPU(), loadAvg()
			s := timedCmd(ctx, b.sz.timeLimit, total, "bash", v.script, work)
			cpu := childrenCPU() - c0 // the loop and every process it waited for
			s.cpu = time.Duration(cpu * float64(time.Second))
			rows[v.rows[len(v.rows)-1]].samples = append(rows[v.rows[len(v.rows)-1]].samples, s)
			split = append(split, fmt.Sprintf("| %d | %s: loop | %s | %.1f s (s3cmd, docker CLI, zstd) | %.1f s | %.1f s | %s → %s | get %.1f s, import %.1f s, run %.1f s |", r+1, v.format, dur(s.d), cpu,
				dockerdCPU()-d0, s3CPU()-s0, l0, loadAvg(),
				sumTimes(filepath.Join(work, "get.times")), sumTimes(filepath.Join(work, "import.times")), sumTimes(filepath.Join(work, "run.times"))))
			os.RemoveAll(work)
		}
	}
	table(fmt.Sprintf("node-restore: %d containers of %d MiB from a lost node", n, sizeMB),
		"Goal: at least 3x faster than the loop; on 2 cores the whole node in under 5 minutes. Peak RSS is the `opsd restore node` process's; CPU is the client's (opsd, or the loop with its tools), not dockerd's or the S3 engine's (below).", rows)
	fmt.Println("Where the time goes (CPU seconds from rusage and /proc/<pid>/stat, self and reaped children; opsd's phases are summed over containers, so they add up to more than the wall time when containers run in parallel; load is the 1-minute load average before → after):")
	fmt.Println()
	fmt.Println("| round | run | wall | client CPU | dockerd CPU | S3 engine CPU | load | phases |")
	fmt.Println("|---|---|---|---|---|---|---|---|")
	for _, l := range split {
		fmt.Println(l)
	}
	fmt.Println()
	return nil
}

// runNodeRestore runs `opsd restore node -o json` and returns its sample and a breakdown line:
// wall, opsd's CPU, dockerd's CPU, the S3 engine's CPU, the load average and the phases summed
// over containers.
func (b *bench) runNodeRestore(ctx context.Context, total int64, bin, cfg, from string, parallel int) (sample, string) {
	cmd := exec.CommandContext(ctx, bin, "restore", "node", "-c", cfg, "--from", from, "--probe", "1s", "--parallel", fmt.Sprint(parallel), "-o", "json")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	d0, s0, l0 := dockerdCPU(), s3CPU(), loadAvg()
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return sample{failed: err.Error()}, ""
	}
	rs := sampleRSS(cmd.Process.Pid)
	err := cmd.Wait()
	s := sample{d: time.Since(start), rssMB: rs.Stop(), bytes: total}
	s.cpu = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	dcpu, scpu := dockerdCPU()-d0, s3CPU()-s0
	if err != nil {
		s.failed = fmt.Sprintf("failed: %v: %s", err, lastLine(stderr.String()))
	}
	var rep restore.NodeReport // after the progress lines
	if i := bytes.Index(stdout.Bytes(), []byte("\n{")); i >= 0 {
		json.Unmarshal(stdout.Bytes()[i+1:], &rep)
	}
	sum := map[string]float64{}
	for _, c := range rep.Containers {
		for p, v := range c.Phases {
			sum[p] += v
		}
	}
	var phases []string
	for _, p := range restore.RecreatePhases {
		if v, ok := sum[p]; ok {
			phases = append(phases, fmt.Sprintf("%s %.1f s", p, v))
		}
	}
	return s, fmt.Sprintf("%s | %.1f s | %.1f s | %.1f s | %s → %s | %s", dur(s.d), s.cpu.Seconds(), dcpu, scpu, l0, loadAvg(), strings.Join(phases, ", "))
}

// s3CPU is the S3 engine's CPU seconds when its pid is known (OPSD_WEED_PID), else 0.
func s3CPU() float64 { return procCPU(os.Getenv("OPSD_WEED_PID"), false) }

// statCPU adds up utime, stime, cutime and cstime of a /proc/<pid>/stat line, in seconds.
func statCPU(stat string) float64 {
	_, rest, _ := strings.Cut(stat, ") ")
	f := strings.Fields(rest) // f[0] is field 3 (state): utime..cstime are fields 14-17
	if len(f) < 15 {
		return 0
	}
	var ticks float64
	for _, i := range []int{11, 12, 13, 14} {
		v, _ := strconv.ParseFloat(f[i], 64)
		ticks += v
	}
	return ticks / 100 // USER_HZ
}

// loadAvg is the 1-minute load average.
func loadAvg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); len(f) > 0 {
		return f[0]
	}
	return "?"
}

// dockerdCPU returns the CPU seconds dockerd and its reaped children (the layer appliers it
// re-executes) have used, 0 when it is not found.
func dockerdCPU() float64 {
	dirs, _ := os.ReadDir("/proc")
	for _, d := range dirs {
		if comm, err := os.ReadFile(filepath.Join("/proc", d.Name(), "comm")); err != nil || strings.TrimSpace(string(comm)) != "dockerd" {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", d.Name(), "stat"))
		if err != nil {
			return 0
		}
		return statCPU(string(stat))
	}
	return 0
}

// childrenCPU returns the CPU seconds of this process's reaped children.
func childrenCPU() float64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_CHILDREN, &ru)
	return float64(ru.Utime.Sec+ru.Stime.Sec) + float64(ru.Utime.Usec+ru.Stime.Usec)/1e6
}

// sumTimes adds up the seconds in a file of bash `time` outputs (TIMEFORMAT=%R), one per line.
func sumTimes(path string) float64 {
	b, _ := os.ReadFile(path)
	var t float64
	for _, l := range strings.Fields(string(b)) {
		v, _ := strconv.ParseFloat(l, 64)
		t += v
	}
	return t
}

// benchDocker connects to the Docker engine and imports the busybox image the scenarios run.
func benchDocker(ctx context.Context) (*docker.Client, string, error) {
	dc, err := docker.New("")
	if err != nil {
		return nil, "", err
	}
	rootfs, err := docker.BusyboxRootFS()
	if err == nil {
		var img string
		if img, err = dc.Import(ctx, bytes.NewReader(rootfs), "opsd-bench/busybox:latest"); err == nil {
			return dc, img, nil
		}
	}
	dc.Close()
	return nil, "", err
}
