package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/wopr-network/opsd/internal/coord"
	"github.com/wopr-network/opsd/internal/opsdtest"
	"github.com/wopr-network/opsd/internal/state"
)

// TestCLIPruneWaitsForAnotherHostsDrill: with coordination, the prefix locks reach across hosts:
// while a daemon's drill holds nightly/ (through the daemon's own lock set, as a drill does),
// `opsd prune` on another host (another state directory) waits lock_wait and skips the prefix,
// exactly as it does for a drill in its own process; once the drill lets go, prune runs it.
func TestCLIPruneWaitsForAnotherHostsDrill(t *testing.T) {
	t.Parallel()
	dsn := pgDSN(t)
	schema := fmt.Sprintf("opsd_t%d", time.Now().UnixNano()%1e9)
	dirA, dirB := t.TempDir(), t.TempDir()
	mA, _ := startDaemon(t, fleetConfig(t, dirA, "node-a", schema, dsn, `  - {name: noop, kind: noop, schedule: "@yearly"}
`))
	cfgB := fleetConfig(t, dirB, "node-b", schema, dsn, `  - name: prune
    kind: prune
    schedule: "@yearly"
    lock_wait: 1s
    rules:
      - {prefix: nightly/, keep_daily: 7}
`)
	release, err := mA.locks.Acquire(context.Background(), "nightly/node-a/", false, "drill")
	if err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	code := run([]string{"prune", "-c", cfgB, "-o", "json"}, &out, &errb)
	if code != 0 || !strings.Contains(out.String(), "held nightly/ for more than 1s") {
		t.Fatalf("prune on node-b while node-a's drill reads nightly/: exit %d\n%s%s", code, out.String(), errb.String())
	}
	release()
	out.Reset()
	errb.Reset()
	code = run([]string{"prune", "-c", cfgB, "-o", "json"}, &out, &errb)
	if code != 0 || strings.Contains(out.String(), "held nightly/") {
		t.Fatalf("prune on node-b after the drill: exit %d\n%s%s", code, out.String(), errb.String())
	}
}

// fleetBinary starts the built binary as one node of a fleet and returns the process.
func fleetBinary(t *testing.T, bin, cfgPath string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(bin, "run", "-c", cfgPath)
	cmd.Stderr = io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd
}

// TestSIGKILLFailover: three daemons (the built binary, as subprocesses) share one coordination
// database. The daemon running a platform job is SIGKILLed mid-run: the tick is retried once on
// another daemon (attempt 2, lost_node the killed one) well before the next tick, the fast job's
// ticks keep running on the others, and when the killed daemon starts again its run is recorded
// interrupted.
func TestSIGKILLFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("runs for about a minute")
	}
	t.Parallel()
	dsn := pgDSN(t)
	bin := opsdtest.Binary(t)
	dir := t.TempDir()
	schema := fmt.Sprintf("opsd_t%d", time.Now().UnixNano()%1e9)
	job := `  - {name: slow, kind: noop, schedule: "@every 30s", scope: platform, sleep: 8s}
  - {name: fast, kind: noop, schedule: "@every 2s", scope: platform, sleep: 500ms}
`
	nodes := []string{"node-a", "node-b", "node-c"}
	procs := map[string]*exec.Cmd{}
	cfgs := map[string]string{}
	for _, n := range nodes {
		cfgs[n] = fleetConfig(t, dir, n, schema, dsn, job)
		procs[n] = fleetBinary(t, bin, cfgs[n])
	}
	c, err := coord.Open(context.Background(), coord.Options{DSN: dsn, Schema: schema, Node: "observer"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	var running coord.Claim
	eventually(t, "a run of slow", 2*time.Minute, func() bool {
		cl, _ := c.Claims(ctx, "slow")
		for _, x := range cl {
			if x.FinishedAt == nil && time.Since(x.ClaimedAt) < 4*time.Second {
				running = x
				return true
			}
		}
		return false
	})
	victim := running.Node
	procs[victim].Process.Signal(os.Kill)
	procs[victim].Wait()
	killedAt := time.Now()
	t.Logf("SIGKILLed %s during slow's tick %s", victim, running.ScheduledAt.Format(time.TimeOnly))
	var retried coord.Claim
	eventually(t, "the killed tick retried on another node", time.Minute, func() bool {
		cl, _ := c.Claims(ctx, "slow")
		for _, x := range cl {
			if x.ScheduledAt.Equal(running.ScheduledAt) && x.FinishedAt != nil {
				retried = x
				return true
			}
		}
		return false
	})
	if retried.Attempt != 2 || retried.LostNode != victim || retried.Node == victim || retried.Outcome != "success" {
		t.Fatalf("the killed tick: %+v", retried)
	}
	if !retried.ClaimedAt.After(killedAt.Add(-time.Second)) {
		t.Fatalf("the retry started %s, before the kill at %s", retried.ClaimedAt, killedAt)
	}
	eventually(t, "fast's ticks to run on the survivors", time.Minute, func() bool {
		cl, _ := c.Claims(ctx, "fast")
		n := 0
		for _, x := range cl {
			if x.ScheduledAt.After(killedAt) && x.Outcome == "success" && x.Node != victim {
				n++
			}
		}
		return n >= 3
	})
	// The killed daemon starts again: its run is recorded interrupted (and not retried by it).
	procs[victim] = fleetBinary(t, bin, cfgs[victim])
	eventually(t, "the killed run recorded interrupted", time.Minute, func() bool {
		st, err := state.Open(ctx, filepath.Join(dir, victim+"-state.db"))
		if err != nil {
			return false
		}
		defer st.Close()
		runs, _ := st.Runs(ctx, "slow", 10)
		for _, r := range runs {
			if r.Outcome == state.OutcomeInterrupted {
				return true
			}
		}
		return false
	})
	for _, job := range []string{"slow", "fast"} {
		cl, _ := c.Claims(ctx, job)
		for _, x := range cl {
			if x.Attempt > 2 {
				t.Errorf("%s's tick %s ran %d times", job, x.ScheduledAt.Format(time.TimeOnly), x.Attempt)
			}
		}
	}
}

// pgCluster is a PostgreSQL cluster of the test's own (.ci/start-postgres.sh), which it may
// stop and start.
type pgCluster struct {
	t          *testing.T
	dsn        string
	dir, bin   string
	runAs      []string
	repo, port string
}

func startCluster(t *testing.T) *pgCluster {
	t.Helper()
	if os.Getenv("OPSD_TEST_PG_DSN") == "" {
		pgDSN(t) // skips (or fails under OPSD_TEST_REQUIRE_PG=1)
	}
	repo, _ := filepath.Abs("../..")
	_, port, _ := net.SplitHostPort(opsdtest.FreeAddr(t))
	cmd := exec.Command("bash", filepath.Join(repo, ".ci/start-postgres.sh"))
	cmd.Env = append(os.Environ(), "OPSD_PG_PORT="+port, "OPSD_PG_DIR=")
	var errb bytes.Buffer
	cmd.Stderr = &errb
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("start a cluster: %v\n%s", err, errb.String())
	}
	c := &pgCluster{t: t, repo: repo, port: port}
	var pid string
	for _, f := range strings.Fields(strings.TrimPrefix(strings.TrimSpace(string(out)), "export ")) {
		k, v, _ := strings.Cut(f, "=")
		switch k {
		case "OPSD_TEST_PG_DSN":
			c.dsn = v
		case "OPSD_PG_DIR":
			c.dir = v
		case "OPSD_PG_BINDIR":
			c.bin = v
		case "OPSD_PG_PID":
			pid = v
		}
	}
	t.Cleanup(func() {
		stop := exec.Command("bash", filepath.Join(repo, ".ci/stop-postgres.sh"))
		stop.Env = append(os.Environ(), "OPSD_PG_PID="+c.pid(pid), "OPSD_PG_DIR="+c.dir)
		stop.Run()
	})
	if os.Getuid() == 0 {
		u, err := user.Lookup("opsd-pg")
		if err != nil {
			t.Fatal(err)
		}
		c.runAs = []string{"setpriv", "--reuid=" + u.Uid, "--regid=" + u.Gid, "--init-groups", "--"}
	}
	return c
}

// pid is the postmaster's pid now (it changes when the cluster restarts).
func (c *pgCluster) pid(fallback string) string {
	b, err := os.ReadFile(filepath.Join(c.dir, "data", "postmaster.pid"))
	if err != nil {
		return fallback
	}
	first, _, _ := strings.Cut(string(b), "\n")
	return strings.TrimSpace(first)
}

func (c *pgCluster) ctl(action string) {
	c.t.Helper()
	args := append(append([]string{}, c.runAs...), filepath.Join(c.bin, "pg_ctl"), "-D", filepath.Join(c.dir, "data"), "-l", filepath.Join(c.dir, "postgres.log"), "-w", "-t", "60", "-m", "fast", action)
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Dir = c.dir
	if out, err := cmd.CombinedOutput(); err != nil {
		c.t.Fatalf("pg_ctl %s: %v\n%s", action, err, out)
	}
}

// TestPostgresRestartMidFleet: three daemons run a platform job @every 2s while PostgreSQL is
// stopped and started again: while it is down the ticks are skipped and counted
// (reason="coordination"), /health is degraded; afterwards the job runs again, and no tick ever
// ran successfully twice.
func TestPostgresRestartMidFleet(t *testing.T) {
	if testing.Short() {
		t.Skip("runs for about a minute")
	}
	t.Parallel()
	pg := startCluster(t)
	dir := t.TempDir()
	schema := "opsd"
	job := `  - {name: tick, kind: noop, schedule: "@every 2s", scope: platform, sleep: 1s}
`
	var mains []*Main
	var bases []string
	for _, n := range []string{"node-a", "node-b", "node-c"} {
		m, base := startDaemon(t, fleetConfig(t, dir, n, schema, pg.dsn, job))
		mains, bases = append(mains, m), append(bases, base)
	}
	ctx := context.Background()
	obs, err := coord.Open(ctx, coord.Options{DSN: pg.dsn, Schema: schema, Node: "observer"})
	if err != nil {
		t.Fatal(err)
	}
	defer obs.Close()
	finished := func(after time.Time) int {
		cl, _ := obs.Claims(ctx, "tick")
		n := 0
		for _, x := range cl {
			if x.Outcome == "success" && x.ScheduledAt.After(after) {
				n++
			}
		}
		return n
	}
	eventually(t, "5 ticks before the restart", 2*time.Minute, func() bool { return finished(time.Time{}) >= 5 })
	skipped := func() float64 {
		total := 0.0
		for _, m := range mains {
			total += testutil.ToFloat64(m.metrics.JobSkipped.WithLabelValues("tick", "noop", "coordination"))
		}
		return total
	}
	before := skipped()
	pg.ctl("stop")
	eventually(t, "ticks skipped for coordination while PostgreSQL is down", time.Minute, func() bool { return skipped() > before })
	eventually(t, "/health degraded", time.Minute, func() bool {
		_, b := get(t, bases[0]+"/health")
		return strings.Contains(b, "coordination")
	})
	pg.ctl("start")
	restarted := time.Now()
	eventually(t, "5 ticks after the restart", 2*time.Minute, func() bool { return finished(restarted) >= 5 })
	eventually(t, "/health healthy again", time.Minute, func() bool {
		_, b := get(t, bases[0]+"/health")
		return !strings.Contains(b, "coordination")
	})
	for _, m := range mains {
		m.Close(ctx)
	}
	// No tick ran successfully twice: every successful local run is one successful claim, and
	// successful runs never overlap.
	cl, _ := obs.Claims(ctx, "tick")
	success := 0
	for _, x := range cl {
		if x.Outcome == "success" {
			success++
		}
	}
	type span struct{ from, to time.Time }
	var runs []span
	for _, n := range []string{"node-a", "node-b", "node-c"} {
		st, err := state.Open(ctx, filepath.Join(dir, n+"-state.db"))
		if err != nil {
			t.Fatal(err)
		}
		rs, _ := st.Runs(ctx, "tick", 1000)
		st.Close()
		for _, r := range rs {
			if r.Outcome == state.OutcomeSuccess && r.FinishedAt != nil {
				runs = append(runs, span{r.StartedAt, *r.FinishedAt})
			}
		}
	}
	if len(runs) != success {
		t.Fatalf("%d successful runs across the fleet for %d successful ticks", len(runs), success)
	}
	sort.Slice(runs, func(i, j int) bool { return runs[i].from.Before(runs[j].from) })
	for i := 1; i < len(runs); i++ {
		if runs[i].from.Before(runs[i-1].to) {
			t.Errorf("successful runs overlap: %v-%v and %v-%v", runs[i-1].from, runs[i-1].to, runs[i].from, runs[i].to)
		}
	}
	t.Logf("%d successful ticks, %.0f skipped for coordination", success, skipped())
}

// TestPostgresRestartMidRunRetriesTheTickOnce: two daemons; PostgreSQL restarts (pg_ctl
// restart) while one runs a platform tick: that run is recorded and counted interrupted, the
// tick is retried exactly once on the other node and succeeds.
func TestPostgresRestartMidRunRetriesTheTickOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("runs for about a minute")
	}
	pg := startCluster(t)
	dir := t.TempDir()
	job := `  - {name: slow, kind: noop, schedule: "@every 1m", scope: platform, sleep: 10s}
`
	mains := map[string]*Main{}
	for _, n := range []string{"node-a", "node-b"} {
		m, _ := startDaemon(t, fleetConfig(t, dir, n, "opsd", pg.dsn, job))
		mains[n] = m
	}
	ctx := context.Background()
	obs, err := coord.Open(ctx, coord.Options{DSN: pg.dsn, Schema: "opsd", Node: "observer"})
	if err != nil {
		t.Fatal(err)
	}
	defer obs.Close()
	var running coord.Claim
	eventually(t, "a run of slow", 2*time.Minute, func() bool {
		cl, _ := obs.Claims(ctx, "slow")
		for _, x := range cl {
			if x.FinishedAt == nil && time.Since(x.ClaimedAt) < 5*time.Second {
				running = x
				return true
			}
		}
		return false
	})
	pg.ctl("restart")
	var done coord.Claim
	eventually(t, "the tick to finish", time.Minute, func() bool {
		cl, _ := obs.Claims(ctx, "slow")
		for _, x := range cl {
			if x.ScheduledAt.Equal(running.ScheduledAt) && x.FinishedAt != nil {
				done = x
				return true
			}
		}
		return false
	})
	t.Logf("tick %s: %+v", running.ScheduledAt.Format(time.TimeOnly), done)
	if done.Attempt != 2 || done.LostNode != running.Node || done.Node == running.Node || done.Outcome != "success" {
		t.Fatalf("the interrupted tick: %+v (first run on %s)", done, running.Node)
	}
	victim := mains[running.Node]
	if got := testutil.ToFloat64(victim.metrics.JobRuns.WithLabelValues("slow", "noop", state.OutcomeInterrupted)); got != 1 {
		t.Errorf("%s counted %v interrupted runs", running.Node, got)
	}
	for _, m := range mains {
		m.Close(ctx)
	}
	outcomes := map[string]int{}
	for _, n := range []string{"node-a", "node-b"} {
		st, err := state.Open(ctx, filepath.Join(dir, n+"-state.db"))
		if err != nil {
			t.Fatal(err)
		}
		rs, _ := st.Runs(ctx, "slow", 100)
		st.Close()
		for _, r := range rs {
			outcomes[n+":"+r.Outcome]++
		}
	}
	t.Logf("runs: %v", outcomes)
	if outcomes[running.Node+":"+state.OutcomeInterrupted] != 1 {
		t.Errorf("runs %v: want one interrupted on %s", outcomes, running.Node)
	}
}
