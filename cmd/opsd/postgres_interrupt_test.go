package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/wopr-network/opsd/internal/opsdtest"
	"github.com/wopr-network/opsd/internal/postgres"
	"github.com/wopr-network/opsd/internal/postgres/pgtest"
	"github.com/wopr-network/opsd/internal/state"
)

// TestInterruptedPostgresSwapSaysHowToRecover: `opsd restore postgres` (the real binary) is
// SIGKILLed in the middle of its swap: new sessions to the live database were refused and the
// live database renamed to {db}_pre_restore_{ts}, but the restored one was not yet renamed in.
// No database has the live name then, and the kept one refuses connections. The interrupted
// restore's report must name every database involved and say how to let connections in again;
// following it brings the database back as it was, and the restore can then be run again.
func TestInterruptedPostgresSwapSaysHowToRecover(t *testing.T) {
	server, tools := pgtest.Server(t)
	ctx := context.Background()
	live := pgtest.NewDatabase(t, server, "opsd_kill")
	if err := pgtest.Fill(ctx, live, 300); err != nil {
		t.Fatal(err)
	}
	name := live.Database()
	admin, err := server.Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	t.Cleanup(func() {
		rows, _ := admin.Query(ctx, "SELECT datname FROM pg_database WHERE datname LIKE $1", name+"_%")
		names, _ := pgx.CollectRows(rows, pgx.RowTo[string])
		for _, n := range names {
			postgres.DropDatabase(ctx, admin, n)
		}
	})
	dir := t.TempDir()
	full := strings.Replace(live.String(), "@", ":"+server.Password()+"@", 1)
	os.WriteFile(filepath.Join(dir, "dsn"), []byte(full+"\n"), 0o600)
	cfgPath := filepath.Join(dir, "opsd.yaml")
	writeConfig(t, cfgPath, fmt.Sprintf(`node_id: kill
state:
  path: %[1]s/state.db
storage:
  backend: local
  local: {path: %[1]s/store}
jobs:
  - name: platform-pg
    kind: postgres_backup
    schedule: "0 3 * * *"
    dsn_file: %[1]s/dsn
    compression: zstd
    pg_bin_dir: %[2]s
`, dir, tools.BinDir))
	var out, errb bytes.Buffer
	if code := run([]string{"backup", "postgres", "-c", cfgPath}, &out, &errb); code != 0 {
		t.Fatalf("backup: %d\n%s\n%s", code, out.String(), errb.String())
	}
	c, err := live.Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c.Exec(ctx, `INSERT INTO audit_log (actor, action) VALUES ('test', 'after-dump')`)
	c.Close(ctx)

	// A session holding a lock on the live database object makes the rename wait: opsd is
	// killed exactly there (after ALLOW_CONNECTIONS false, before the renames finished).
	hold, err := server.Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer hold.Close(ctx)
	if _, err := hold.Exec(ctx, "BEGIN"); err != nil {
		t.Fatal(err)
	}
	if _, err := hold.Exec(ctx, "COMMENT ON DATABASE "+postgres.Quote(name)+" IS 'held by the test'"); err != nil {
		t.Fatal(err)
	}
	bin := opsdtest.Binary(t)
	cmd := exec.Command(bin, "restore", "postgres", "-c", cfgPath, "--yes")
	var cout bytes.Buffer
	cmd.Stdout, cmd.Stderr = &cout, &cout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waiting := func() bool {
		var n int
		admin.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query ILIKE 'ALTER DATABASE%RENAME%'`).Scan(&n)
		return n > 0
	}
	deadline := time.Now().Add(2 * time.Minute)
	for !waiting() {
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("the restore never reached its swap:\n%s", cout.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	cmd.Process.Kill()
	cmd.Wait()
	// The server finishes the statement it was waiting to run: live → {db}_pre_restore_{ts}.
	hold.Exec(ctx, "ROLLBACK")
	eventually(t, "the first rename to finish", 30*time.Second, func() bool {
		var n int
		admin.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE query ILIKE 'ALTER DATABASE%RENAME%' AND state = 'active'`).Scan(&n)
		return n == 0
	})
	dbs := func(pattern string) []string {
		rows, _ := admin.Query(ctx, "SELECT datname FROM pg_database WHERE datname LIKE $1 ORDER BY 1", pattern)
		names, _ := pgx.CollectRows(rows, pgx.RowTo[string])
		return names
	}
	prev, restored := dbs(name+"_pre_restore_%"), dbs(name+"_restore_%")
	if len(dbs(name)) != 0 || len(prev) != 1 || len(restored) != 1 {
		t.Fatalf("after the kill: live %v, kept %v, restored %v (want no live database, one kept, one restored)", dbs(name), prev, restored)
	}

	out.Reset()
	errb.Reset()
	if code := run([]string{"restores", "-c", cfgPath, "-o", "json"}, &out, &errb); code != 0 {
		t.Fatalf("opsd restores: %d\n%s", code, errb.String())
	}
	var list struct{ Restores []state.Restore }
	json.Unmarshal(out.Bytes(), &list)
	if len(list.Restores) != 1 || list.Restores[0].Outcome != state.OutcomeInterrupted {
		t.Fatalf("restores: %s", out.String())
	}
	msg := list.Restores[0].Error
	t.Logf("interrupted restore's report: %s", msg)
	for _, want := range []string{prev[0], restored[0], "ALTER DATABASE " + postgres.Quote(name) + " ALLOW_CONNECTIONS true"} {
		if !strings.Contains(msg, want) {
			t.Errorf("the report does not say %q:\n%s", want, msg)
		}
	}

	// Running the restore again before the rollback changes nothing (no live database to dump).
	out.Reset()
	errb.Reset()
	if code := run([]string{"restore", "postgres", "-c", cfgPath, "--yes"}, &out, &errb); code == 0 {
		t.Fatalf("a restore without its live database succeeded:\n%s", out.String())
	}
	if got := dbs(name + "%"); len(got) != 2 {
		t.Fatalf("the failed second restore changed the databases: %v", got)
	}

	// Following the report: the kept database back under its name, connections allowed again,
	// the half-finished restored database dropped. Then the database is as it was.
	if err := postgres.Rename(ctx, admin, prev[0], name); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Exec(ctx, "ALTER DATABASE "+postgres.Quote(name)+" ALLOW_CONNECTIONS true"); err != nil {
		t.Fatal(err)
	}
	if err := postgres.DropDatabase(ctx, admin, restored[0]); err != nil {
		t.Fatal(err)
	}
	c, err = live.Connect(ctx)
	if err != nil {
		t.Fatalf("the live database after the rollback: %v", err)
	}
	var n int
	c.QueryRow(ctx, `SELECT count(*) FROM audit_log WHERE action = 'after-dump'`).Scan(&n)
	c.Close(ctx)
	if n != 1 {
		t.Fatalf("after the rollback the database has %d after-dump rows, want 1 (as it was)", n)
	}
	// And the restore can be finished by running it again.
	out.Reset()
	errb.Reset()
	if code := run([]string{"restore", "postgres", "-c", cfgPath, "--yes"}, &out, &errb); code != 0 {
		t.Fatalf("restore again: %d\n%s\n%s", code, out.String(), errb.String())
	}
}
