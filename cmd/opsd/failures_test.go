package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wopr-network/opsd/config"
	"github.com/wopr-network/opsd/internal/demo"
	"github.com/wopr-network/opsd/internal/state"
	"github.com/wopr-network/opsd/internal/telemetry/sentrytest"
)

// handlerGet serves a GET through the daemon's handler (before it listens); with prefix, it
// returns the first body line starting with prefix.
func handlerGet(m *Main, path, prefix string) string {
	rec := httptest.NewRecorder()
	m.http.Handler().ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
	if prefix == "" {
		return rec.Body.String()
	}
	for _, l := range strings.Split(rec.Body.String(), "\n") {
		if strings.HasPrefix(l, prefix) {
			return l
		}
	}
	return ""
}

// metricLine returns the /metrics line that starts with prefix ("" when absent).
func metricLine(t *testing.T, base, prefix string) string {
	t.Helper()
	_, body := get(t, base+"/metrics")
	for _, l := range strings.Split(body, "\n") {
		if strings.HasPrefix(l, prefix) {
			return l
		}
	}
	return ""
}

// TestSecondDaemonRefusedByStateLock: a second daemon on the same state database exits with a
// message naming the lock file and the first daemon's PID, before it touches anything: the
// first daemon's running job stays "running".
func TestSecondDaemonRefusedByStateLock(t *testing.T) {
	dir, cfgPath := writeLocalConfig(t, "lock", "http:\n  admin_token: "+token+"\nscheduler:\n  shutdown_timeout: 1s\n",
		`  - {name: slow, kind: noop, schedule: "0 4 * * *", sleep: 10m}
`)
	m, base := startDaemon(t, cfgPath)
	t.Cleanup(func() { // the run sleeps 10m: cancel it rather than wait
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		m.Close(ctx)
	})
	if code, _ := post(t, base+"/api/jobs/slow/run", token); code != 202 {
		t.Fatalf("trigger: %d", code)
	}
	// Wait for the run's row, not only the in-memory claim: the row is what a second daemon
	// must not touch.
	eventually(t, "the slow run recorded as running", time.Minute, func() bool {
		r, err := m.state.LastRun(context.Background(), "slow")
		return err == nil && r.Outcome == state.OutcomeRunning
	})

	var out, errb bytes.Buffer
	code := run([]string{"run", "-c", cfgPath, "--listen", "127.0.0.1:0"}, &out, &errb)
	want := fmt.Sprintf("%s is held by pid %d", state.LockPath(filepath.Join(dir, "state.db")), os.Getpid())
	if code != 1 || !strings.Contains(errb.String(), want) || !strings.Contains(errb.String(), "one daemon per state database") {
		t.Fatalf("second daemon: exit %d, stderr %q; want %q", code, errb.String(), want)
	}
	last, err := m.state.LastRun(context.Background(), "slow")
	if err != nil || last.Outcome != state.OutcomeRunning {
		t.Fatalf("the first daemon's run after the second one tried to start: %+v %v", last, err)
	}
	// Stop the first daemon (cancelling its slow run); then a new one may take the lock.
	cctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	m.Close(cctx)
	m2, _ := startDaemon(t, cfgPath)
	if r, err := m2.state.LastRun(context.Background(), "slow"); err != nil || r.Outcome != state.OutcomeCanceled {
		t.Fatalf("after a clean stop: %+v %v", r, err)
	}
}

// TestInterruptedRunCountsAsFailedEverywhere: a sqlite_backup run left "running" by a killed
// process (the row a SIGKILL leaves) is, after the restart, a failed run everywhere:
// opsd_job_last_run_success 0, /health degraded with its databases stale, a Sentry event per
// database; catch_up reruns it once at start, and once that run succeeds /health is ok again.
// Temp files of dead opsd processes are removed at start; nothing else is.
func TestInterruptedRunCountsAsFailedEverywhere(t *testing.T) {
	dir := t.TempDir()
	paths, err := demo.Create(context.Background(), dir, 50)
	if err != nil {
		t.Fatal(err)
	}
	sentry := sentrytest.New(t)
	tmp := filepath.Join(dir, "tmp")
	os.MkdirAll(tmp, 0o700)
	cfgPath := filepath.Join(dir, "opsd.yaml")
	writeConfig(t, cfgPath, fmt.Sprintf(`node_id: intr
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
  - name: platform-db-backup
    kind: sqlite_backup
    schedule: "0 3 * * *"
    catch_up: true
    temp_dir: %s
    databases:
      - {name: auth, path: %q}
      - {name: billing, path: %q}
`, dir, dir, sentry.DSN(), tmp, paths["auth"], paths["billing"]))

	// The previous daemon: a good backup two days ago, then killed during last night's run.
	ctx := context.Background()
	st, err := state.Open(ctx, filepath.Join(dir, "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-48 * time.Hour)
	id, _ := st.StartRun(ctx, "platform-db-backup", "sqlite_backup", "schedule", old)
	fin := old.Add(time.Second)
	st.FinishRun(ctx, state.Run{ID: id, Job: "platform-db-backup", FinishedAt: &fin, Outcome: "success"})
	for _, db := range []string{"auth", "billing"} {
		st.RecordBackup(ctx, state.BackupAttempt{Target: db, NodeID: "intr", Kind: "sqlite", At: fin, Success: true, SizeBytes: 1 << 20, Path: "platform/x/" + db + ".db"})
	}
	killedAt := time.Now().Add(-time.Hour)
	st.StartRun(ctx, "platform-db-backup", "sqlite_backup", "schedule", killedAt)
	st.Close()

	// What the killed process left in its temp dir, and what is not opsd's.
	dead := exec.Command("true")
	dead.Run()
	deadPID := dead.Process.Pid
	leftover := filepath.Join(tmp, fmt.Sprintf("opsd-tmp-%d-auth-123.db", deadPID))
	os.WriteFile(leftover, bytes.Repeat([]byte{1}, 4096), 0o600)
	os.WriteFile(leftover+"-journal", []byte("j"), 0o600)
	legacy := filepath.Join(tmp, ".opsd-billing-1700000000.db")
	os.WriteFile(legacy, []byte("old"), 0o600)
	os.Chtimes(legacy, time.Now().Add(-48*time.Hour), time.Now().Add(-48*time.Hour))
	keep := []string{
		filepath.Join(tmp, "operator-notes.db"),
		filepath.Join(tmp, fmt.Sprintf("opsd-tmp-%d-live-1.db", os.Getpid())), // a live process's
		filepath.Join(tmp, ".opsd-billing-fresh.db"),                          // legacy but recent
	}
	for _, k := range keep {
		os.WriteFile(k, []byte("keep"), 0o600)
	}

	// Hold the catch-up run until the interrupted state has been observed.
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	m, err := NewMain(ctx, cfg, Options{Stderr: &syncBuffer{}, Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(context.Background())
	// Before Run (the catch-up run has not started): the interrupted run already counts as a
	// failed run in the metrics and in /health.
	if l := handlerGet(m, "/metrics", `opsd_job_last_run_success{`); !strings.Contains(l, "platform-db-backup") || !strings.HasSuffix(l, " 0") {
		t.Fatalf("opsd_job_last_run_success after an interrupted run: %q", l)
	}
	if body := handlerGet(m, "/health", ""); !strings.Contains(body, `"status":"degraded"`) || !strings.Contains(body, `"staleCount":2`) || !strings.Contains(body, "interrupted:platform-db-backup") {
		t.Fatalf("/health after an interrupted run: %s", body)
	}
	if err := m.Run(ctx); err != nil {
		t.Fatal(err)
	}
	base := "http://" + m.Addr().String()
	for _, p := range []string{leftover, leftover + "-journal", legacy} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Fatalf("%s was not removed at start", p)
		}
	}
	for _, k := range keep {
		if _, err := os.Stat(k); err != nil {
			t.Fatalf("%s was removed: %v", k, err)
		}
	}
	runs, _ := m.state.Runs(ctx, "platform-db-backup", 10)
	var interrupted *state.Run
	for i := range runs {
		if runs[i].Outcome == state.OutcomeInterrupted {
			interrupted = &runs[i]
		}
	}
	if interrupted == nil || !strings.Contains(interrupted.Error, "interrupted") {
		t.Fatalf("runs after restart: %+v", runs)
	}
	for _, db := range []string{"auth", "billing"} {
		eventually(t, "a Sentry event for "+db+"'s interrupted run", 10*time.Second, func() bool {
			return strings.Contains(sentry.All(), "sqlite_backup "+db+": interrupted: opsd stopped during the run")
		})
	}
	// catch_up reruns the job once; it succeeds and everything is ok again.
	eventually(t, "the catch-up run to succeed", 30*time.Second, func() bool {
		r, err := m.state.LastRun(ctx, "platform-db-backup")
		return err == nil && r.Outcome == state.OutcomeSuccess && r.Trigger == "catch-up"
	})
	if n, _ := m.state.Runs(ctx, "platform-db-backup", 10); len(n) != 3 {
		t.Fatalf("runs: want the old one, the interrupted one and one catch-up: %+v", n)
	}
	if _, body := get(t, base+"/health"); !strings.Contains(body, `"status":"ok"`) {
		t.Fatalf("/health after the catch-up run: %s", body)
	}
	assertManifestsMatchObjects(t, m.objStore())
}

// TestDaemonStartLeavesRunningCLIRunsAlone: a daemon starting while a CLI command (here an
// `opsd jobs run`-style env with a run in progress) uses the same state database does not mark
// that command's run interrupted; once no CLI command runs, a leftover CLI run is.
func TestDaemonStartLeavesRunningCLIRunsAlone(t *testing.T) {
	_, cfgPath := writeLocalConfig(t, "cli", "", `  - {name: tick, kind: noop, schedule: "0 4 * * *"}
`)
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	cli, err := newEnv(ctx, cfg, Options{Stderr: &syncBuffer{}})
	if err != nil {
		t.Fatal(err)
	}
	id, err := cli.state.StartRun(ctx, "tick", "noop", "cli", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	m, _ := startDaemon(t, cfgPath)
	if r, _ := m.state.LastRun(ctx, "tick"); r.ID != id || r.Outcome != state.OutcomeRunning {
		t.Fatalf("the CLI's run after a daemon started: %+v", r)
	}
	m.Close(ctx)
	cli.close(ctx) // the CLI process is gone; its run was left running

	m2, _ := startDaemon(t, cfgPath)
	if r, _ := m2.state.LastRun(ctx, "tick"); r.ID != id || r.Outcome != state.OutcomeInterrupted {
		t.Fatalf("a CLI run left running by a dead command: %+v", r)
	}
}

// TestInterruptedRunMarksTheJobsOwnTargets: a sqlite_backup run killed after an earlier good
// backup of the same job (status rows kept per job, as every run since then records them) makes
// that job's own targets failed: /health and opsd_backup_stale{job_name} say stale, no second
// row or series appears beside them, and once the catch-up run succeeds everything is ok again
// (an extra failed row the next success never touches would keep /health degraded for ever).
func TestInterruptedRunMarksTheJobsOwnTargets(t *testing.T) {
	dir := t.TempDir()
	paths, err := demo.Create(context.Background(), dir, 50)
	if err != nil {
		t.Fatal(err)
	}
	dir, cfgPath := writeLocalConfig(t, "intr", "", fmt.Sprintf(`  - name: platform-db-backup
    kind: sqlite_backup
    schedule: "0 3 * * *"
    catch_up: true
    databases:
      - {name: auth, path: %q}
`, paths["auth"]))

	ctx := context.Background()
	st, err := state.Open(ctx, filepath.Join(dir, "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	good := time.Now().Add(-2 * time.Hour)
	id, _ := st.StartRun(ctx, "platform-db-backup", "sqlite_backup", "schedule", good)
	st.FinishRun(ctx, state.Run{ID: id, Job: "platform-db-backup", FinishedAt: &good, Outcome: "success"})
	st.RecordBackup(ctx, state.BackupAttempt{Target: "auth", Job: "platform-db-backup", NodeID: "intr", Kind: "sqlite", At: good, Success: true, SizeBytes: 1 << 20, Path: "platform/x/auth.db"})
	st.StartRun(ctx, "platform-db-backup", "sqlite_backup", "schedule", time.Now().Add(-time.Hour))
	st.Close()

	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	m, err := NewMain(ctx, cfg, Options{Stderr: &syncBuffer{}, Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(context.Background())
	if body := handlerGet(m, "/health", ""); !strings.Contains(body, `"staleCount":1,"totalTracked":1`) {
		t.Fatalf("/health after an interrupted run: want auth, once, stale: %s", body)
	}
	if l := handlerGet(m, "/metrics", `opsd_backup_stale{job_name="platform-db-backup"`); !strings.HasSuffix(l, " 1") {
		t.Fatalf("the job's own series after an interrupted run: %q", l)
	}
	if l := handlerGet(m, "/metrics", `opsd_backup_stale{job_name=""`); l != "" {
		t.Fatalf("a series of no job after an interrupted run: %q", l)
	}
	if err := m.Run(ctx); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the catch-up run to succeed", 30*time.Second, func() bool {
		r, err := m.state.LastRun(ctx, "platform-db-backup")
		return err == nil && r.Outcome == state.OutcomeSuccess && r.Trigger == "catch-up"
	})
	// The run is recorded before the Runner finishes its bookkeeping (the problem is cleared
	// after the record): /health turns ok at its end.
	var body string
	eventually(t, "/health ok after the catch-up run", 30*time.Second, func() bool {
		body = handlerGet(m, "/health", "")
		return strings.Contains(body, `"status":"ok"`)
	})
	if !strings.Contains(body, `"staleCount":0,"totalTracked":1`) {
		t.Fatalf("/health after the catch-up run: %s", body)
	}
}

// TestInterruptedStaysOnHealthAcrossRestarts: a dir_snapshot job (its targets are not known
// before it runs) killed during its run shows `interrupted:<job>` on /health after the next
// start, and still after the one after that, until it succeeds again.
func TestInterruptedStaysOnHealthAcrossRestarts(t *testing.T) {
	base := t.TempDir()
	os.MkdirAll(filepath.Join(base, "bot-1"), 0o700)
	dir, cfgPath := writeLocalConfig(t, "intr2", "", fmt.Sprintf(`  - name: snapshots
    kind: dir_snapshot
    schedule: "0 3 * * *"
    base_dir: %s
`, base))
	ctx := context.Background()
	st, err := state.Open(ctx, filepath.Join(dir, "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	st.StartRun(ctx, "snapshots", "dir_snapshot", "schedule", time.Now().Add(-time.Hour)) // killed during it
	st.Close()
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	for start := 1; start <= 2; start++ {
		m, err := NewMain(ctx, cfg, Options{Stderr: &syncBuffer{}, Listen: "127.0.0.1:0"})
		if err != nil {
			t.Fatal(err)
		}
		body := handlerGet(m, "/health", "")
		m.Close(ctx)
		if !strings.Contains(body, `"status":"degraded"`) || !strings.Contains(body, "interrupted:snapshots") {
			t.Fatalf("/health at start %d after the interrupted run: %s", start, body)
		}
	}
}
