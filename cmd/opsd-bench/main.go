// Command opsd-bench measures opsd against the tools operators would otherwise use, side by side
// on the same machine in the same run: each scenario runs opsd and its peer alternately for
// several rounds and prints a Markdown table (median, min, max, throughput, peak RSS, ratio).
//
//	go run ./cmd/opsd-bench [--size tiny|small|full] [--rounds N] [--slow-disk] [scenario...]
//
// --slow-disk (root) puts the work directory and the S3 engine's data on a throttled loop device
// (slowdisk.go) that reproduces a machine with a slower disk.
//
// Scenarios: sqlite, upload, export, drill, idle, scrape, prune, node-restore (default: all). It starts what it
// needs on loopback: the S3 engine of the integration tier (.ci/start-seaweedfs.sh) unless
// OPSD_TEST_S3_ENDPOINT is set, and a container built with `docker import`.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"time"
)

func main() { os.Exit(run()) }

// sizes per profile: tiny is the CI smoke run, full the README's numbers.
type sizes struct {
	sqliteMB, uploadMB, exportMB, exportSmallMB, drillMB int
	postgresMB                                           int
	idle                                                 time.Duration
	targets, objects                                     int
	nodeContainers, nodeMB                               int
	timeLimit                                            time.Duration
}

var profiles = map[string]sizes{
	"tiny":  {sqliteMB: 20, uploadMB: 16, exportMB: 16, exportSmallMB: 8, drillMB: 4, idle: 3 * time.Second, targets: 1000, objects: 5000, postgresMB: 20, timeLimit: 30 * time.Second, nodeContainers: 3, nodeMB: 4},
	"small": {sqliteMB: 200, uploadMB: 256, exportMB: 512, exportSmallMB: 128, drillMB: 50, idle: 20 * time.Second, targets: 10000, objects: 100000, postgresMB: 256, timeLimit: 2 * time.Minute, nodeContainers: 10, nodeMB: 50},
	"full":  {sqliteMB: 1024, uploadMB: 1024, exportMB: 2048, exportSmallMB: 512, drillMB: 200, idle: 60 * time.Second, targets: 10000, objects: 100000, postgresMB: 1024, timeLimit: 5 * time.Minute, nodeContainers: 50, nodeMB: 100},
}

type bench struct {
	sz     sizes
	rounds int
	dir    string
	s3     s3Env
	slow   *slowDisk // nil unless --slow-disk
	// node-restore: the --parallel values and the export formats measured.
	nodeParallel []int
	nodeFormats  []string
}

func run() int {
	size := flag.String("size", "small", "tiny (CI smoke), small, or full (the README's numbers)")
	rounds := flag.Int("rounds", 3, "rounds per scenario (opsd and peer alternate)")
	keep := flag.Bool("keep", false, "keep the work directory")
	limit := flag.Duration("time-limit", 0, "give up on a peer run after this long and report \"did not finish\" (default per size)")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the bench process (opsd's in-process scenarios) to this file")
	slow := flag.Bool("slow-disk", false, "run on a throttled loop device (root; see slowdisk.go and the README)")
	var sd slowDiskConfig
	flag.IntVar(&sd.MBps, "slow-disk-mbps", 150, "--slow-disk: read and write bandwidth, MB/s")
	flag.IntVar(&sd.IOPS, "slow-disk-iops", 3000, "--slow-disk: read and write requests per second (0: no limit)")
	flag.IntVar(&sd.DirtyMB, "slow-disk-dirty-mb", 256, "--slow-disk: cap on the device's dirty page cache, MiB (0: kernel default)")
	flag.IntVar(&sd.SizeGB, "slow-disk-gb", 24, "--slow-disk: size of the sparse disk image, GiB")
	flag.StringVar(&sd.Parent, "slow-disk-image-dir", "", "--slow-disk: directory for the image file (default: the temp dir)")
	nodePar := flag.String("node-parallel", "4,8", "node-restore: the `opsd restore node --parallel` values measured (comma-separated)")
	nodeFormats := flag.String("node-formats", "gzip,zstd", "node-restore: the lost node's export compressions measured (gzip, zstd)")
	flag.Usage = func() {
		fmt.Fprintf(os.Stderr, "Usage: go run ./cmd/opsd-bench [--size tiny|small|full] [--rounds N] [sqlite upload export drill idle scrape prune node-restore postgres coordination]\n\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	sz, ok := profiles[*size]
	if !ok {
		fmt.Fprintf(os.Stderr, "opsd-bench: unknown size %q\n", *size)
		return 2
	}
	all := []string{"sqlite", "upload", "export", "drill", "idle", "scrape", "prune", "node-restore", "postgres", "coordination"}
	scen := flag.Args()
	if len(scen) == 0 || (len(scen) == 1 && scen[0] == "all") {
		scen = all
	}
	for _, s := range scen {
		if !contains(all, s) {
			fmt.Fprintf(os.Stderr, "opsd-bench: unknown scenario %q (one of %s)\n", s, strings.Join(all, ", "))
			return 2
		}
	}
	var disk *slowDisk
	if *slow {
		var err error
		if disk, err = newSlowDisk(context.Background(), sd); err != nil {
			fmt.Fprintf(os.Stderr, "opsd-bench: %v\n", err)
			return 1
		}
		defer disk.Close()
		os.Setenv("OPSD_WEED_DIR", filepath.Join(disk.Dir, "weed")) // the S3 engine's data too
		os.Setenv("TMPDIR", disk.Dir)                               // and every tool's temp files
	}
	dir, err := os.MkdirTemp(os.Getenv("TMPDIR"), "opsd-bench-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if !*keep {
		defer os.RemoveAll(dir)
	}
	if *limit > 0 {
		sz.timeLimit = *limit
	}
	b := &bench{sz: sz, rounds: *rounds, dir: dir, slow: disk, nodeFormats: strings.Split(*nodeFormats, ",")}
	for _, p := range strings.Split(*nodePar, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(p))
		if err != nil || n < 1 {
			fmt.Fprintf(os.Stderr, "opsd-bench: --node-parallel %q: want numbers of at least 1\n", *nodePar)
			return 2
		}
		b.nodeParallel = append(b.nodeParallel, n)
	}
	for _, f := range b.nodeFormats {
		if f != "gzip" && f != "zstd" {
			fmt.Fprintf(os.Stderr, "opsd-bench: --node-formats: %q is neither gzip nor zstd\n", f)
			return 2
		}
	}
	ctx := context.Background()
	needS3 := contains(scen, "sqlite") || contains(scen, "upload") || contains(scen, "export") || contains(scen, "drill") || contains(scen, "node-restore") || contains(scen, "postgres")
	if needS3 {
		stop, err := b.startS3(ctx)
		if err != nil {
			fmt.Fprintf(os.Stderr, "opsd-bench: %v\n", err)
			return 1
		}
		defer stop()
	}
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	fmt.Printf("# opsd-bench (%s sizes, %d rounds, %s, %d cores)\n\n", *size, *rounds, time.Now().UTC().Format("2006-01-02"), numCPU())
	if disk != nil {
		fmt.Printf("On a %s.\n\n", disk)
	}
	failed := false
	for _, s := range scen {
		var err error
		switch s {
		case "sqlite":
			err = b.sqliteScenario(ctx)
		case "upload":
			err = b.uploadScenario(ctx)
		case "export":
			err = b.exportScenario(ctx)
		case "drill":
			err = b.drillScenario(ctx)
		case "idle":
			err = b.idleScenario(ctx)
		case "scrape":
			err = b.scrapeScenario(ctx)
		case "prune":
			err = b.pruneScenario(ctx)
		case "node-restore":
			err = b.nodeRestoreScenario(ctx)
		case "postgres":
			err = b.postgresScenario(ctx)
		case "coordination":
			err = b.coordinationScenario(ctx)
		}
		if err != nil {
			fmt.Printf("**%s: failed: %v**\n\n", s, err)
			failed = true
		}
	}
	if failed || broken {
		return 1
	}
	return 0
}

func contains(xs []string, x string) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}

// sample is one timed run.
type sample struct {
	d       time.Duration
	rssMB   float64
	failed  string        // e.g. "did not finish in 5m"
	cpu     time.Duration // user+system CPU of the process that did the work (0: not measured)
	bytes   int64
	comment string
}

// row is one variant of a scenario.
type row struct {
	name    string
	samples []sample
}

func (r row) median() time.Duration {
	ds := r.durations()
	if len(ds) == 0 {
		return 0
	}
	return ds[len(ds)/2]
}

func (r row) durations() []time.Duration {
	var ds []time.Duration
	for _, s := range r.samples {
		if s.failed == "" {
			ds = append(ds, s.d)
		}
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	return ds
}

// broken is set when a variant failed for another reason than its time limit.
var broken bool

// table prints a scenario's rows; the ratio is the first row's median over each row's.
func table(title, note string, rows []row) {
	fmt.Printf("## %s\n\n", title)
	if note != "" {
		fmt.Printf("%s\n\n", note)
	}
	fmt.Println("| variant | median | min | max | throughput | CPU (median) | peak RSS | first row's time / this row's |")
	fmt.Println("|---|---|---|---|---|---|---|---|")
	base := rows[0].median()
	for _, r := range rows {
		ds := r.durations()
		var fails []string
		var rss float64
		var bytes int64
		var cpus []time.Duration
		for _, s := range r.samples {
			if s.cpu > 0 && s.failed == "" {
				cpus = append(cpus, s.cpu)
			}
			if s.failed != "" {
				fails = append(fails, s.failed)
				if !strings.HasPrefix(s.failed, "did not finish") {
					broken = true // a tool that errors (not one that is slow) means the harness rotted
				}
			}
			rss = max(rss, s.rssMB)
			bytes = max(bytes, s.bytes)
		}
		if len(ds) == 0 {
			fmt.Printf("| %s | %s | | | | | %s | |\n", r.name, strings.Join(uniq(fails), "; "), mb(rss))
			continue
		}
		tp := ""
		if bytes > 0 {
			tp = fmt.Sprintf("%.0f MB/s", float64(bytes)/1e6/r.median().Seconds())
		}
		ratio := ""
		if base > 0 {
			ratio = fmt.Sprintf("%.2f", base.Seconds()/r.median().Seconds())
		}
		med := dur(r.median())
		if len(fails) > 0 {
			med += fmt.Sprintf(" (%d of %d: %s)", len(fails), len(r.samples), strings.Join(uniq(fails), "; "))
		}
		cpu := ""
		if len(cpus) > 0 {
			sort.Slice(cpus, func(i, j int) bool { return cpus[i] < cpus[j] })
			cpu = fmt.Sprintf("%.2fs", cpus[len(cpus)/2].Seconds())
		}
		fmt.Printf("| %s | %s | %s | %s | %s | %s | %s | %s |\n", r.name, med, dur(ds[0]), dur(ds[len(ds)-1]), tp, cpu, mb(rss), ratio)
	}
	fmt.Println()
}

func uniq(xs []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, x := range xs {
		if !seen[x] {
			seen[x] = true
			out = append(out, x)
		}
	}
	return out
}

func dur(d time.Duration) string {
	switch {
	case d >= time.Minute:
		return d.Round(100 * time.Millisecond).String()
	case d >= time.Second:
		return fmt.Sprintf("%.2fs", d.Seconds())
	}
	return fmt.Sprintf("%.1fms", float64(d.Microseconds())/1000)
}

func mb(v float64) string {
	if v == 0 {
		return ""
	}
	return fmt.Sprintf("%.0f MiB", v)
}

// need checks a peer tool is installed, naming the install command when it is not.
func need(tool, pkg string) error {
	if _, err := exec.LookPath(tool); err != nil {
		return fmt.Errorf("%s is not installed: apt-get install -y %s", tool, pkg)
	}
	return nil
}
