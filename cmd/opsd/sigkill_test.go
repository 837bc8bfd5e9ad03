package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wopr-network/opsd/internal/opsdtest"
	"github.com/wopr-network/opsd/internal/telemetry/sentrytest"
)

// binaryConfig is the config of a real binary's daemon node: the API on addr with the admin
// token, the state database and a local store in dir, extra (more top-level keys), alerts quiet,
// a 1s shutdown, and jobs (the YAML list after "jobs:").
func binaryConfig(node, addr, dir, extra, jobs string) string {
	return fmt.Sprintf(`node_id: %s
http:
  listen: %s
  admin_token: %s
state:
  path: %s/state.db
storage:
  backend: local
  local:
    path: %s/store
%salerts:
  interval: 1h
  rules: []
scheduler:
  shutdown_timeout: 1s
jobs:
%s`, node, addr, token, dir, dir, extra, jobs)
}

// startBinary starts the real binary's daemon on cfgPath and waits until it answers on addr; a
// daemon still running at the end of the test is stopped (SIGTERM).
func startBinary(t *testing.T, bin, cfgPath, addr string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(bin, "run", "-c", cfgPath)
	cmd.Stderr = io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil { // not waited for yet (not killed by the test)
			cmd.Process.Signal(syscall.SIGTERM)
			cmd.Wait()
		}
	})
	eventually(t, "opsd to answer", 20*time.Second, func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return cmd
}

// TestSIGKILLInterruptedRunIsAFailedRun: the real binary is SIGKILLed during a run of a
// catch_up job and started again. The killed run is a failed run in /metrics
// (opsd_job_last_run_success 0, present), /health (degraded, interrupted:<job>) and Sentry, and
// the job runs again once at start; a temp file the killed process left is removed.
func TestSIGKILLInterruptedRunIsAFailedRun(t *testing.T) {
	bin := opsdtest.Binary(t)
	dir := t.TempDir()
	sentry := sentrytest.New(t)
	addr := opsdtest.FreeAddr(t)
	cfgPath := filepath.Join(dir, "opsd.yaml")
	writeConfig(t, cfgPath, binaryConfig("kill", addr, dir, fmt.Sprintf(`sentry:
  dsn: %s
`, sentry.DSN()), `  - name: nightly-export
    kind: noop
    schedule: "0 3 * * *"
    catch_up: true
    sleep: 10m
`))
	base := "http://" + addr
	cmd := startBinary(t, bin, cfgPath, addr)
	if code, body := post(t, base+"/api/jobs/nightly-export/run", token); code != 202 {
		t.Fatalf("trigger: %d %s", code, body)
	}
	eventually(t, "the run to start", 10*time.Second, func() bool {
		return strings.HasSuffix(metricLine(t, base, `opsd_job_running{`), " 1")
	})
	// What a killed process leaves behind in the temp dir.
	leftover := filepath.Join(os.TempDir(), fmt.Sprintf("opsd-tmp-%d-nightly-1.db", cmd.Process.Pid))
	os.WriteFile(leftover, []byte("partial copy"), 0o600)
	t.Cleanup(func() { os.Remove(leftover) })
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()

	cmd = startBinary(t, bin, cfgPath, addr)
	if l := metricLine(t, base, `opsd_job_last_run_success{`); !strings.Contains(l, "nightly-export") || !strings.HasSuffix(l, " 0") {
		t.Fatalf("opsd_job_last_run_success after the restart: %q", l)
	}
	if _, body := get(t, base+"/health"); !strings.Contains(body, `"status":"degraded"`) || !strings.Contains(body, "interrupted:nightly-export") {
		t.Fatalf("/health after the restart: %s", body)
	}
	eventually(t, "a Sentry event for the interrupted run", 10*time.Second, func() bool {
		return strings.Contains(sentry.All(), "interrupted: opsd stopped during the run")
	})
	_, body := get(t, base+"/api/jobs/nightly-export/runs")
	if strings.Count(body, `"outcome":"interrupted"`) != 1 || !strings.Contains(body, `"trigger":"catch-up"`) {
		t.Fatalf("runs after the restart: want the interrupted run and one catch-up run: %s", body)
	}
	if _, err := os.Stat(leftover); !os.IsNotExist(err) {
		t.Fatalf("the killed process's temp file %s is still there", leftover)
	}
}
