package coord

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/wopr-network/opsd/internal/prefixlock"
)

// testDSN is the throwaway PostgreSQL server .ci/test starts (.ci/start-postgres.sh).
func testDSN(t *testing.T) string {
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

func openNode(t *testing.T, dsn, schema, node string) *Postgres {
	t.Helper()
	p, err := Open(context.Background(), Options{DSN: dsn, Schema: schema, Node: node, CheckInterval: 100 * time.Millisecond, LeaseTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

func testSchema() string { return fmt.Sprintf("opsd_u%d", time.Now().UnixNano()%1e9) }

// TestPrefixLocksAcrossHosts: two lock sets on different state directories stand for two hosts
// sharing one coordination database: a drill's shared hold on one keeps the other's prune
// (exclusive) waiting, other prefixes and readers stay free, and prune gets the prefix once the
// drill lets go.
func TestPrefixLocksAcrossHosts(t *testing.T) {
	t.Parallel()
	dsn, schema := testDSN(t), testSchema()
	a := prefixlock.With(prefixlock.Files(t.TempDir()), PrefixLocks{P: openNode(t, dsn, schema, "host-a")})
	b := prefixlock.With(prefixlock.Files(t.TempDir()), PrefixLocks{P: openNode(t, dsn, schema, "host-b")})
	drill, err := a.TryAcquire("nightly/node-1/", false, "drill")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.TryAcquire("nightly/", true, "prune"); err == nil || !strings.Contains(err.Error(), "in use by another opsd") {
		t.Fatalf("host b's prune got nightly/ while host a's drill reads it: %v", err)
	}
	if rel, err := b.TryAcquire("platform/", true, "prune"); err != nil {
		t.Fatalf("platform/ is free: %v", err)
	} else {
		rel()
	}
	if rel, err := b.TryAcquire("nightly/", false, "verify"); err != nil {
		t.Fatalf("two readers share a prefix across hosts: %v", err)
	} else {
		rel()
	}
	got := make(chan error, 1)
	go func() {
		rel, err := b.Acquire(context.Background(), "nightly/", true, "prune")
		if err == nil {
			rel()
		}
		got <- err
	}()
	select {
	case err := <-got:
		t.Fatalf("prune did not wait for the drill: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	drill()
	select {
	case err := <-got:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("prune never got the prefix after the drill released it")
	}
	// prune holds everything: a drill on the other host waits, then times out.
	all, err := b.TryAcquire("", true, "prune-all")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if _, err := a.Acquire(ctx, "platform/", false, "drill"); err == nil {
		t.Fatal("a drill got platform/ while another host's prune holds every prefix")
	}
	all()
}

// TestPrefixLocksWithoutTheDatabase: readers go ahead on the host's own lock when the database
// cannot be reached; writers (prune) do not.
func TestPrefixLocksWithoutTheDatabase(t *testing.T) {
	p, err := Open(context.Background(), Options{DSN: "postgres://opsd:x@127.0.0.1:9/none?connect_timeout=1", Node: "n", NoMigrate: true, QueryTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	degraded := 0
	l := prefixlock.With(prefixlock.Files(t.TempDir()), PrefixLocks{P: p, Degraded: func(error) { degraded++ }})
	rel, err := l.Acquire(context.Background(), "postgres/", false, "restore")
	if err != nil || degraded != 1 {
		t.Fatalf("a restore without the coordination database: %v (degraded %d)", err, degraded)
	}
	rel()
	if _, err := l.Acquire(context.Background(), "postgres/", true, "prune"); err == nil || !errors.Is(err, ErrUnavailable) {
		t.Fatalf("prune without the coordination database: %v", err)
	}
}

// TestLostTickIsRetriedOnceElsewhere: node a claims a tick under the job lock and loses its
// session (its backend is terminated, as when it is SIGKILLed or cut off): the heartbeat of
// node b reports the tick lost; b takes it over once (attempt 2, lost_node a); when b loses it
// too, nobody retries it again. A lost tick older than a newer claim is closed, not retried.
func TestLostTickIsRetriedOnceElsewhere(t *testing.T) {
	t.Parallel()
	dsn, schema := testDSN(t), testSchema()
	a, b, c := openNode(t, dsn, schema, "node-a"), openNode(t, dsn, schema, "node-b"), openNode(t, dsn, schema, "node-c")
	ctx := context.Background()
	tick := time.Date(2026, 11, 30, 3, 0, 0, 0, time.UTC)
	lease, err := a.TryLock(ctx, JobLock("prune"))
	if err != nil {
		t.Fatal(err)
	}
	if won, err := a.Claim(ctx, "prune", tick); err != nil || !won {
		t.Fatalf("claim: %v %v", won, err)
	}
	if won, _ := b.Claim(ctx, "prune", tick); won {
		t.Fatal("a tick claimed twice")
	}
	beat, err := b.Heartbeat(ctx, NodeInfo{})
	if err != nil {
		t.Fatal(err)
	}
	if len(beat.Lost) != 0 {
		t.Fatalf("a running tick reported lost: %+v", beat.Lost)
	}
	if _, err := b.TryLock(ctx, JobLock("prune")); !errors.Is(err, ErrHeld) {
		t.Fatalf("the job lock while node a runs: %v", err)
	}
	kill(t, b, lease)
	select {
	case <-lease.Lost():
	case <-time.After(30 * time.Second):
		t.Fatal("node a's lease did not notice its session was gone")
	}
	lease.Release()
	beat, err = b.Heartbeat(ctx, NodeInfo{})
	if err != nil {
		t.Fatal(err)
	}
	if len(beat.Lost) != 1 || beat.Lost[0].Job != "prune" || !beat.Lost[0].ScheduledAt.Equal(tick) {
		t.Fatalf("lost ticks after node a's session died: %+v", beat.Lost)
	}
	lb, err := b.TryLock(ctx, JobLock("prune"))
	if err != nil {
		t.Fatal(err)
	}
	if again, err := b.Retake(ctx, "prune", tick); err != nil || !again {
		t.Fatalf("node b's retake: %v %v", again, err)
	}
	cl, _ := b.Claims(ctx, "prune")
	if len(cl) != 1 || cl[0].Node != "node-b" || cl[0].Attempt != 2 || cl[0].LostNode != "node-a" || cl[0].FinishedAt != nil {
		t.Fatalf("claim after the retake: %+v", cl)
	}
	// Node b loses it as well: the retry was the only one.
	kill(t, c, lb)
	<-lb.Lost()
	lb.Release()
	lc, err := c.TryLock(ctx, JobLock("prune"))
	if err != nil {
		t.Fatal(err)
	}
	if again, err := c.Retake(ctx, "prune", tick); err != nil || again {
		t.Fatalf("a second retry: %v %v", again, err)
	}
	cl, _ = c.Claims(ctx, "prune")
	if cl[0].Outcome != OutcomeLost || cl[0].FinishedAt == nil {
		t.Fatalf("a tick lost twice is closed as lost: %+v", cl[0])
	}
	// A lost tick is closed, not retried, once a newer tick is claimed.
	next := tick.Add(24 * time.Hour)
	if won, err := c.Claim(ctx, "prune", next); err != nil || !won {
		t.Fatal(err)
	}
	lc.Release()
	if beat, _ := a.Heartbeat(ctx, NodeInfo{}); len(beat.Lost) != 1 {
		t.Fatalf("node c's claim is open and its lock free: %+v", beat.Lost)
	}
	la, _ := a.TryLock(ctx, JobLock("prune"))
	defer la.Release()
	if again, err := a.Retake(ctx, "prune", tick); err != nil || again {
		t.Fatalf("an older tick retaken: %v %v", again, err)
	}
	third := next.Add(24 * time.Hour)
	if won, err := a.Claim(ctx, "prune", third); err != nil || !won {
		t.Fatal(err)
	}
	cl, _ = a.Claims(ctx, "prune")
	if cl[1].Outcome != OutcomeLost || cl[1].LostNode != "node-c" || cl[1].FinishedAt == nil {
		t.Fatalf("an open older tick is closed by the next claim: %+v", cl[1])
	}
	if err := a.Finish(ctx, "prune", third, "success"); err != nil {
		t.Fatal(err)
	}
}

// kill terminates the session holding lease (from another node's connection).
func kill(t *testing.T, by *Postgres, l *Lease) {
	t.Helper()
	pid := l.conn.Conn().PgConn().PID()
	if _, err := by.pool.Exec(context.Background(), `SELECT pg_terminate_backend($1)`, pid); err != nil {
		t.Fatal(err)
	}
}

// TestHeartbeatIsOneStatement: a heartbeat returns every node (this one included) in one
// statement: the idle load of a node.
func TestHeartbeatIsOneStatement(t *testing.T) {
	t.Parallel()
	dsn, schema := testDSN(t), testSchema()
	a, b := openNode(t, dsn, schema, "node-a"), openNode(t, dsn, schema, "node-b")
	ctx := context.Background()
	if _, err := a.Heartbeat(ctx, NodeInfo{Version: "1", BacksUpContainers: true}); err != nil {
		t.Fatal(err)
	}
	before := b.Queries()
	beat, err := b.Heartbeat(ctx, NodeInfo{Version: "2"})
	if err != nil {
		t.Fatal(err)
	}
	if n := b.Queries() - before; n != 1 {
		t.Fatalf("a heartbeat sent %d statements", n)
	}
	if len(beat.Nodes) != 2 || beat.Nodes[0].Node != "node-a" || !beat.Nodes[0].BacksUpContainers || beat.Nodes[1].Node != "node-b" {
		t.Fatalf("nodes: %+v", beat.Nodes)
	}
	if lost := LostNodes(beat.Nodes, time.Now().Add(time.Hour), time.Minute); len(lost) != 1 || lost[0] != "node-a" {
		t.Fatalf("lost an hour later: %v (only nodes backing up containers count)", lost)
	}
}
