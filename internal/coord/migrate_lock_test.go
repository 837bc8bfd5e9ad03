package coord

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// TestStartDoesNotBlockTheFleetBehindAReader: an operator investigates at 3 a.m. in psql and
// leaves a transaction open that read the claims table. An opsd starting meanwhile (a daemon,
// or a one-job CLI command) must not queue for an exclusive lock on the table (ALTER TABLE of
// a schema that is up to date): queued, it blocks every other node's claims and heartbeats
// behind it, so the whole fleet's platform jobs are skipped.
func TestStartDoesNotBlockTheFleetBehindAReader(t *testing.T) {
	t.Parallel()
	dsn, schema := testDSN(t), testSchema()
	a := openNode(t, dsn, schema, "node-a")
	ctx := context.Background()
	psql, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer psql.Close(ctx)
	tx, err := psql.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	var n int
	if err := tx.QueryRow(ctx, `SELECT count(*) FROM `+schema+`.claims`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	started := make(chan error, 1)
	go func() {
		b, err := Open(ctx, Options{DSN: dsn, Schema: schema, Node: "node-b", QueryTimeout: 3 * time.Second})
		if b != nil {
			b.Close()
		}
		started <- err
	}()
	time.Sleep(500 * time.Millisecond) // node-b's start is under way
	lease, err := a.TryLock(ctx, JobLock("migrate-test"))
	if err != nil {
		t.Fatal(err)
	}
	defer lease.Release()
	if _, err := a.Claim(ctx, "migrate-test", time.Now().Truncate(time.Minute)); err != nil {
		t.Fatalf("node-a's claim while node-b starts and a reader holds the claims table: %v", err)
	}
	if _, err := a.Heartbeat(ctx, NodeInfo{}); err != nil {
		t.Fatalf("node-a's heartbeat while node-b starts: %v", err)
	}
	if err := <-started; err != nil {
		t.Fatalf("node-b's start while a reader holds the claims table: %v", err)
	}
}

// TestMigratesTheFirstReleasesTables: the tables of opsd's first coordination version (claims
// without attempt, lost_node and lock_key; an open claim of its) are upgraded at start; the
// old open claim, whose lock cannot be known, is not reported lost but closed as lost by the
// job's next claim.
func TestMigratesTheFirstReleasesTables(t *testing.T) {
	t.Parallel()
	dsn, schema := testDSN(t), testSchema()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	old := time.Date(2026, 11, 30, 2, 0, 0, 0, time.UTC)
	for _, st := range []string{
		`CREATE SCHEMA ` + schema,
		`CREATE TABLE ` + schema + `.claims (job text NOT NULL, scheduled_at timestamptz NOT NULL, node text NOT NULL,
			claimed_at timestamptz NOT NULL DEFAULT now(), finished_at timestamptz, outcome text, PRIMARY KEY (job, scheduled_at))`,
		`CREATE TABLE ` + schema + `.nodes (node text PRIMARY KEY, version text NOT NULL DEFAULT '', last_seen timestamptz NOT NULL, info jsonb NOT NULL DEFAULT '{}')`,
	} {
		if _, err := conn.Exec(ctx, st); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := conn.Exec(ctx, `INSERT INTO `+schema+`.claims (job, scheduled_at, node) VALUES ('migrated', $1, 'old-node')`, old); err != nil {
		t.Fatal(err)
	}
	a := openNode(t, dsn, schema, "node-a")
	beat, err := a.Heartbeat(ctx, NodeInfo{})
	if err != nil || len(beat.Lost) != 0 {
		t.Fatalf("heartbeat on the upgraded tables: %+v %v", beat, err)
	}
	lease, err := a.TryLock(ctx, JobLock("migrated"))
	if err != nil {
		t.Fatal(err)
	}
	defer lease.Release()
	if won, err := a.Claim(ctx, "migrated", old.Add(24*time.Hour)); err != nil || !won {
		t.Fatalf("claim on the upgraded tables: %v %v", won, err)
	}
	cl, err := a.Claims(ctx, "migrated")
	if err != nil || len(cl) != 2 || cl[0].Outcome != OutcomeLost || cl[0].Attempt != 1 || cl[1].Node != "node-a" {
		t.Fatalf("claims: %+v %v", cl, err)
	}
}

// TestFleetsInOtherSchemasDoNotShareLocks: advisory locks are database-wide, but two fleets may
// share one database in different schemas (staging and production): one fleet's prune holding
// its job lock and a prefix must not make the other's prune skip its tick as "running on
// another node" (its tick then ran nowhere) or wait for the prefix.
func TestFleetsInOtherSchemasDoNotShareLocks(t *testing.T) {
	t.Parallel()
	dsn := testDSN(t)
	prod, staging := openNode(t, dsn, testSchema()+"p", "node-a"), openNode(t, dsn, testSchema()+"s", "node-a")
	ctx := context.Background()
	held, err := prod.TryLock(ctx, JobLock("schemas-prune"))
	if err != nil {
		t.Fatal(err)
	}
	defer held.Release()
	l, err := staging.TryLock(ctx, JobLock("schemas-prune"))
	if err != nil {
		t.Fatalf("the other schema's fleet takes its own job lock: %v", err)
	}
	l.Release()
	pl, err := prod.tryLocks(ctx, []lockReq{{key: "prefix:schemas-platform/"}})
	if err != nil {
		t.Fatal(err)
	}
	defer pl.Release()
	sl, err := staging.tryLocks(ctx, []lockReq{{key: "prefix:schemas-platform/"}})
	if err != nil {
		t.Fatalf("the other schema's fleet takes its own prefix lock: %v", err)
	}
	sl.Release()
	// In one schema the lock still excludes.
	if _, err := openNode(t, dsn, prod.o.Schema, "node-b").TryLock(ctx, JobLock("schemas-prune")); err == nil {
		t.Fatal("two nodes of one fleet hold one job lock")
	}
}
