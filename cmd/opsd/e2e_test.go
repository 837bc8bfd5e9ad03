package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/wopr-network/opsd/config"
	"github.com/wopr-network/opsd/internal/opsdtest"
	"github.com/wopr-network/opsd/internal/state"
)

const token = "e2e-admin-token-1234"

// syncBuffer is a bytes.Buffer safe for the daemon's log writes and the test's reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// writeLocalConfig writes opsd.yaml in a new temp dir: node id, header (top-level keys before
// state), the state database and a local store in that dir, alerts quiet, then the jobs list.
func writeLocalConfig(t *testing.T, node, header, jobs string) (dir, cfgPath string) {
	t.Helper()
	dir = t.TempDir()
	cfgPath = filepath.Join(dir, "opsd.yaml")
	writeConfig(t, cfgPath, "node_id: "+node+"\n"+header+fmt.Sprintf(`state:
  path: %s/state.db
storage:
  backend: local
  local:
    path: %s/store
alerts:
  interval: 1h
  rules: []
jobs:
`, dir, dir)+jobs)
	return dir, cfgPath
}

func writeConfig(t *testing.T, path, body string) {
	t.Helper()
	// Write to a temp name and rename, as editors and ConfigMap updates do.
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func daemonConfig(dir, tickSchedule string) string {
	return fmt.Sprintf(`node_id: e2e
http:
  listen: 127.0.0.1:0
  admin_token: %s
state:
  path: %s/state.db
storage:
  backend: local
  local:
    path: %s/store
reload:
  interval: 100ms
jobs:
  - name: tick
    kind: noop
    schedule: "%s"
  - name: nightly
    kind: noop
    schedule: "0 3 * * *"
`, token, dir, dir, tickSchedule)
}

// request sends a request (bearer and body optional) and returns the status and body.
func request(t *testing.T, method, url, bearer, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func get(t *testing.T, url string) (int, string) { return request(t, http.MethodGet, url, "", "") }
func getAuth(t *testing.T, url, bearer string) (int, string) {
	return request(t, http.MethodGet, url, bearer, "")
}
func post(t *testing.T, url, bearer string) (int, string) {
	return request(t, http.MethodPost, url, bearer, "")
}
func postBody(t *testing.T, url, bearer, body string) (int, string) {
	return request(t, http.MethodPost, url, bearer, body)
}

// startDaemon loads a config file, starts the daemon on a free port, and stops it at the end.
func startDaemon(t *testing.T, cfgPath string) (*Main, string) {
	t.Helper()
	return startDaemonWith(t, cfgPath, Options{})
}

// startDaemonWith is startDaemon with opts (Stderr and Listen filled in when unset).
func startDaemonWith(t *testing.T, cfgPath string, opts Options) (*Main, string) {
	t.Helper()
	m, base := runMain(t, cfgPath, opts)
	t.Cleanup(func() { closeMain(m) })
	return m, base
}

// runMain loads a config file and starts the daemon with opts (Stderr and Listen on a free port
// filled in when unset); the caller closes it.
func runMain(t *testing.T, cfgPath string, opts Options) (*Main, string) {
	t.Helper()
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if opts.Stderr == nil {
		opts.Stderr = &syncBuffer{}
	}
	if opts.Listen == "" {
		opts.Listen = "127.0.0.1:0"
	}
	ctx := context.Background()
	m, err := NewMain(ctx, cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Run(ctx); err != nil {
		t.Fatal(err)
	}
	return m, "http://" + m.Addr().String()
}

// closeMain stops the daemon, bounded: a test that fails while a long run is in progress must not
// wait for it.
func closeMain(m *Main) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	m.Close(ctx)
}

func eventually(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

type jobsBody struct {
	Jobs []struct {
		Name        string     `json:"name"`
		Schedule    string     `json:"schedule"`
		LastRun     *time.Time `json:"lastRun"`
		LastOutcome string     `json:"lastOutcome"`
	} `json:"jobs"`
}

func jobSchedule(t *testing.T, base, name string) (string, string) {
	_, body := get(t, base+"/api/jobs")
	var jb jobsBody
	json.Unmarshal([]byte(body), &jb)
	for _, j := range jb.Jobs {
		if j.Name == name {
			return j.Schedule, j.LastOutcome
		}
	}
	return "", ""
}

func TestDaemonEndToEnd(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "opsd.yaml")
	writeConfig(t, cfgPath, daemonConfig(dir, "@every 1h"))
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	ctx := context.Background()
	m, err := NewMain(ctx, cfg, Options{Stderr: &logs})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Run(ctx); err != nil {
		t.Fatal(err)
	}
	defer m.Close(ctx)
	base := "http://" + m.Addr().String()

	if code, body := get(t, base+"/health"); code != 200 || body != `{"status":"ok","service":"opsd","backups":{"staleCount":0,"totalTracked":0}}`+"\n" {
		t.Fatalf("/health = %d %s", code, body)
	}
	if code, body := get(t, base+"/health/ready"); code != 200 || !strings.Contains(body, `"status":"ready"`) {
		t.Fatalf("/health/ready = %d %s", code, body)
	}
	_, metrics := get(t, base+"/metrics")
	for _, want := range []string{"opsd_config_last_reload_successful 1", `opsd_job_expected_interval_seconds{job_name="tick",kind="noop"} 3600`, `opsd_job_expected_interval_seconds{job_name="nightly",kind="noop"} 86400`, "opsd_build_info{"} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}

	// Admin: no token, wrong token, right token.
	if code, body := post(t, base+"/api/jobs/tick/run", ""); code != 401 || body != `{"error":"Authentication required"}`+"\n" {
		t.Fatalf("no token: %d %s", code, body)
	}
	if code, body := post(t, base+"/api/jobs/tick/run", "wrong-token"); code != 401 || body != `{"error":"Invalid or expired token"}`+"\n" {
		t.Fatalf("wrong token: %d %s", code, body)
	}
	if code, _ := post(t, base+"/api/jobs/nope/run", token); code != 404 {
		t.Fatalf("unknown job: %d", code)
	}
	if code, body := post(t, base+"/api/jobs/tick/run", token); code != 202 {
		t.Fatalf("run: %d %s", code, body)
	}
	eventually(t, "the triggered run in /api/jobs", 5*time.Second, func() bool {
		_, outcome := jobSchedule(t, base, "tick")
		return outcome == "success"
	})
	runs, _ := m.state.Runs(ctx, "tick", 5)
	if len(runs) != 1 || runs[0].Trigger != "manual" || runs[0].Outcome != "success" {
		t.Fatalf("job_runs = %+v", runs)
	}
	// The run's row is written before its metrics are counted: wait for the counter too.
	eventually(t, "the run in /metrics", 5*time.Second, func() bool {
		_, metrics := get(t, base+"/metrics")
		return strings.Contains(metrics, `opsd_job_runs_total{job_name="tick",kind="noop",outcome="success"} 1`)
	})

	// A good edit reschedules without a restart.
	writeConfig(t, cfgPath, daemonConfig(dir, "*/5 * * * *"))
	eventually(t, "the new schedule in /api/jobs", 5*time.Second, func() bool {
		s, _ := jobSchedule(t, base, "tick")
		return s == "*/5 * * * *"
	})
	// A broken edit keeps the old schedule and sets the gauge to 0.
	writeConfig(t, cfgPath, daemonConfig(dir, "61 * * * *"))
	eventually(t, "the reload gauge at 0", 5*time.Second, func() bool {
		_, metrics := get(t, base+"/metrics")
		return strings.Contains(metrics, "opsd_config_last_reload_successful 0")
	})
	if s, _ := jobSchedule(t, base, "tick"); s != "*/5 * * * *" {
		t.Fatalf("after a broken edit the schedule is %q", s)
	}
	if !strings.Contains(logs.String(), `jobs[0].schedule (line 16): invalid cron expression \"61 * * * *\": minute out of range`) {
		t.Fatalf("the log does not carry the exact error:\n%s", logs.String())
	}
	// POST /-/reload says what is wrong.
	if code, body := post(t, base+"/-/reload", token); code != 400 || !strings.Contains(body, "minute out of range") {
		t.Fatalf("reload of a bad file: %d %s", code, body)
	}
	// Fixing the file recovers; the same content again is a no-op.
	writeConfig(t, cfgPath, daemonConfig(dir, "@every 2h"))
	eventually(t, "recovery", 5*time.Second, func() bool {
		s, _ := jobSchedule(t, base, "tick")
		return s == "@every 2h"
	})
	if code, body := post(t, base+"/-/reload", token); code != 200 || !strings.Contains(body, "unchanged") {
		t.Fatalf("reload of unchanged file: %d %s", code, body)
	}
	if strings.Contains(logs.String(), token) {
		t.Fatal("the admin token appears in the logs")
	}
}

func TestSIGKILLLosesNothingAndCatchesUpOnce(t *testing.T) {
	bin := opsdtest.Binary(t)
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "opsd.yaml")
	writeConfig(t, cfgPath, fmt.Sprintf(`node_id: e2e
http:
  listen: 127.0.0.1:0
state:
  path: %s/state.db
storage:
  backend: local
  local:
    path: %s/store
scheduler:
  shutdown_timeout: 2s
jobs:
  - name: nightly
    kind: noop
    schedule: "0 3 * * *"
    catch_up: true
  - name: slow
    kind: noop
    schedule: "0 4 * * *"
    run_at_start: true
    sleep: 10m
`, dir, dir))
	// History from before the outage: nightly last ran two days ago; a backup target is tracked.
	ctx := context.Background()
	st, err := state.Open(ctx, filepath.Join(dir, "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-48 * time.Hour)
	id, _ := st.StartRun(ctx, "nightly", "noop", "schedule", old)
	fin := old.Add(time.Second)
	st.FinishRun(ctx, state.Run{ID: id, Job: "nightly", FinishedAt: &fin, Outcome: "success"})
	st.RecordBackup(ctx, state.BackupAttempt{Target: "auth", NodeID: "e2e", Kind: "sqlite", At: old, Success: true, SizeBytes: 1 << 20, Path: "platform/x/auth.db"})
	st.Close()

	start := func() *exec.Cmd {
		cmd := exec.Command(bin, "run", "-c", cfgPath)
		cmd.Stderr = io.Discard
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd
	}
	runsOf := func(job string) []state.Run {
		st, err := state.Open(ctx, filepath.Join(dir, "state.db"))
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		r, _ := st.Runs(ctx, job, 10)
		return r
	}
	cmd := start()
	eventually(t, "the catch-up run and the slow run", 10*time.Second, func() bool {
		n, s := runsOf("nightly"), runsOf("slow")
		return len(n) == 2 && n[0].Outcome == "success" && len(s) == 1 && s[0].Outcome == "running"
	})
	if n := runsOf("nightly"); n[0].Trigger != "catch-up" {
		t.Fatalf("nightly's new run: %+v", n[0])
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()

	cmd = start()
	eventually(t, "the killed run marked interrupted and the slow job running again", 10*time.Second, func() bool {
		s := runsOf("slow")
		return len(s) == 2 && s[1].Outcome == "interrupted" && s[0].Outcome == "running"
	})
	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(90 * time.Second):
		cmd.Process.Kill()
		t.Fatal("SIGTERM did not stop opsd within the shutdown timeout")
	}
	if n := runsOf("nightly"); len(n) != 2 {
		t.Fatalf("nightly ran %d times in all, want the old run and one catch-up: %+v", len(n), n)
	}
	st, _ = state.Open(ctx, filepath.Join(dir, "state.db"))
	defer st.Close()
	b, err := st.GetBackup(ctx, "auth", time.Now(), 24*time.Hour)
	if err != nil || b.TotalBackups != 1 || *b.LastBackupPath != "platform/x/auth.db" {
		t.Fatalf("backup status after SIGKILL: %+v %v", b, err)
	}
	if s := runsOf("slow"); s[0].Outcome != "canceled" {
		t.Fatalf("slow run after SIGTERM: %+v", s[0])
	}
}

func TestConfigCheckCommand(t *testing.T) {
	var out, errb bytes.Buffer
	files, _ := filepath.Glob("../../config/testdata/invalid/*.yaml")
	if len(files) < 25 {
		t.Fatalf("found %d invalid files", len(files))
	}
	for _, f := range files[:5] {
		out.Reset()
		errb.Reset()
		if code := run([]string{"config", "check", "-c", f}, &out, &errb); code != 1 {
			t.Fatalf("%s: exit %d", f, code)
		}
		want, _ := os.ReadFile(strings.TrimSuffix(f, ".yaml") + ".want")
		for _, line := range strings.Split(strings.TrimSpace(string(want)), "\n") {
			if !strings.Contains(errb.String(), f+": "+line) {
				t.Fatalf("%s: stderr %q lacks %q", f, errb.String(), line)
			}
		}
	}
	t.Setenv("OPSD_ADMIN_TOKEN", "example-admin-token-0123")
	t.Setenv("DO_SPACES_REGION", "nyc3")
	t.Setenv("DO_SPACES_ACCESS_KEY", "AK")
	t.Setenv("DO_SPACES_SECRET_KEY", "SK")
	out.Reset()
	if code := run([]string{"config", "check", "-c", "../../config/example.yaml"}, &out, &errb); code != 0 || !regexp.MustCompile(`: ok \(\d+ jobs`).MatchString(out.String()) {
		t.Fatalf("example: exit %d, %s %s", code, out.String(), errb.String())
	}
}

func TestHelpEverywhere(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"run", "--help"}, {"demo", "--help"}, {"config", "--help"}, {"config", "check", "--help"},
		{"jobs", "--help"}, {"jobs", "list", "--help"}, {"jobs", "run", "--help"}, {"backup", "--help"}, {"backup", "db", "--help"},
		{"prune", "-h"}, {"drill", "db", "--help"}, {"restore", "db", "--help"}, {"backups", "list", "--help"}, {"healthcheck", "--help"}} {
		var out, errb bytes.Buffer
		if code := run(args, &out, &errb); code != 0 || strings.Count(out.String(), "Usage") != 1 || errb.Len() != 0 {
			t.Errorf("%v: exit %d, want the usage once on stdout and nothing on stderr; stdout %q, stderr %q", args, code, out.String(), errb.String())
		}
	}
	var out, errb bytes.Buffer
	if code := run([]string{"bogus"}, &out, &errb); code != 2 || !strings.Contains(errb.String(), `unknown command "bogus"`) {
		t.Errorf("bogus: %d %q", code, errb.String())
	}
}

// TestOutputFormatRefused: -o accepts only the formats a command prints; anything else is a
// usage error naming the flag and the accepted values, and nothing is printed on stdout.
func TestOutputFormatRefused(t *testing.T) {
	for _, args := range [][]string{{"jobs", "list", "-o", "yaml"}, {"backups", "list", "-o", "yaml"}, {"prune", "-o", "yaml"}} {
		var out, errb bytes.Buffer
		code := run(append(args, "-c", "../../config/example.yaml"), &out, &errb)
		if code != 2 || out.Len() != 0 || !strings.Contains(errb.String(), `invalid value "yaml" for flag -o: must be one of`) {
			t.Errorf("%v: exit %d, stdout %q, stderr %q", args, code, out.String(), errb.String())
		}
	}
}
