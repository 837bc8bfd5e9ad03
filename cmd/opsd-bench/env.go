package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/wopr-network/opsd/internal/storage"
	s3store "github.com/wopr-network/opsd/internal/storage/s3"
)

type s3Env struct {
	endpoint, access, secret string
	s3cfg                    string // s3cmd config file
	bucketSeq                int
}

// startS3 uses OPSD_TEST_S3_ENDPOINT when set, else starts SeaweedFS with .ci/start-seaweedfs.sh.
func (b *bench) startS3(ctx context.Context) (func(), error) {
	stop := func() {}
	if ep := os.Getenv("OPSD_TEST_S3_ENDPOINT"); ep != "" {
		b.s3 = s3Env{endpoint: ep, access: os.Getenv("OPSD_TEST_S3_ACCESS_KEY"), secret: os.Getenv("OPSD_TEST_S3_SECRET_KEY")}
	} else {
		fmt.Fprintln(os.Stderr, "opsd-bench: starting SeaweedFS (.ci/start-seaweedfs.sh; the first build takes ~10 minutes)")
		out, err := exec.CommandContext(ctx, "bash", ".ci/start-seaweedfs.sh").Output()
		if err != nil {
			return stop, fmt.Errorf("start the S3 engine (run from the repository root): %w", err)
		}
		vars := map[string]string{}
		for _, f := range strings.Fields(strings.TrimPrefix(strings.TrimSpace(string(out)), "export ")) {
			k, v, _ := strings.Cut(f, "=")
			vars[k] = v
		}
		b.s3 = s3Env{endpoint: vars["OPSD_TEST_S3_ENDPOINT"], access: vars["OPSD_TEST_S3_ACCESS_KEY"], secret: vars["OPSD_TEST_S3_SECRET_KEY"]}
		os.Setenv("OPSD_WEED_PID", vars["OPSD_WEED_PID"]) // the CPU columns read the engine's time
		stop = func() {
			if pid, err := strconv.Atoi(vars["OPSD_WEED_PID"]); err == nil {
				if p, err := os.FindProcess(pid); err == nil {
					p.Kill()
				}
			}
			os.RemoveAll(vars["OPSD_WEED_DIR"])
		}
	}
	b.s3.s3cfg = filepath.Join(b.dir, "s3cfg")
	host := b.s3.endpoint
	cfg := fmt.Sprintf("[default]\naccess_key = %s\nsecret_key = %s\nhost_base = %s\nhost_bucket = %s\nuse_https = False\nsignature_v2 = False\nbucket_location = us-east-1\n",
		b.s3.access, b.s3.secret, host, host)
	return stop, os.WriteFile(b.s3.s3cfg, []byte(cfg), 0o600)
}

// store returns a fresh bucket on the S3 engine.
func (b *bench) store(ctx context.Context, name string) (storage.Store, string, error) {
	b.s3.bucketSeq++
	bucket := fmt.Sprintf("bench-%s-%d-%d", name, time.Now().Unix()%100000, b.s3.bucketSeq)
	s, err := s3store.New(ctx, s3store.Config{Endpoint: b.s3.endpoint, Region: "us-east-1", Bucket: bucket, AccessKey: b.s3.access, SecretKey: b.s3.secret,
		PartSize: 8 << 20, Parallel: 4, CreateBucket: true}) // opsd's defaults
	return s, bucket, err
}

// s3cmd runs s3cmd with the bench's config.
func (b *bench) s3cmd(ctx context.Context, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "s3cmd", append([]string{"-c", b.s3.s3cfg, "--no-progress", "--multipart-chunk-size-mb=16"}, args...)...)
}

// rssSampler records the peak resident set size of a process (0 = this one) while it runs.
type rssSampler struct {
	mu   sync.Mutex
	peak float64
	stop chan struct{}
	done chan struct{}
}

func sampleRSS(pid int) *rssSampler {
	s := &rssSampler{stop: make(chan struct{}), done: make(chan struct{})}
	path := "/proc/self/status"
	if pid > 0 {
		path = fmt.Sprintf("/proc/%d/status", pid)
	}
	go func() {
		defer close(s.done)
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			if v := vmRSS(path); v > 0 {
				s.mu.Lock()
				s.peak = max(s.peak, v)
				s.mu.Unlock()
			}
			select {
			case <-s.stop:
				return
			case <-t.C:
			}
		}
	}()
	return s
}

// Stop returns the peak RSS in MiB.
func (s *rssSampler) Stop() float64 {
	close(s.stop)
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.peak
}

func vmRSS(path string) float64 {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, _ := strconv.ParseFloat(strings.Fields(v)[0], 64)
			return kb / 1024
		}
	}
	return 0
}

func numCPU() int { return runtime.NumCPU() }

// cpuSelf returns this process's user+system CPU time.
func cpuSelf() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// timed runs fn, measuring wall time, this process's CPU time and peak RSS.
func timed(fn func() (int64, error)) sample {
	runtime.GC()
	rs := sampleRSS(0)
	start, c0 := time.Now(), cpuSelf()
	n, err := fn()
	s := sample{d: time.Since(start), rssMB: rs.Stop(), bytes: n, cpu: cpuSelf() - c0}
	if err != nil {
		s.failed = err.Error()
	}
	return s
}

// timedCmd runs a command with a time limit; a command that hits it "did not finish".
func timedCmd(ctx context.Context, limit time.Duration, bytes int64, name string, args ...string) sample {
	cctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	cmd := exec.CommandContext(cctx, name, args...)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	s := sample{d: time.Since(start), bytes: bytes}
	if cmd.ProcessState != nil {
		s.cpu = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	}
	switch {
	case cctx.Err() != nil:
		s.failed = fmt.Sprintf("did not finish in %s", limit)
	case err != nil:
		s.failed = fmt.Sprintf("failed: %v: %s", err, strings.TrimSpace(lastLine(string(out))))
	}
	return s
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
