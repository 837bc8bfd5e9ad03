package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wopr-network/opsd/config"
	"github.com/wopr-network/opsd/internal/demo"
	"github.com/wopr-network/opsd/internal/state"
)

// operatorConfig is a node's job file on a local store: the seven platform databases, WOPR_HOME
// snapshots of two instances, the drill, verification and prune, and a job that is off.
func operatorConfig(t *testing.T) (dir, cfgPath string) {
	t.Helper()
	dir = t.TempDir()
	paths, err := demo.Create(context.Background(), filepath.Join(dir, "live"), 50)
	if err != nil {
		t.Fatal(err)
	}
	if err := demo.Instances(dir); err != nil {
		t.Fatal(err)
	}
	var dbs strings.Builder
	for _, n := range demo.Names {
		fmt.Fprintf(&dbs, "      - {name: %s, path: %q}\n", n, paths[n])
	}
	cfgPath = filepath.Join(dir, "opsd.yaml")
	writeConfig(t, cfgPath, fmt.Sprintf(`node_id: op-1
state:
  path: %[1]s/state.db
storage:
  backend: local
  local:
    path: %[1]s/store
jobs:
  - name: platform-db-backup
    kind: sqlite_backup
    schedule: "0 3 * * *"
    temp_dir: %[1]s/tmp
    databases:
%[2]s  - name: homes
    kind: dir_snapshot
    schedule: "0 2 * * *"
    base_dir: %[1]s/instances
  - {name: platform-drill, kind: sqlite_drill, schedule: "0 4 * * *", temp_dir: %[1]s/tmp}
  - {name: offsite-verify, kind: offsite_verify, schedule: "0 5 * * *", containers: false}
  - {name: prune, kind: prune, schedule: "0 6 * * *"}
  - {name: paused, kind: noop, schedule: "@hourly", enabled: false}
`, dir, dbs.String()))
	return dir, cfgPath
}

// cli runs a command line in-process and returns its exit code, stdout and stderr.
func cli(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	return code, out.String(), errb.String()
}

// TestOperatorSession is what an operator does on a fresh node, command by command: check the
// job file, list the jobs, back up (all, then one database), snapshot the instances, drill,
// verify, plan a prune, and see every run in the job list afterwards.
func TestOperatorSession(t *testing.T) {
	dir, cfgPath := operatorConfig(t)
	expect := func(want int, contains string, args ...string) string {
		t.Helper()
		code, out, errb := cli(args...)
		if code != want || !strings.Contains(out+errb, contains) {
			t.Fatalf("opsd %s: exit %d (want %d), want %q in:\n%s%s", strings.Join(args, " "), code, want, contains, out, errb)
		}
		return out
	}
	expect(0, "ok (6 jobs, 5 enabled, local store)", "config", "check", "-c", cfgPath)
	out := expect(0, "NAME", "jobs", "list", "-c", cfgPath)
	if !strings.Contains(out, "paused") || !strings.Contains(out, "disabled") || strings.Count(out, "never") != 6 {
		t.Fatalf("jobs list before any run:\n%s", out)
	}

	out = expect(0, "platform-db-backup: success", "backup", "db", "-c", cfgPath)
	if strings.Count(out, "OK  ") != 7 || !strings.Contains(out, "platform/") {
		t.Fatalf("backup db: want 7 OK lines with their keys:\n%s", out)
	}
	out = expect(0, "platform-db-backup: success", "backup", "db", "-c", cfgPath, "--db", "auth,billing")
	if strings.Count(out, "OK  ") != 2 {
		t.Fatalf("backup db --db auth,billing:\n%s", out)
	}
	expect(1, `job platform-db-backup has no database named "nope"`, "backup", "db", "-c", cfgPath, "--db", "nope")
	out = expect(0, "homes: success", "backup", "snapshots", "-c", cfgPath, "bot-alpha")
	if !strings.Contains(out, "bot-alpha") || strings.Contains(out, "bot-beta") {
		t.Fatalf("backup snapshots bot-alpha:\n%s", out)
	}
	expect(0, "bot-beta", "backup", "snapshots", "-c", cfgPath)
	expect(1, "no container_export job in "+cfgPath, "backup", "containers", "-c", cfgPath)
	expect(1, `no sqlite_backup job named "other"`, "backup", "db", "-c", cfgPath, "--job", "other")

	expect(0, "Result: 7 passed, 0 failed", "drill", "db", "-c", cfgPath)
	expect(2, `--date "2025" is not YYYYMMDD`, "drill", "db", "-c", cfgPath, "--date", "2025")
	for _, cmd := range [][]string{{"restore", "db"}, {"restore", "postgres"}} {
		expect(2, `--date "2025" is not YYYYMMDD`, append(cmd, "-c", cfgPath, "--date", "2025")...)
	}
	expect(2, `--date "2025" is not YYYYMMDD`, "restore", "container", "-c", cfgPath, "--date", "2025", "tenant_a")
	expect(2, "--sample -1: want 1 or more", "drill", "node", "-c", cfgPath, "--sample", "-1")
	expect(0, "0 missing", "verify", "-c", cfgPath)
	out = expect(0, "", "prune", "-c", cfgPath, "--dry-run", "-o", "json")
	if !json.Valid([]byte(out)) {
		t.Fatalf("prune --dry-run -o json is not JSON:\n%s", out)
	}
	expect(0, "paused: success", "jobs", "run", "-c", cfgPath, "paused")
	expect(1, `no job named "absent"`, "jobs", "run", "-c", cfgPath, "absent")
	expect(2, "Usage: opsd jobs run", "jobs", "run", "-c", cfgPath)

	out = expect(0, "", "jobs", "list", "-c", cfgPath, "-o", "json")
	var list struct {
		Jobs []struct {
			Name, LastOutcome string
			NextRun           *string
			LastSuccess       *string
		}
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil || len(list.Jobs) != 6 {
		t.Fatalf("jobs list -o json: %v\n%s", err, out)
	}
	for _, j := range list.Jobs {
		// A dry-run prune is a plan, not a run: prune alone never ran.
		if ran := j.Name != "prune"; ran != (j.LastOutcome == "success" && j.LastSuccess != nil) {
			t.Errorf("after the session, %s: last outcome %q, last success %v", j.Name, j.LastOutcome, j.LastSuccess)
		}
		if (j.NextRun == nil) != (j.Name == "paused") {
			t.Errorf("%s: next run %v", j.Name, j.NextRun)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "store", "drills")); err != nil {
		t.Errorf("the drill wrote no report: %v", err)
	}
}

// TestCommandLineMistakes: usage errors exit 2 and say what is accepted; help exits 0 on stdout.
func TestCommandLineMistakes(t *testing.T) {
	_, cfgPath := operatorConfig(t)
	for _, c := range []struct {
		args     []string
		code     int
		contains string
	}{
		{[]string{}, 2, "Usage:"},
		{[]string{"help"}, 0, "opsd run -c FILE"},
		{[]string{"version"}, 0, "opsd " + version},
		{[]string{"backup"}, 2, "Usage: opsd backup db|containers"},
		{[]string{"backup", "--help"}, 0, "Usage: opsd backup db|containers"},
		{[]string{"backup", "tapes"}, 2, `unknown subcommand "tapes" (one of containers, db, hot, postgres, snapshots)`},
		{[]string{"drill", "db", "--bogus"}, 2, "flag provided but not defined: -bogus"},
		{[]string{"config"}, 2, "Usage: opsd config check"},
		{[]string{"config", "--help"}, 0, "Usage: opsd config check"},
		{[]string{"config", "check", "-c", filepath.Join(t.TempDir(), "absent.yaml")}, 1, "absent.yaml"},
		{[]string{"jobs", "list", "-c", cfgPath, "-o", "yaml"}, 2, "must be one of table, json"},
		{[]string{"adopt", "-c", cfgPath, "--tier", "gold"}, 2, `--tier "gold" is not a tier of the job file (enterprise, free, pro, starter)`},
		{[]string{"healthcheck", "--url", "http://127.0.0.1:1/health/ready", "--timeout", "1s"}, 1, "opsd healthcheck: "},
		{[]string{"forget", "-c", cfgPath, "--tenant", ""}, 2, "--tenant must be a tenant id"},
		{[]string{"restore", "node", "-c", cfgPath, "--from", "node-a", "--parallel", "0"}, 2, "--parallel 0: want 1 to 64"},
		{[]string{"restore", "node", "-c", cfgPath, "--from", "node-a", "--start-parallel", "65"}, 2, "--start-parallel 65: want 0 (as --parallel) to 64"},
	} {
		code, out, errb := cli(c.args...)
		if code != c.code || !strings.Contains(out+errb, c.contains) {
			t.Errorf("opsd %s: exit %d (want %d), want %q in:\n%s%s", strings.Join(c.args, " "), code, c.code, c.contains, out, errb)
		}
		if c.code == 0 && errb != "" {
			t.Errorf("opsd %s wrote to stderr: %s", strings.Join(c.args, " "), errb)
		}
	}
}

// TestServeReloadsOnSIGHUP: `opsd run` reloads the job file on SIGHUP (a job added to the file
// is scheduled) and stops cleanly when told to.
func TestServeReloadsOnSIGHUP(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "opsd.yaml")
	body := fmt.Sprintf("node_id: hup\nstate:\n  path: %[1]s/state.db\nstorage:\n  backend: local\n  local:\n    path: %[1]s/store\nreload:\n  watch: false\njobs:\n  - {name: a, kind: noop, schedule: \"@yearly\"}\n", dir)
	writeConfig(t, cfgPath, body)
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	done, code := make(chan struct{}), make(chan int, 1)
	started := make(chan *Main, 1)
	var logs syncBuffer
	go func() {
		code <- serveUntil(cfg, Options{Stderr: &logs, Listen: "127.0.0.1:0"}, done, func(m *Main) { started <- m })
	}()
	var m *Main
	select {
	case m = <-started:
	case c := <-code:
		t.Fatalf("serve exited with %d: %s", c, logs.String())
	}
	writeConfig(t, cfgPath, body+"  - {name: b, kind: noop, schedule: \"@yearly\"}\n")
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	eventually(t, "job b scheduled after SIGHUP", 10*time.Second, func() bool {
		_, ok := m.sched.Spec("b")
		return ok
	})
	syscall.Kill(os.Getpid(), syscall.SIGHUP) // unchanged now: a no-op
	eventually(t, "the unchanged reload logged", 10*time.Second, func() bool { return strings.Contains(logs.String(), "config unchanged") })
	close(done)
	if c := <-code; c != 0 || !strings.Contains(logs.String(), "opsd stopped") {
		t.Fatalf("exit %d:\n%s", c, logs.String())
	}
}

// TestBackupOneDatabaseRetiresNoOther: `opsd backup db --db auth` backs up auth only; the other
// databases of the job stay tracked with their own status (billing's failed last backup stays
// stale), so a one-database backup never makes /health forget the others.
func TestBackupOneDatabaseRetiresNoOther(t *testing.T) {
	dir, cfgPath := operatorConfig(t)
	if code, out, errb := cli("backup", "db", "-c", cfgPath); code != 0 {
		t.Fatalf("backup db: %d\n%s%s", code, out, errb)
	}
	ctx := context.Background()
	st, err := state.Open(ctx, filepath.Join(dir, "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	st.RecordBackup(ctx, state.BackupAttempt{Target: "billing", Job: "platform-db-backup", NodeID: "op-1", Kind: "sqlite", At: time.Now(), Error: "disk full"})
	st.Close()
	if code, out, errb := cli("backup", "db", "-c", cfgPath, "--db", "auth"); code != 0 {
		t.Fatalf("backup db --db auth: %d\n%s%s", code, out, errb)
	}
	st, err = state.Open(ctx, filepath.Join(dir, "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	all, err := st.ListBackups(ctx, time.Now(), 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	stale := map[string]bool{}
	for _, b := range all {
		stale[b.ContainerID] = b.IsStale
	}
	if len(all) != len(demo.Names) || !stale["billing"] || stale["auth"] {
		t.Fatalf("tracked after backup db --db auth: want all %d databases, billing stale: %v", len(demo.Names), stale)
	}
}
