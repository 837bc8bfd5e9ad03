package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/wopr-network/opsd/config"
	"github.com/wopr-network/opsd/internal/demo"
	"github.com/wopr-network/opsd/internal/docker/dockertest"
	"github.com/wopr-network/opsd/internal/layout"
	"github.com/wopr-network/opsd/internal/opsdtest"
	"github.com/wopr-network/opsd/internal/restore"
	"github.com/wopr-network/opsd/internal/state"
	"github.com/wopr-network/opsd/internal/telemetry/sentrytest"
)

// restoreRunSetup backs the demo databases up into a local store with a config that reports to
// sentry and returns the config path and the databases' paths.
func restoreRunSetup(t *testing.T, sentryDSN string) (string, map[string]string) {
	t.Helper()
	dir := t.TempDir()
	paths, err := demo.Create(context.Background(), dir, 50)
	if err != nil {
		t.Fatal(err)
	}
	var dbs strings.Builder
	for _, n := range demo.Names {
		fmt.Fprintf(&dbs, "      - {name: %s, path: %q}\n", n, paths[n])
	}
	cfgPath := filepath.Join(dir, "opsd.yaml")
	writeConfig(t, cfgPath, fmt.Sprintf(`node_id: rr
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
  - name: platform-db-backup
    kind: sqlite_backup
    schedule: "0 3 * * *"
    databases:
%s`, token, dir, dir, sentryDSN, dbs.String()))
	var out, errb bytes.Buffer
	if code := run([]string{"backup", "db", "-c", cfgPath}, &out, &errb); code != 0 {
		t.Fatalf("backup: exit %d\n%s\n%s", code, out.String(), errb.String())
	}
	return cfgPath, paths
}

// sample returns the value of the series of a gathered metric with exactly these labels (-1
// when absent).
func sample(t *testing.T, fams []*dto.MetricFamily, name string, labels map[string]string) float64 {
	t.Helper()
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
	next:
		for _, m := range f.GetMetric() {
			if len(m.GetLabel()) != len(labels) {
				continue
			}
			for _, l := range m.GetLabel() {
				if labels[l.GetName()] != l.GetValue() {
					continue next
				}
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue()
			case m.Gauge != nil:
				return m.Gauge.GetValue()
			case m.Histogram != nil:
				return float64(m.Histogram.GetSampleCount())
			}
		}
	}
	return -1
}

// TestRestoreDBIsARun: `opsd restore db` is a run: in the run history (kind restore_db, its
// phases), in the restores with its safety copies and its run, and counted in the
// opsd_restore_* metrics (not in the per-job series); a restore that fails is rolled back,
// recorded rolled_back (from its typed error), counted, and sent to Sentry.
func TestRestoreDBIsARun(t *testing.T) {
	sentry := sentrytest.New(t)
	cfgPath, paths := restoreRunSetup(t, sentry.DSN())
	ctx := context.Background()

	// The CLI: a run in the history and a restore naming its safety copies and its run.
	var out, errb bytes.Buffer
	if code := run([]string{"restore", "db", "-c", cfgPath, "--db", "billing", "--live", "--yes"}, &out, &errb); code != 0 {
		t.Fatalf("restore db: exit %d\n%s\n%s", code, out.String(), errb.String())
	}
	st, err := state.Open(ctx, filepath.Join(filepath.Dir(cfgPath), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	runs, _ := st.Runs(ctx, "restore_db:billing", 5)
	if len(runs) != 1 || runs[0].Kind != "restore_db" || runs[0].Outcome != state.OutcomeSuccess || runs[0].Trigger != "cli" {
		t.Fatalf("run history: %+v", runs)
	}
	for _, p := range []string{"download", "verify", "safety_copy", "replace"} {
		if !strings.Contains(runs[0].Phases, `"`+p+`"`) {
			t.Fatalf("the run's phases lack %s: %s", p, runs[0].Phases)
		}
	}
	rs, _ := st.Restores(ctx, 5)
	if len(rs) != 1 || rs[0].Outcome != state.OutcomeSuccess || rs[0].RunID != runs[0].ID || !strings.Contains(rs[0].Safety, paths["billing"]+".pre-restore-") ||
		!strings.Contains(rs[0].Safety, "pre-restore/rr/billing/") {
		t.Fatalf("restores: %+v", rs)
	}
	st.Close()

	// In process, to scrape the registry: a success, then a failure after the swap.
	r, code := openRestore(cfgPath, &out, &errb)
	if r == nil {
		t.Fatalf("open: %d %s", code, errb.String())
	}
	o := restore.DBOptions{Store: r.store, Layout: r.keys, Databases: []restore.Database{{Name: "billing", Path: paths["billing"]}}, Only: []string{"billing"}, Live: true, Node: "rr", PlanOnly: true}
	plan, err := restore.RestoreDB(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	o.PlanOnly, o.Date = false, plan.Set
	time.Sleep(1100 * time.Millisecond) // safety copies are named by the second
	if code := r.runRestore(restore.DBRun(r.state, o, "test")); code != 0 {
		t.Fatalf("restore: %d\n%s", code, out.String())
	}
	before := sumFile(t, paths["billing"])
	o.AfterReplace = func(string) error { return errors.New("injected failure after the swap") }
	time.Sleep(1100 * time.Millisecond)
	out.Reset()
	if code := r.runRestore(restore.DBRun(r.state, o, "test")); code != 1 || !strings.Contains(out.String(), "outcome rolled_back") {
		t.Fatalf("failing restore: %d\n%s", code, out.String())
	}
	if sumFile(t, paths["billing"]) != before {
		t.Fatal("the failed restore was not rolled back")
	}
	fams, err := r.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   func(float64) bool
	}{
		{"opsd_restore_runs_total", map[string]string{"kind": "db", "outcome": "success"}, func(v float64) bool { return v == 1 }},
		{"opsd_restore_runs_total", map[string]string{"kind": "db", "outcome": "rolled_back"}, func(v float64) bool { return v == 1 }},
		{"opsd_restore_runs_total", map[string]string{"kind": "container", "outcome": "failure"}, func(v float64) bool { return v == 0 }},
		{"opsd_restore_duration_seconds", map[string]string{"kind": "db"}, func(v float64) bool { return v == 2 }},
		{"opsd_restore_last_rto_seconds", map[string]string{"kind": "db", "target": "billing"}, func(v float64) bool { return v > 0 }},
		{"opsd_restore_phase_seconds", map[string]string{"kind": "db", "phase": "safety_copy"}, func(v float64) bool { return v >= 0 }},
		{"opsd_job_runs_total", map[string]string{"job_name": "restore_db:billing", "kind": "restore_db", "outcome": "success"}, func(v float64) bool { return v == -1 }},
		{"opsd_backup_phase_seconds", map[string]string{"job_name": "restore_db:billing", "target": "billing", "phase": "download"}, func(v float64) bool { return v == -1 }},
	} {
		if v := sample(t, fams, c.name, c.labels); !c.want(v) {
			t.Errorf("%s%v = %v", c.name, c.labels, v)
		}
	}
	r.close() // flushes Sentry
	eventually(t, "a Sentry event for the failed restore", 10*time.Second, func() bool {
		all := sentry.All()
		return strings.Contains(all, "injected failure after the swap") && strings.Contains(all, "restore_db")
	})
	st, _ = state.Open(ctx, filepath.Join(filepath.Dir(cfgPath), "state.db"))
	defer st.Close()
	rs, _ = st.Restores(ctx, 1)
	if rs[0].Outcome != state.OutcomeRolledBack || !strings.Contains(rs[0].Error, "rolled back: every database is as it was") {
		t.Fatalf("failed restore record: %+v", rs[0])
	}
}

// TestInterruptedRestoreReportedAtNextStart: `opsd restore db` (the real binary) is SIGKILLed
// after the swap, while it waits for the API's health. The next daemon start reports the
// restore interrupted, naming its safety copy and how to finish or roll back: in the log (warn),
// /health (degraded), the admin API, the run history, opsd_restore_runs_total, Sentry and
// `opsd restores`.
func TestInterruptedRestoreReportedAtNextStart(t *testing.T) {
	sentry := sentrytest.New(t)
	cfgPath, paths := restoreRunSetup(t, sentry.DSN())
	hit := make(chan struct{}, 1)
	health := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case hit <- struct{}{}:
		default:
		}
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer health.Close()
	bin := opsdtest.Binary(t)
	cmd := exec.Command(bin, "restore", "db", "-c", cfgPath, "--db", "billing", "--live", "--yes", "--health-url", health.URL)
	var cout bytes.Buffer
	cmd.Stdout, cmd.Stderr = &cout, &cout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-hit: // swapped: the safety copy is recorded, the database replaced
	case <-time.After(2 * time.Minute):
		cmd.Process.Kill()
		t.Fatalf("the restore never reached its health check:\n%s", cout.String())
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	safety, _ := filepath.Glob(paths["billing"] + ".pre-restore-*")
	if len(safety) != 1 {
		t.Fatalf("safety copies: %v", safety)
	}

	m, base := startDaemon(t, cfgPath)
	_, body := get(t, base+"/health")
	for _, want := range []string{`"status":"degraded"`, "interrupted:restore_db:billing", safety[0], "To roll back"} {
		if !strings.Contains(body, want) {
			t.Fatalf("/health lacks %q: %s", want, body)
		}
	}
	if l := metricLine(t, base, `opsd_restore_runs_total{kind="db",outcome="interrupted"}`); !strings.HasSuffix(l, " 1") {
		t.Fatalf("opsd_restore_runs_total: %q", l)
	}
	_, body = getAuth(t, base+"/api/admin/restores", token)
	var list struct{ Restores []state.Restore }
	json.Unmarshal([]byte(body), &list)
	if len(list.Restores) != 1 || list.Restores[0].Outcome != state.OutcomeInterrupted || !strings.Contains(list.Restores[0].Safety, safety[0]) ||
		!strings.Contains(list.Restores[0].Error, "To finish: run opsd restore db again") {
		t.Fatalf("admin restores: %s", body)
	}
	runs, _ := m.state.Runs(context.Background(), "restore_db:billing", 5)
	if len(runs) != 1 || runs[0].Outcome != state.OutcomeInterrupted || !strings.Contains(runs[0].Error, safety[0]) {
		t.Fatalf("run history: %+v", runs)
	}
	if logs := m.opts.Stderr.(*syncBuffer).String(); !strings.Contains(logs, `"level":"warn"`) || !strings.Contains(logs, "was interrupted") {
		t.Fatalf("no warning logged:\n%s", logs)
	}
	eventually(t, "a Sentry event for the interrupted restore", 10*time.Second, func() bool {
		m.sentry.Flush(context.Background())
		return strings.Contains(sentry.All(), "was interrupted")
	})
	var out, errb bytes.Buffer
	if code := run([]string{"restores", "-c", cfgPath}, &out, &errb); code != 0 || !strings.Contains(out.String(), "interrupted") || !strings.Contains(out.String(), safety[0]) {
		t.Fatalf("opsd restores: %d\n%s\n%s", code, out.String(), errb.String())
	}
	os.Remove(safety[0])
}

// TestAdminRestoreCancelKeepsTheOriginal: an admin restore of a real container cancelled while
// the original is stopped and renamed rolls back: the original container is back under its
// name, with its id, running; the restore is recorded canceled and names its safety export.
func TestAdminRestoreCancelKeepsTheOriginal(t *testing.T) {
	dc := dockertest.Client(t)
	name := dockertest.Unique("tenant_opsdrrcancel_")
	orig := dockertest.Run(t, dc, name, nil, "trap 'exit 0' TERM; echo a > /data/a.txt; sleep 3600 & wait")
	_, cfgPath := writeLocalConfig(t, "rrc", fmt.Sprintf(`http:
  admin_token: %s
`, token), fmt.Sprintf(`  - {name: containers-nightly, kind: container_export, schedule: "0 2 * * *", name_prefix: %s}
`, name))
	stopped, release := make(chan struct{}), make(chan struct{})
	old := containerRestore
	t.Cleanup(func() { containerRestore = old })
	containerRestore = func(m *Main, keys *layout.Layout, containerID, key string, _ restore.HostAccess) *restore.Run {
		return restore.ContainerRun(m.state, m.docker, restore.ContainerOptions{Store: m.objStore(), Layout: keys, Name: containerID, Key: key, Node: "rrc",
			AfterStop: func() error {
				close(stopped)
				<-release
				return nil
			}}, "api")
	}
	m, base := startDaemon(t, cfgPath)
	ctx := context.Background()
	spec, _ := m.sched.Spec("containers-nightly")
	if o := m.runner.Run(ctx, spec.Job, time.Minute, "test"); !o.OK() {
		t.Fatal(o.Err)
	}
	key := "nightly/rrc/" + name + "/" + name + "_" + time.Now().UTC().Format("20060102") + ".tar.gz"
	code, b := postBody(t, base+"/api/admin/backups/"+name+"/restore", token, `{"remotePath":"`+key+`"}`)
	if code != 202 {
		t.Fatalf("restore: %d %s", code, b)
	}
	id := startedID(t, b)
	<-stopped // the original is stopped and renamed now
	if code, b := request(t, http.MethodDelete, fmt.Sprintf("%s/api/admin/restores/%d", base, id), token, ""); code != 202 {
		t.Fatalf("cancel: %d %s", code, b)
	}
	close(release)
	var rec state.Restore
	eventually(t, "the restore to end", time.Minute, func() bool {
		rec = restoreRecord(t, m, id)
		return rec.Outcome != state.OutcomeRunning
	})
	if rec.Outcome != state.OutcomeCanceled || !strings.Contains(rec.Error, "rolled back: the original "+name+" is back") || !strings.Contains(rec.Safety, "pre-restore/rrc/"+name+"/") {
		t.Fatalf("cancelled restore: %+v", rec)
	}
	d, err := dc.Inspect(ctx, name, false)
	if err != nil || d.ID != orig || !d.Running {
		t.Fatalf("the original container after a cancelled restore: %+v %v", d, err)
	}
}

// TestDaemonReportsARestoreThatDiesWhileItRuns: a CLI restore whose process dies while the
// daemon runs (its liveness lock released, its row left running) is reported interrupted by
// the daemon's next check, with its safety copy, on /health.
func TestDaemonReportsARestoreThatDiesWhileItRuns(t *testing.T) {
	dir, cfgPath := writeLocalConfig(t, "rw", "", `  - {name: noop, kind: noop, schedule: "0 2 * * *"}
`)
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	m, err := NewMain(ctx, cfg, Options{Stderr: &syncBuffer{}, Listen: "127.0.0.1:0", CheckInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Run(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close(context.Background()) })
	base := "http://" + m.Addr().String()

	// The "CLI": its own handle on the state database, a restore with a safety copy, then it dies.
	cli, err := state.Open(ctx, filepath.Join(dir, "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	id, err := cli.StartRestore(ctx, state.Restore{Kind: "db", Target: "platform", Key: "platform/20261130/", RequestedBy: "cli:test", StartedAt: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	cli.RestoreSafety(ctx, id, "/data/auth.db.pre-restore-20261130T010203Z (store: pre-restore/rw/auth/x.db)")
	time.Sleep(200 * time.Millisecond) // several checks see it alive
	if _, body := get(t, base+"/health"); strings.Contains(body, "interrupted:restore_db") {
		t.Fatalf("a live restore was reported interrupted: %s", body)
	}
	cli.Close() // the process dies
	eventually(t, "the daemon to report the dead restore", 10*time.Second, func() bool {
		_, body := get(t, base+"/health")
		return strings.Contains(body, "interrupted:restore_db:platform") && strings.Contains(body, "/data/auth.db.pre-restore-20261130T010203Z")
	})
}
