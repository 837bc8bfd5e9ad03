package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wopr-network/opsd/internal/postgres"
	"github.com/wopr-network/opsd/internal/postgres/pgtest"
)

// TestPostgresCLI: backup, drill and restore of a PostgreSQL database, each one opsd command
// from one job file (DSN from dsn_file), and the password never on stdout or stderr.
func TestPostgresCLI(t *testing.T) {
	server, tools := pgtest.Server(t)
	ctx := context.Background()
	live := pgtest.NewDatabase(t, server, "opsd_cli")
	if err := pgtest.Fill(ctx, live, 300); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c, err := server.Connect(ctx)
		if err != nil {
			return
		}
		defer c.Close(ctx)
		rows, _ := c.Query(ctx, "SELECT datname FROM pg_database WHERE datname LIKE $1", live.Database()+"_%")
		var names []string
		for rows.Next() {
			var n string
			rows.Scan(&n)
			names = append(names, n)
		}
		for _, n := range names {
			postgres.DropDatabase(ctx, c, n)
		}
	})
	dir := t.TempDir()
	full := strings.Replace(live.String(), "@", ":"+server.Password()+"@", 1)
	os.WriteFile(filepath.Join(dir, "dsn"), []byte(full+"\n"), 0o600)
	cfgPath := filepath.Join(dir, "opsd.yaml")
	os.WriteFile(cfgPath, []byte(fmt.Sprintf(`node_id: cli
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
  - name: platform-pg-drill
    kind: postgres_drill
    schedule: "@monthly"
    dsn_file: %[1]s/dsn
    pg_bin_dir: %[2]s
`, dir, tools.BinDir)), 0o600)

	var out, errb bytes.Buffer
	runCLI := func(want int, args ...string) string {
		t.Helper()
		out.Reset()
		errb.Reset()
		if code := run(args, &out, &errb); code != want {
			t.Fatalf("opsd %s: exit %d, want %d\n%s\n%s", strings.Join(args, " "), code, want, out.String(), errb.String())
		}
		t.Log(out.String() + errb.String())
		if strings.Contains(out.String()+errb.String(), server.Password()) {
			t.Fatalf("password printed by opsd %s", strings.Join(args, " "))
		}
		return out.String() + errb.String()
	}
	if s := runCLI(0, "backup", "postgres", "-c", cfgPath); !strings.Contains(s, "postgres/") {
		t.Fatalf("backup: %s", s)
	}
	if s := runCLI(0, "drill", "postgres", "-c", cfgPath); !strings.Contains(s, "PASS  "+live.Database()+" — restored, tables present") {
		t.Fatalf("drill: %s", s)
	}
	if s := runCLI(0, "restore", "postgres", "-c", cfgPath, "--dry-run"); !strings.Contains(s, "DRY RUN: nothing was changed") {
		t.Fatalf("dry run: %s", s)
	}
	// Without --yes and without a terminal, nothing is replaced.
	if s := runCLI(1, "restore", "postgres", "-c", cfgPath); !strings.Contains(s, "add --yes") {
		t.Fatalf("no --yes: %s", s)
	}
	if s := runCLI(0, "restore", "postgres", "-c", cfgPath, "--yes"); !strings.Contains(s, "OK  postgres "+live.Database()+" restored from postgres/") {
		t.Fatalf("restore: %s", s)
	}
	if s := runCLI(0, "restore", "postgres", "-c", cfgPath, "--target-db", live.Database()+"_side"); !strings.Contains(s, "side by side") {
		t.Fatalf("side by side: %s", s)
	}
}
