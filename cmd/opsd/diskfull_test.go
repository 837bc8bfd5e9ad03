package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wopr-network/opsd/internal/state"
	"github.com/wopr-network/opsd/internal/telemetry/sentrytest"
)

// smallFS mounts a 2 MiB tmpfs for the test (root only) and unmounts it at the end.
func smallFS(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
	dir := filepath.Join(t.TempDir(), "small")
	os.MkdirAll(dir, 0o700)
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs: %v %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", "-l", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v %s", dir, err, out)
		}
	})
	return dir
}

// fill writes a file until the filesystem is full.
func fill(t *testing.T, dir string) string {
	t.Helper()
	p := filepath.Join(dir, "filler")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	for {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("fill: %v", err)
			}
			break
		}
	}
	small := make([]byte, 512)
	for {
		if _, err := f.Write(small); err != nil {
			break
		}
	}
	return p
}

// TestStateDiskFullIsAFailure: with the state database's filesystem full, a run that succeeded
// but cannot be recorded is a failed run: opsd_job_last_run_success 0, /health degraded naming
// the problem, the error logged, a Sentry event. Once space is back, the next run is recorded
// and /health is ok again.
func TestStateDiskFullIsAFailure(t *testing.T) {
	small := smallFS(t)
	dir := t.TempDir()
	sentry := sentrytest.New(t)
	cfgPath := filepath.Join(dir, "opsd.yaml")
	writeConfig(t, cfgPath, fmt.Sprintf(`node_id: full
http:
  admin_token: %s
state:
  path: %s/state.db
storage:
  backend: local
  local:
    path: %s/store
sentry:
  dsn: %s
alerts:
  interval: 1h
  rules: []
jobs:
  - {name: tick, kind: noop, schedule: "0 4 * * *"}
`, token, small, dir, sentry.DSN()))
	m, base := startDaemon(t, cfgPath)
	ctx := context.Background()
	spec, _ := m.sched.Spec("tick")
	if o := m.runner.Run(ctx, spec.Job, time.Minute, "test"); !o.OK() {
		t.Fatalf("first run: %v", o.Err)
	}
	filler := fill(t, small)
	// Enough runs to need new pages in the full database.
	var o struct{ err error }
	for i := 0; i < 200; i++ {
		out := m.runner.Run(ctx, spec.Job, time.Minute, "test")
		if !out.OK() {
			o.err = out.Err
			break
		}
	}
	if o.err == nil || !strings.Contains(o.err.Error(), "record the run in the state database") {
		t.Fatalf("a run that could not be recorded: err = %v", o.err)
	}
	if l := metricLine(t, base, `opsd_job_last_run_success{`); !strings.Contains(l, `"tick"`) || !strings.HasSuffix(l, " 0") {
		t.Fatalf("opsd_job_last_run_success: %q", l)
	}
	if _, body := get(t, base+"/health"); !strings.Contains(body, `"status":"degraded"`) || !strings.Contains(body, "cannot record runs of tick in the state database") {
		t.Fatalf("/health with the state disk full: %s", body)
	}
	eventually(t, "a Sentry event", 10*time.Second, func() bool {
		return strings.Contains(sentry.All(), "record the run in the state database")
	})
	if _, body := get(t, base+"/api/jobs"); !strings.Contains(body, `"lastOutcome":"failure"`) || !strings.Contains(body, "cannot record runs of tick") {
		t.Fatalf("/api/jobs with the state disk full: %s", body)
	}
	if log := m.opts.Stderr.(*syncBuffer).String(); !strings.Contains(log, "cannot record run") {
		t.Fatalf("the failure was not logged:\n%s", log)
	}

	// Space comes back: the next run is recorded and /health is ok again.
	os.Remove(filler)
	if out := m.runner.Run(ctx, spec.Job, time.Minute, "test"); !out.OK() {
		t.Fatalf("run after space came back: %v", out.Err)
	}
	if _, body := get(t, base+"/health"); !strings.Contains(body, `"status":"ok"`) {
		t.Fatalf("/health after space came back: %s", body)
	}
	if r, err := m.state.LastRun(ctx, "tick"); err != nil || r.Outcome != state.OutcomeSuccess {
		t.Fatalf("last run: %+v %v", r, err)
	}
}
