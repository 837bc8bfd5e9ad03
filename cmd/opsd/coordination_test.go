package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/wopr-network/opsd/internal/coord"
	"github.com/wopr-network/opsd/internal/state"
)

// pgDSN is the throwaway PostgreSQL server .ci/test starts (.ci/start-postgres.sh); the test
// skips without it unless OPSD_TEST_REQUIRE_PG=1.
func pgDSN(t *testing.T) string {
	t.Helper()
	dsn := os.Getenv("OPSD_TEST_PG_DSN")
	if dsn == "" {
		if os.Getenv("OPSD_TEST_REQUIRE_PG") == "1" {
			t.Fatal("OPSD_TEST_REQUIRE_PG=1 but OPSD_TEST_PG_DSN is not set (.ci/start-postgres.sh)")
		}
		t.Skip("no PostgreSQL server (OPSD_TEST_PG_DSN; .ci/start-postgres.sh starts one)")
	}
	return dsn
}

// fleetConfig is one node of a fleet that shares the coordination database in schema.
func fleetConfig(t *testing.T, dir, node, schema, dsn, jobsYAML string) string {
	t.Helper()
	p := filepath.Join(dir, node+".yaml")
	os.WriteFile(filepath.Join(dir, node+".dsn"), []byte(dsn), 0o600)
	body := fmt.Sprintf(`node_id: %s
http:
  listen: 127.0.0.1:0
  admin_token: %s
state:
  path: %s/%s-state.db
storage:
  backend: local
  local:
    path: %s/store
reload:
  interval: 1h
coordination:
  postgres:
    dsn_file: %s/%s.dsn
    schema: %s
  heartbeat_interval: 1s
  node_lost_after: 4s
alerts:
  interval: 1s
jobs:
%s`, node, token, dir, node, dir, dir, node, schema, jobsYAML)
	writeConfig(t, p, body)
	return p
}

// TestPlatformJobRunsOncePerTickAcrossTheFleet: three daemons share one coordination database;
// a platform-scoped noop @every 2s (sleeping 1s) runs for 60 ticks: every tick between the first
// and the last ran exactly once (0 doubles, 0 misses), and no two runs overlapped.
func TestPlatformJobRunsOncePerTickAcrossTheFleet(t *testing.T) {
	if testing.Short() {
		t.Skip("runs for two minutes")
	}
	t.Parallel()
	dsn := pgDSN(t)
	dir := t.TempDir()
	schema := fmt.Sprintf("opsd_t%d", time.Now().UnixNano()%1e9)
	job := `  - name: tick
    kind: noop
    schedule: "@every 2s"
    scope: platform
    sleep: 1s
`
	var mains []*Main
	for _, n := range []string{"node-a", "node-b", "node-c"} {
		m, _ := startDaemon(t, fleetConfig(t, dir, n, schema, dsn, job))
		mains = append(mains, m)
	}
	c, err := coord.Open(context.Background(), coord.Options{DSN: dsn, Schema: schema, Node: "observer"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const ticks = 60
	var claims []coord.Claim
	eventually(t, fmt.Sprintf("%d finished ticks", ticks), 6*time.Minute, func() bool {
		claims, _ = c.Claims(context.Background(), "tick")
		done := 0
		for _, cl := range claims {
			if cl.FinishedAt != nil {
				done++
			}
		}
		return done >= ticks
	})
	// A tick claimed while the daemons shut down may end "not_started" (its run refused by a
	// closing runner): that is the shutdown, not a lost tick, and it has no run to count.
	var lastSeen time.Time
	for _, cl := range claims {
		if cl.FinishedAt != nil && cl.ScheduledAt.After(lastSeen) {
			lastSeen = cl.ScheduledAt
		}
	}
	for _, m := range mains {
		m.Close(context.Background())
	}
	claims, _ = c.Claims(context.Background(), "tick")
	nodes := map[string]int{}
	notStarted := 0
	for i, cl := range claims {
		if cl.ScheduledAt.After(lastSeen) && cl.Outcome == "not_started" {
			notStarted++
			continue
		}
		nodes[cl.Node]++
		if i > 0 {
			if gap := cl.ScheduledAt.Sub(claims[i-1].ScheduledAt); gap != 2*time.Second {
				t.Errorf("tick %s follows %s: a gap of %s (a missed tick)", cl.ScheduledAt.Format(time.TimeOnly), claims[i-1].ScheduledAt.Format(time.TimeOnly), gap)
			}
		}
		if cl.FinishedAt != nil && cl.Outcome != "success" {
			t.Errorf("tick %s on %s ended %q", cl.ScheduledAt.Format(time.TimeOnly), cl.Node, cl.Outcome)
		}
	}
	// Every run each daemon recorded corresponds to one claim: no tick ran twice.
	total := 0
	for _, n := range []string{"node-a", "node-b", "node-c"} {
		st, err := state.Open(context.Background(), filepath.Join(dir, n+"-state.db"))
		if err != nil {
			t.Fatal(err)
		}
		runs, err := st.Runs(context.Background(), "tick", 1000)
		st.Close()
		if err != nil {
			t.Fatal(err)
		}
		var last time.Time
		for i := len(runs) - 1; i >= 0; i-- { // oldest first
			total++
			if runs[i].StartedAt.Before(last) {
				t.Errorf("runs overlap on one node")
			}
			if runs[i].FinishedAt != nil {
				last = *runs[i].FinishedAt
			}
		}
	}
	if total != len(claims)-notStarted {
		t.Fatalf("%d runs recorded across the fleet for %d claimed ticks (%d refused at shutdown): a tick ran twice or a claim did not run", total, len(claims), notStarted)
	}
	if len(nodes) < 2 {
		t.Logf("every tick ran on %v (the fleet shared them less than expected, still exactly once)", nodes)
	}
	t.Logf("%d ticks, exactly once each, by node: %v", len(claims), nodes)
}

// TestNodeLostAndFleetView: two daemons heartbeat; /api/fleet lists both; when one stops, the
// node-lost alert fires on the other within the window and resolves after it returns.
func TestNodeLostAndFleetView(t *testing.T) {
	dsn := pgDSN(t)
	dir := t.TempDir()
	schema := fmt.Sprintf("opsd_t%d", time.Now().UnixNano()%1e9)
	export := `  - name: containers
    kind: container_export
    schedule: "0 2 * * *"
    name_prefix: tenant_opsdfleet_nothing_
`
	_, base := startDaemon(t, fleetConfig(t, dir, "node-a", schema, dsn, export))
	cfgB := fleetConfig(t, dir, "node-b", schema, dsn, export)
	mb, _ := startDaemon(t, cfgB)
	eventually(t, "both nodes in /api/fleet", time.Minute, func() bool {
		_, b := getAuth(t, base+"/api/fleet", token)
		return strings.Contains(b, `"node":"node-a"`) && strings.Contains(b, `"node":"node-b"`) && strings.Contains(b, `"lost":0`)
	})
	if code, _ := get(t, base+"/api/fleet"); code != 401 {
		t.Fatalf("/api/fleet without a token: %d", code)
	}
	mb.Close(context.Background())
	eventually(t, "node-lost to fire for node-b", time.Minute, func() bool {
		_, b := getAuth(t, base+"/api/alerts", token)
		return strings.Contains(b, "node-b") && fleetFiring(b)
	})
	eventually(t, "opsd_fleet_nodes{state=lost} 1", time.Minute, func() bool {
		_, b := get(t, base+"/metrics")
		return strings.Contains(b, `opsd_fleet_nodes{state="lost"} 1`) && strings.Contains(b, `opsd_fleet_node_last_seen_timestamp_seconds{node="node-b"}`)
	})
	startDaemon(t, cfgB)
	eventually(t, "node-lost to resolve", time.Minute, func() bool {
		_, b := getAuth(t, base+"/api/alerts", token)
		return !fleetFiring(b)
	})
}

// fleetFiring reports whether the node-lost alert is firing in an /api/alerts body.
func fleetFiring(body string) bool {
	i := strings.Index(body, `"name":"node-lost"`)
	if i < 0 {
		return false
	}
	rest := body[i:]
	if j := strings.Index(rest, "}"); j > 0 {
		rest = rest[:j]
	}
	return strings.Contains(rest, `"firing":true`)
}

// tcpProxy forwards a loopback port to target until cut (every connection closed, new ones
// refused) and can be resumed on the same port: a network failure between opsd and PostgreSQL.
type tcpProxy struct {
	t      *testing.T
	target string
	addr   string
	mu     sync.Mutex
	ln     net.Listener
	conns  []net.Conn
}

func newTCPProxy(t *testing.T, target string) *tcpProxy {
	p := &tcpProxy{t: t, target: target}
	p.listen("127.0.0.1:0")
	t.Cleanup(p.cut)
	return p
}

func (p *tcpProxy) listen(addr string) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		p.t.Fatal(err)
	}
	p.mu.Lock()
	p.ln, p.addr = ln, ln.Addr().String()
	p.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", p.target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, u)
			p.mu.Unlock()
			go func() { io.Copy(u, c); u.Close() }()
			go func() { io.Copy(c, u); c.Close() }()
		}
	}()
}

func (p *tcpProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

func (p *tcpProxy) resume() { p.listen(p.addr) }

// viaProxy rewrites the DSN's host:port to the proxy's.
func viaProxy(t *testing.T, dsn string, p *tcpProxy) string {
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	u.Host = p.addr
	return u.String()
}

// TestLostSessionCancelsThePlatformRun: a daemon runs a long platform job; its connection to
// the coordination database is cut; the run is cancelled (fencing: no two nodes ever run it at
// once), /health says degraded, the job is skipped while the database is unreachable (counted),
// and it runs again once the database answers. Meanwhile a second node, whose connection is
// fine, runs the job: the two runs never overlap. The CLI and the API refuse a run while another
// node holds the job.
func TestLostSessionCancelsThePlatformRun(t *testing.T) {
	dsn := pgDSN(t)
	u, _ := url.Parse(dsn)
	proxy := newTCPProxy(t, u.Host)
	dir := t.TempDir()
	schema := fmt.Sprintf("opsd_t%d", time.Now().UnixNano()%1e9)
	job := `  - name: long
    kind: noop
    schedule: "0 3 * * *"
    scope: platform
    sleep: 10m
`
	mA, baseA := startDaemon(t, fleetConfig(t, dir, "node-a", schema, viaProxy(t, dsn, proxy), job))
	cfgB := fleetConfig(t, dir, "node-b", schema, dsn, job)
	mB, baseB := startDaemon(t, cfgB)
	t.Cleanup(func() { // the runs sleep 10m: stop them rather than wait
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		mA.Close(ctx)
		mB.Close(ctx)
	})
	if code, b := post(t, baseA+"/api/jobs/long/run", token); code != 202 {
		t.Fatalf("start the platform run on node-a: %d %s", code, b)
	}
	eventually(t, "the run on node-a", 30*time.Second, func() bool { return mA.runner.IsRunning("long") })
	// Node-b sees the job held elsewhere: the API answers 409 and the CLI refuses.
	if code, b := post(t, baseB+"/api/jobs/long/run", token); code != 409 || !strings.Contains(b, "another node") {
		t.Fatalf("a second platform run on node-b: %d %s", code, b)
	}
	var out, errb bytes.Buffer
	if code := run([]string{"jobs", "run", "-c", cfgB, "long"}, &out, &errb); code != 1 || !strings.Contains(errb.String(), "running on another node") {
		t.Fatalf("CLI run while node-a holds the job: exit %d\n%s\n%s", code, out.String(), errb.String())
	}
	// Node-a's session is lost: its run is cancelled and /health is degraded.
	proxy.cut()
	eventually(t, "node-a's run to be cancelled", time.Minute, func() bool { return !mA.runner.IsRunning("long") })
	eventually(t, "node-a degraded", time.Minute, func() bool {
		_, b := get(t, baseA+"/health")
		return strings.Contains(b, `"degraded"`)
	})
	runsA, _ := mA.state.Runs(context.Background(), "long", 10)
	if len(runsA) == 0 || runsA[0].Outcome != state.OutcomeInterrupted || runsA[0].FinishedAt == nil {
		t.Fatalf("node-a's run after losing its session: %+v", runsA)
	}
	// Node-b can take the job now (the lock went with node-a's session), and did not run
	// while node-a did.
	eventually(t, "node-b to take the job", time.Minute, func() bool {
		code, _ := post(t, baseB+"/api/jobs/long/run", token)
		return code == 202
	})
	stB, _ := state.Open(context.Background(), filepath.Join(dir, "node-b-state.db"))
	defer stB.Close()
	var runsB []state.Run
	eventually(t, "node-b's run recorded", time.Minute, func() bool {
		runsB, _ = stB.Runs(context.Background(), "long", 10)
		return len(runsB) > 0
	})
	if runsB[0].StartedAt.Before(runsA[0].StartedAt) || (runsA[0].FinishedAt != nil && runsB[0].StartedAt.Before(*runsA[0].FinishedAt)) {
		t.Fatalf("runs overlap: node-a %v-%v, node-b from %v", runsA[0].StartedAt, runsA[0].FinishedAt, runsB[0].StartedAt)
	}
	// While node-a cannot reach the database its platform runs are refused, not run uncoordinated.
	if code, b := post(t, baseA+"/api/jobs/long/run", token); code == 202 || mA.runner.IsRunning("long") {
		t.Fatalf("node-a started a platform run without the coordination database: %d %s", code, b)
	}
	proxy.resume()
	eventually(t, "node-a healthy again", time.Minute, func() bool {
		_, b := get(t, baseA+"/health")
		return !strings.Contains(b, "coordination")
	})
}

// TestDuplicateNodeIDIsReported: two daemons on different hosts (state directories) are
// configured with the same node_id, as a cloned VM image would be. Their heartbeats overwrite
// one row, so the fleet view shows one node and node-lost can never fire for either host: both
// say so on /health (duplicate_node_id) instead. A daemon restarted under its own node_id (the
// previous process gone) is not a duplicate.
func TestDuplicateNodeIDIsReported(t *testing.T) {
	dsn := pgDSN(t)
	schema := fmt.Sprintf("opsd_t%d", time.Now().UnixNano()%1e9)
	export := `  - name: containers
    kind: container_export
    schedule: "0 2 * * *"
    name_prefix: tenant_opsdfleet_nothing_
`
	dirA, dirB := t.TempDir(), t.TempDir()
	cfgA := fleetConfig(t, dirA, "node-a", schema, dsn, export)
	mA, baseA := startDaemon(t, cfgA)
	// A restart of node-a under the same id is not a duplicate.
	eventually(t, "node-a's heartbeats", time.Minute, func() bool {
		_, b := getAuth(t, baseA+"/api/fleet", token)
		return strings.Contains(b, `"node":"node-a"`)
	})
	mA.Close(context.Background())
	mA, baseA = startDaemon(t, cfgA)
	time.Sleep(3 * time.Second) // three heartbeats
	if _, b := get(t, baseA+"/health"); strings.Contains(b, "duplicate_node_id") {
		t.Fatalf("a restarted node reported as a duplicate of itself: %s", b)
	}
	// A second host with the same node_id.
	_, baseB := startDaemon(t, fleetConfig(t, dirB, "node-a", schema, dsn, export))
	for _, base := range []string{baseA, baseB} {
		eventually(t, "duplicate_node_id on "+base+"/health", 30*time.Second, func() bool {
			_, b := get(t, base+"/health")
			return strings.Contains(b, "duplicate_node_id") && strings.Contains(b, `"degraded"`)
		})
	}
}

// TestLostSessionRunIsCountedInterrupted: a platform run cancelled because its node lost the
// coordination session is recorded interrupted, and the metrics say the same
// (opsd_job_runs_total{outcome="interrupted"}, not "canceled", which reads as a deliberate stop).
func TestLostSessionRunIsCountedInterrupted(t *testing.T) {
	dsn := pgDSN(t)
	u, _ := url.Parse(dsn)
	proxy := newTCPProxy(t, u.Host)
	dir := t.TempDir()
	schema := fmt.Sprintf("opsd_t%d", time.Now().UnixNano()%1e9)
	job := `  - {name: long, kind: noop, schedule: "0 3 * * *", scope: platform, sleep: 10m}
`
	m, base := startDaemon(t, fleetConfig(t, dir, "node-a", schema, viaProxy(t, dsn, proxy), job))
	if code, b := post(t, base+"/api/jobs/long/run", token); code != 202 {
		t.Fatalf("start the platform run: %d %s", code, b)
	}
	eventually(t, "the run", 30*time.Second, func() bool { return m.runner.IsRunning("long") })
	proxy.cut()
	eventually(t, "the run to be cancelled", time.Minute, func() bool { return !m.runner.IsRunning("long") })
	runs, _ := m.state.Runs(context.Background(), "long", 10)
	if len(runs) == 0 || runs[0].Outcome != state.OutcomeInterrupted {
		t.Fatalf("runs: %+v", runs)
	}
	if got := testutil.ToFloat64(m.metrics.JobRuns.WithLabelValues("long", "noop", state.OutcomeInterrupted)); got != 1 {
		_, b := get(t, base+"/metrics")
		var lines []string
		for _, l := range strings.Split(b, "\n") {
			if strings.HasPrefix(l, "opsd_job_runs_total") {
				lines = append(lines, l)
			}
		}
		t.Fatalf("opsd_job_runs_total{outcome=interrupted} = %v; the state says interrupted; metrics:\n%s", got, strings.Join(lines, "\n"))
	}
}

// TestPlatformScheduleMismatchIsReported: mid-rollout, two nodes configure one platform job
// with different schedules. Each node claims its own ticks, so the job runs on both schedules
// (more often than either says): both nodes say so on /health (schedule_mismatch:<job>), and it
// clears once the schedules agree.
func TestPlatformScheduleMismatchIsReported(t *testing.T) {
	dsn := pgDSN(t)
	dir := t.TempDir()
	schema := fmt.Sprintf("opsd_t%d", time.Now().UnixNano()%1e9)
	jobAt := func(schedule string) string {
		return fmt.Sprintf("  - {name: tick, kind: noop, schedule: %q, scope: platform}\n", schedule)
	}
	_, baseA := startDaemon(t, fleetConfig(t, dir, "node-a", schema, dsn, jobAt("@every 2s")))
	cfgB := fleetConfig(t, dir, "node-b", schema, dsn, jobAt("@every 3s"))
	mB, baseB := startDaemon(t, cfgB)
	c, err := coord.Open(context.Background(), coord.Options{DSN: dsn, Schema: schema, Node: "observer"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	eventually(t, "ticks of both schedules", time.Minute, func() bool {
		cl, _ := c.Claims(context.Background(), "tick")
		odd := 0
		for _, x := range cl {
			if x.ScheduledAt.Unix()%2 != 0 {
				odd++ // a multiple of 3s only: node-b's schedule
			}
		}
		return odd > 0 && len(cl) > odd
	})
	for _, base := range []string{baseA, baseB} {
		eventually(t, "schedule_mismatch:tick on "+base+"/health", 30*time.Second, func() bool {
			_, b := get(t, base+"/health")
			return strings.Contains(b, "schedule_mismatch:tick") && strings.Contains(b, "@every 3s") && strings.Contains(b, "@every 2s")
		})
	}
	// The rollout completes: node-b gets node-a's schedule.
	mB.Close(context.Background())
	_, baseB = startDaemon(t, fleetConfig(t, dir, "node-b", schema, dsn, jobAt("@every 2s")))
	for _, base := range []string{baseA, baseB} {
		eventually(t, "schedule_mismatch cleared on "+base, 30*time.Second, func() bool {
			_, b := get(t, base+"/health")
			return !strings.Contains(b, "schedule_mismatch")
		})
	}
}

// TestPlatformCatchUpClaimsTheTickInTheConfiguredZone: a platform job's run at start (or
// catch-up) claims the newest scheduled time, which must be the tick its scheduled fires claim:
// with `timezone: Europe/Berlin` and "0 2 * * *" that is 02:00 Berlin. Computed in the process's
// zone instead (UTC here), it was 02:00 UTC, a tick no node ever fires, so a node restarting
// with catch_up ran a tick another node had run already.
func TestPlatformCatchUpClaimsTheTickInTheConfiguredZone(t *testing.T) {
	dsn := pgDSN(t)
	dir := t.TempDir()
	schema := fmt.Sprintf("opsd_t%d", time.Now().UnixNano()%1e9)
	job := `  - {name: nightly, kind: noop, schedule: "0 2 * * *", scope: platform, run_at_start: true}
`
	cfg := fleetConfig(t, dir, "node-a", schema, dsn, job)
	body, _ := os.ReadFile(cfg)
	writeConfig(t, cfg, "timezone: Europe/Berlin\n"+string(body))
	startDaemon(t, cfg)
	c, err := coord.Open(context.Background(), coord.Options{DSN: dsn, Schema: schema, Node: "observer"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var cl []coord.Claim
	eventually(t, "the run at start's claim", 30*time.Second, func() bool {
		cl, _ = c.Claims(context.Background(), "nightly")
		return len(cl) > 0
	})
	berlin, _ := time.LoadLocation("Europe/Berlin")
	if at := cl[0].ScheduledAt.In(berlin); at.Hour() != 2 || at.Minute() != 0 {
		t.Fatalf("the run at start claimed the tick %s (%s in Berlin): not a time the job is scheduled at", cl[0].ScheduledAt.UTC().Format(time.RFC3339), at.Format(time.RFC3339))
	}
}
