package jobs

import (
	"context"
	"os/exec"
	"sync/atomic"
	"testing"

	"github.com/wopr-network/opsd/internal/artifact"
	"github.com/wopr-network/opsd/internal/postgres/pgtest"
	"github.com/wopr-network/opsd/internal/storage/local"
)

// TestPostgresBackupWaitsForItsKeyBeforeDumping: while another opsd process on the host (the
// nightly, or `opsd backup postgres` from the CLI) writes the dump's key, the backup waits for
// the key's lock before it exports a snapshot or starts pg_dump, so no session of it is open on
// the server while it waits; once the key is free it dumps and publishes. It started pg_dump
// first and waited for the key with the dump's snapshot (and the tables pg_dump had locked)
// held open on the server.
func TestPostgresBackupWaitsForItsKeyBeforeDumping(t *testing.T) {
	server, tools := pgtest.Server(t)
	db := pgtest.NewDatabase(t, server, "opsd_keylock")
	ctx := context.Background()
	if err := pgtest.Fill(ctx, db, 50); err != nil {
		t.Fatal(err)
	}
	base, err := local.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	lockDir := t.TempDir()
	store := artifact.Locking(base, artifact.NewKeyLocks(lockDir))
	var snapshot, dumping atomic.Bool
	j := pgBackupJob(server, db, tools, store, func(c *PostgresBackupConfig) {
		c.AtSnapshot = func(context.Context, string) error { snapshot.Store(true); return nil }
		c.OnDumpStart = func(*exec.Cmd) { dumping.Store(true) }
	})
	key := j.Key(day1)

	// The other process holds the key (its own lock files in the same directory).
	release, err := artifact.NewKeyLocks(lockDir).Lock(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	waited := false
	hctx := artifact.WithHooks(ctx, artifact.Hooks{Waiting: func(k string) {
		defer release()
		waited = true
		if snapshot.Load() || dumping.Load() {
			t.Errorf("waiting for %s with the snapshot exported (%v) and pg_dump started (%v)", k, snapshot.Load(), dumping.Load())
		}
		c, err := server.Connect(ctx)
		if err != nil {
			t.Error(err)
			return
		}
		defer c.Close(ctx)
		var n int
		if err := c.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE datname = $1", db.Database()).Scan(&n); err != nil {
			t.Error(err)
		} else if n != 0 {
			t.Errorf("%d sessions of %s open on the server while the backup waits for its key", n, db.Database())
		}
	}})
	res, err := j.Run(hctx)
	if err != nil {
		t.Fatalf("backup once the key is free: %v", err)
	}
	if !waited {
		t.Fatal("the backup did not wait for the key another process held")
	}
	if !dumping.Load() || len(res.Artifacts) == 0 || res.Artifacts[0] != key {
		t.Fatalf("result %+v", res)
	}
	if _, err := artifact.ReadManifest(ctx, base, key); err != nil {
		t.Fatalf("manifest of %s: %v", key, err)
	}
}
