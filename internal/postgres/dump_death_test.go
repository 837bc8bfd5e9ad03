package postgres_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/wopr-network/opsd/internal/postgres"
	"github.com/wopr-network/opsd/internal/postgres/pgtest"
)

// TestDumpKilledHelper is the opsd that TestDumpDiesWithOpsd kills: it starts a dump and waits.
func TestDumpKilledHelper(t *testing.T) {
	db := os.Getenv("OPSD_DUMP_HELPER_DB")
	if db == "" {
		t.Skip("run by TestDumpDiesWithOpsd")
	}
	server, tools := pgtest.Server(t)
	stream, err := tools.Dump(context.Background(), server.WithDatabase(db), postgres.DumpOptions{ApplicationName: os.Getenv("OPSD_DUMP_HELPER_APP"), ClientCheck: true,
		OnStart: func(cmd *exec.Cmd) { fmt.Printf("pg_dump %d\n", cmd.Process.Pid) }})
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, stream)
}

// TestDumpDiesWithOpsd: opsd is killed (SIGKILL) while its pg_dump waits behind a migration's
// ACCESS EXCLUSIVE lock, so pg_dump writes nothing and no broken pipe would end it. pg_dump dies
// with opsd, and its server session ends too while the lock is still held, instead of waiting
// in the queue (holding ACCESS SHARE on the tables it had locked) until the migration commits.
func TestDumpDiesWithOpsd(t *testing.T) {
	server, _ := pgtest.Server(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	db := pgtest.NewDatabase(t, server, "opsd_dumpdeath")
	if err := pgtest.Fill(ctx, db, 20); err != nil {
		t.Fatal(err)
	}
	c, err := db.Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	var version int
	if err := c.QueryRow(ctx, "SELECT current_setting('server_version_num')::int").Scan(&version); err != nil {
		t.Fatal(err)
	}
	if version < 140000 {
		t.Skipf("client_connection_check_interval needs PostgreSQL 14 (server %d)", version)
	}
	tx, err := c.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, "LOCK TABLE audit_log IN ACCESS EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	app := pgtest.Name("opsd_dumpdeath")
	child := exec.Command(os.Args[0], "-test.run=^TestDumpKilledHelper$", "-test.v")
	child.Env = append(os.Environ(), "OPSD_DUMP_HELPER_DB="+db.Database(), "OPSD_DUMP_HELPER_APP="+app)
	out, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	defer child.Process.Kill()
	sc := bufio.NewScanner(out)
	pid := 0
	for pid == 0 && sc.Scan() {
		fmt.Sscanf(sc.Text(), "pg_dump %d", &pid)
	}
	if pid == 0 {
		t.Fatal("the helper never started pg_dump")
	}
	go io.Copy(io.Discard, out)
	admin, err := server.Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	sessions := func(waiting bool) int {
		t.Helper()
		q := "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1"
		if waiting {
			q += " AND wait_event_type = 'Lock'"
		}
		var n int
		if err := admin.QueryRow(ctx, q, app).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	eventually := func(what string, ok func() bool) {
		t.Helper()
		for i := 0; !ok(); i++ {
			if i > 600 {
				t.Fatalf("after 60s: %s", what)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	eventually("pg_dump never queued behind the lock", func() bool { return sessions(true) > 0 })
	child.Process.Kill() // SIGKILL: opsd runs no cleanup
	child.Wait()
	eventually(fmt.Sprintf("pg_dump (pid %d) still runs after opsd was killed", pid), func() bool {
		_, err := os.Stat(fmt.Sprintf("/proc/%d", pid))
		return err != nil
	})
	eventually("pg_dump's session still waits behind the lock after pg_dump died", func() bool { return sessions(false) == 0 })
}
