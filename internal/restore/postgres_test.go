package restore

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/wopr-network/opsd/internal/artifact"
	"github.com/wopr-network/opsd/internal/postgres"
	"github.com/wopr-network/opsd/internal/postgres/pgtest"
	"github.com/wopr-network/opsd/internal/storage"
	"github.com/wopr-network/opsd/internal/storage/local"
)

type pgRig struct {
	server postgres.DSN
	tools  postgres.Tools
	live   postgres.DSN
	store  storage.Store
	dumped map[string]int64 // row counts in the dump
}

// newPGRig creates a live database, dumps it into a store, then changes it (a marker row in
// audit_log that the dump does not have).
func newPGRig(t *testing.T) *pgRig {
	t.Helper()
	server, tools := pgtest.Server(t)
	ctx := context.Background()
	live := pgtest.NewDatabase(t, server, "opsd_live")
	t.Cleanup(func() { dropLike(t, server, live.Database()+"_%") })
	if err := pgtest.Fill(ctx, live, 300); err != nil {
		t.Fatal(err)
	}
	store, err := local.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	r := &pgRig{server: server, tools: tools, live: live, store: store, dumped: map[string]int64{}}
	key := "postgres/20261125/" + live.Database() + "-20261125.dump"
	if _, err := (postgres.Backup{DSN: live, Tools: tools, Store: store, Key: key, Options: artifact.Options{Compression: "zstd"}}).Run(ctx); err != nil {
		t.Fatal(err)
	}
	c := r.conn(t, live)
	defer c.Close(ctx)
	for _, tb := range []string{"audit_log", "credit_transactions"} {
		r.dumped[tb], _ = postgres.CountRows(ctx, c, tb)
	}
	if _, err := c.Exec(ctx, `INSERT INTO audit_log (actor, action) VALUES ('test', 'after-dump')`); err != nil {
		t.Fatal(err)
	}
	return r
}

func (r *pgRig) conn(t *testing.T, dsn postgres.DSN) *pgx.Conn {
	t.Helper()
	c, err := dsn.Connect(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// markers counts the after-dump marker rows in a database (1: the database as it was, 0: the dump).
func (r *pgRig) markers(t *testing.T, dsn postgres.DSN) int {
	t.Helper()
	c := r.conn(t, dsn)
	defer c.Close(context.Background())
	var n int
	if err := c.QueryRow(context.Background(), `SELECT count(*) FROM audit_log WHERE action = 'after-dump'`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func (r *pgRig) opts() PostgresOptions {
	return PostgresOptions{Store: r.store, Tools: r.tools, DSN: r.live, Jobs: 2, Tables: pgtest.PlatformTables, Critical: []string{"credit_transactions"},
		Node: "n1", Now: func() time.Time { return time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC) }}
}

func dropLike(t *testing.T, server postgres.DSN, pattern string) {
	ctx := context.Background()
	c, err := server.Connect(ctx)
	if err != nil {
		return
	}
	defer c.Close(ctx)
	rows, _ := c.Query(ctx, "SELECT datname FROM pg_database WHERE datname LIKE $1", pattern)
	names, _ := pgx.CollectRows(rows, pgx.RowTo[string])
	for _, n := range names {
		postgres.DropDatabase(ctx, c, n)
	}
}

func databasesLike(t *testing.T, server postgres.DSN, pattern string) []string {
	t.Helper()
	ctx := context.Background()
	c, err := server.Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	rows, _ := c.Query(ctx, "SELECT datname FROM pg_database WHERE datname LIKE $1 ORDER BY 1", pattern)
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return names
}

// TestRestorePostgresSwaps: the dump replaces the live database (an open session is terminated
// only at the swap), the previous one is kept, and a safety dump of it is in pre-restore/ with a
// manifest.
func TestRestorePostgresSwaps(t *testing.T) {
	r := newPGRig(t)
	ctx := context.Background()
	app := r.conn(t, r.live) // the platform, connected all along
	defer app.Close(ctx)
	o := r.opts()
	var appAliveBeforeSwap bool
	o.AfterSwap = func(ctx context.Context) error { return nil }
	offsetsErr := errors.New("pg_restore not started")
	o.OnRestoreStart = func(cmd *exec.Cmd) {
		// The decoded dump pg_restore reads carries its tables' data offsets (pg_dump wrote
		// none into its pipe): each --jobs worker seeks to its table.
		set, unset, err := postgres.DataOffsets(cmd.Args[len(cmd.Args)-1])
		if offsetsErr = err; err == nil && (set == 0 || unset != 0) {
			offsetsErr = fmt.Errorf("%d data offsets set, %d not", set, unset)
		}
	}
	o.Progress = func(s string) {
		if strings.HasPrefix(s, "swapping") {
			appAliveBeforeSwap = app.Ping(ctx) == nil
		}
	}
	res, err := RestorePostgres(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if offsetsErr != nil {
		t.Fatalf("restored archive's data offsets: %v", offsetsErr)
	}
	if !appAliveBeforeSwap {
		t.Fatal("the live database's sessions were cut before the restored one was proven")
	}
	if app.Ping(ctx) == nil {
		t.Fatal("the session to the replaced database survived the swap")
	}
	if r.markers(t, r.live) != 0 {
		t.Fatal("live database still has the row written after the dump: not restored")
	}
	c := r.conn(t, r.live)
	defer c.Close(ctx)
	for tb, want := range r.dumped {
		if n, _ := postgres.CountRows(ctx, c, tb); n != want {
			t.Fatalf("%s: %d rows, the dump has %d", tb, n, want)
		}
	}
	prev := r.live.WithDatabase(res.Previous)
	if res.Previous == "" || r.markers(t, prev) != 1 {
		t.Fatalf("previous database %q not kept as it was", res.Previous)
	}
	m, err := artifact.ReadManifest(ctx, r.store, res.SafetyKey)
	if err != nil || !strings.HasPrefix(res.SafetyKey, "pre-restore/postgres/"+r.live.Database()+"/") || m.Kind != "postgres" {
		t.Fatalf("safety dump %q: %v %+v", res.SafetyKey, err, m)
	}
	if res.Downtime <= 0 {
		t.Fatalf("downtime %s", res.Downtime)
	}
}

// TestRestorePostgresFailureAfterSwapRollsBack: a failure injected right after the swap puts
// the previous database back under the live name, with its rows and accepting connections.
func TestRestorePostgresFailureAfterSwapRollsBack(t *testing.T) {
	r := newPGRig(t)
	ctx := context.Background()
	o := r.opts()
	swapped := false
	o.AfterSwap = func(ctx context.Context) error {
		swapped = true
		if r.markers(t, r.live) != 0 {
			t.Error("the hook ran before the restored database was live")
		}
		return errors.New("injected failure after the swap")
	}
	_, err := RestorePostgres(ctx, o)
	if err == nil || !strings.Contains(err.Error(), "injected failure after the swap") || !strings.Contains(err.Error(), "rolled back") {
		t.Fatalf("error: %v", err)
	}
	if !swapped {
		t.Fatal("the hook never ran")
	}
	if r.markers(t, r.live) != 1 {
		t.Fatal("live database is not the previous one after the rollback")
	}
	if names := databasesLike(t, r.server, r.live.Database()+"_pre_restore_%"); len(names) != 0 {
		t.Fatalf("previous database still renamed: %v", names)
	}
	if names := databasesLike(t, r.server, r.live.Database()+"_failed_%"); len(names) != 1 {
		t.Fatalf("restored database not kept for inspection: %v", names)
	}
}

// TestRestorePostgresSideBySideAndDryRun: --dry-run changes nothing; --target-db restores into a
// new database and leaves the live one alone (no safety dump needed); a bad dump changes nothing.
func TestRestorePostgresSideBySideAndDryRun(t *testing.T) {
	r := newPGRig(t)
	ctx := context.Background()
	o := r.opts()
	o.DryRun = true
	res, err := RestorePostgres(ctx, o)
	if err != nil || !strings.Contains(res.Plan, "safety dump of "+r.live.Database()) || !strings.Contains(res.Plan, "→ "+r.live.Database()) {
		t.Fatalf("dry run: %v\n%s", err, res.Plan)
	}
	if r.markers(t, r.live) != 1 || len(databasesLike(t, r.server, r.live.Database()+"_%")) != 0 {
		t.Fatal("dry run changed something")
	}

	o = r.opts()
	o.TargetDB = r.live.Database() + "_side"
	res, err = RestorePostgres(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if res.Restored != o.TargetDB || res.SafetyKey != "" || r.markers(t, r.live) != 1 || r.markers(t, r.live.WithDatabase(o.TargetDB)) != 0 {
		t.Fatalf("side by side: %+v", res)
	}

	// A dump pg_restore cannot restore (checksum fixed to match): nothing changes.
	key := "postgres/20261125/" + r.live.Database() + "-20261125.dump"
	m, _ := artifact.ReadManifest(ctx, r.store, key)
	bad := []byte("PGDMP garbage that is not an archive")
	up, err := artifact.Upload(ctx, r.store, key, strings.NewReader(string(bad)), artifact.Options{Compression: "zstd"})
	if err != nil {
		t.Fatal(err)
	}
	m.Size, m.SHA256 = up.Size, up.SHA256
	artifact.WriteManifest(ctx, r.store, m)
	o = r.opts()
	if _, err := RestorePostgres(ctx, o); err == nil || !strings.Contains(err.Error(), "nothing changed") {
		t.Fatalf("bad dump: %v", err)
	}
	if r.markers(t, r.live) != 1 || len(databasesLike(t, r.server, r.live.Database()+"_restore_%")) != 0 {
		t.Fatal("a bad dump changed something")
	}
}

// TestRestorePostgresOntoANewServer: the live database is gone (a replaced server); restoring
// with --target-db set to its name creates it from the dump.
func TestRestorePostgresOntoANewServer(t *testing.T) {
	r := newPGRig(t)
	ctx := context.Background()
	pgtest.DropDatabase(t, r.server, r.live.Database())
	o := r.opts()
	o.TargetDB = r.live.Database()
	res, err := RestorePostgres(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if res.Restored != r.live.Database() || r.markers(t, r.live) != 0 {
		t.Fatalf("restore onto a new server: %+v", res)
	}
	c := r.conn(t, r.live)
	defer c.Close(ctx)
	if n, _ := postgres.CountRows(ctx, c, "credit_transactions"); n != r.dumped["credit_transactions"] {
		t.Fatalf("credit_transactions: %d rows, the dump has %d", n, r.dumped["credit_transactions"])
	}
}
