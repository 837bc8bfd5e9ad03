package checks

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/wopr-network/opsd/internal/artifact"
	"github.com/wopr-network/opsd/internal/postgres"
	"github.com/wopr-network/opsd/internal/postgres/pgtest"
	"github.com/wopr-network/opsd/internal/storage"
	"github.com/wopr-network/opsd/internal/storage/local"
	"github.com/wopr-network/opsd/internal/storage/storagetest"
	"github.com/wopr-network/opsd/jobs"
)

var pgDay = time.Date(2026, 11, 25, 3, 0, 0, 0, time.UTC)

// pgBackup fills a fresh database, lets mutate break it, and backs it up with postgres_backup.
func pgBackup(t *testing.T, store storage.Store, compression string, mutate string) (postgres.DSN, postgres.Tools, string) {
	t.Helper()
	server, tools := pgtest.Server(t)
	ctx := context.Background()
	db := pgtest.NewDatabase(t, server, "opsd_dr")
	if err := pgtest.Fill(ctx, db, 500); err != nil {
		t.Fatal(err)
	}
	if mutate != "" {
		c, err := db.Connect(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Exec(ctx, mutate); err != nil {
			t.Fatal(err)
		}
		c.Close(ctx)
	}
	j := jobs.NewPostgresBackup("pg", jobs.PostgresBackupConfig{DSN: db, Tools: tools, Compression: compression, Node: "n1", Now: func() time.Time { return pgDay }}, store)
	res, err := j.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return server, tools, res.Targets[0].Key
}

func pgDrill(server postgres.DSN, tools postgres.Tools, database string, store storage.Store) *PostgresDrill {
	return NewPostgresDrill("pg-drill", PostgresDrillConfig{Server: server, Tools: tools, Database: database, Tables: pgtest.PlatformTables,
		Critical: []string{"credit_transactions", "meter_events"}, Jobs: 2, ReportKey: "drills/{date}/postgres.json", Node: "n1"}, store)
}

// scratchLeft lists the drill's scratch databases still on the server.
func scratchLeft(t *testing.T, server postgres.DSN, database string) []string {
	t.Helper()
	ctx := context.Background()
	c, err := server.Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	rows, err := c.Query(ctx, "SELECT datname FROM pg_database WHERE datname LIKE $1", "opsd_drill_"+database+"%")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for rows.Next() {
		var n string
		rows.Scan(&n)
		out = append(out, n)
	}
	return out
}

// TestPostgresDrillPasses: a good dump (zstd) restores into a scratch database that is dropped
// after; the report has sqlite_drill's lines, phases and the RTO, and is uploaded.
func TestPostgresDrillPasses(t *testing.T) {
	fake := storagetest.NewFakeS3(t)
	store := storagetest.NewS3(t, fake.Config)
	server, tools, key := pgBackup(t, store, "zstd", "")
	database := strings.Split(strings.TrimPrefix(key, "postgres/20261125/"), "-")[0]
	var seen []string
	var pgOptions []string
	d := pgDrill(server, tools, database, store)
	offsetsErr := errors.New("pg_restore not started")
	d.cfg.OnRestoreStart = func(cmd *exec.Cmd) {
		// The file pg_restore reads carries every table's data offset (the stored dump, read
		// from pg_dump's pipe, has none): each --jobs worker seeks to its table.
		set, unset, err := postgres.DataOffsets(cmd.Args[len(cmd.Args)-1])
		if offsetsErr = err; err == nil && (set < len(pgtest.PlatformTables) || unset != 0) {
			offsetsErr = fmt.Errorf("%d data offsets set, %d not", set, unset)
		}
		for _, kv := range cmd.Env {
			if strings.HasPrefix(kv, "PGOPTIONS=") {
				pgOptions = append(pgOptions, kv)
			}
		}
	}
	d.cfg.AfterRestore = func(ctx context.Context, scratch postgres.DSN) error {
		seen = scratchLeft(t, server, database)
		return nil
	}
	res, err := d.Run(context.Background())
	if err != nil {
		t.Fatalf("%v\n%s", err, res.Report)
	}
	for _, want := range []string{"PostgreSQL restore drill: set 20261125 (postgres/)", "PASS  " + database + " — restored, tables present",
		"Result: 1 passed, 0 failed, 0 skipped", "RTO (drill time): ", "restore"} {
		if !strings.Contains(res.Report, want) {
			t.Fatalf("report lacks %q:\n%s", want, res.Report)
		}
	}
	if res.Drill == nil || !res.Drill.Passed || res.Drill.RTO <= 0 || res.Drill.RTOTarget != 15*time.Minute {
		t.Fatalf("drill stats %+v", res.Drill)
	}
	var rep DrillReport
	if err := json.Unmarshal(res.ReportJSON, &rep); err != nil || len(rep.Databases) != 1 || rep.Databases[0].Phases["restore"] <= 0 || rep.Databases[0].Key != key {
		t.Fatalf("report json %s (%v)", res.ReportJSON, err)
	}
	if len(seen) != 1 {
		t.Fatalf("scratch databases during the drill: %v", seen)
	}
	if offsetsErr != nil || strings.Contains(res.Report, "data offsets not set") {
		t.Fatalf("restored archive's data offsets: %v\n%s", offsetsErr, res.Report)
	}
	// The scratch restore commits without waiting for the WAL flush and sorts indexes in memory.
	if want := "PGOPTIONS=-c synchronous_commit=off -c maintenance_work_mem=256MB"; len(pgOptions) != 1 || pgOptions[0] != want {
		t.Fatalf("pg_restore's PGOPTIONS %q, want %q", pgOptions, want)
	}
	if left := scratchLeft(t, server, database); len(left) != 0 {
		t.Fatalf("scratch databases left: %v", left)
	}
	if !fake.HasObject("drills/20261125/postgres.json") && len(res.Artifacts) != 1 {
		t.Fatalf("report not uploaded: %v", res.Artifacts)
	}
}

// rewrite replaces a stored artifact with body, and when fixManifest, updates its manifest's
// checksum so only pg_restore can tell.
func rewrite(t *testing.T, store storage.Store, key string, mutate func([]byte) []byte, fixManifest bool) {
	t.Helper()
	ctx := context.Background()
	rc, _, err := store.Get(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(rc)
	rc.Close()
	body = mutate(body)
	if _, err := store.Put(ctx, key, bytes.NewReader(body), storage.PutOptions{Size: int64(len(body))}); err != nil {
		t.Fatal(err)
	}
	if fixManifest {
		m, err := artifact.ReadManifest(ctx, store, key)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(body)
		m.Size, m.SHA256 = int64(len(body)), hex.EncodeToString(sum[:])
		if err := artifact.WriteManifest(ctx, store, m); err != nil {
			t.Fatal(err)
		}
	}
}

// TestPostgresDrillFails: a dump with a table removed, one with an empty critical table, an
// object corrupted in the store, and an archive corrupted with a matching manifest each fail the
// drill with a clear reason (the corrupted archive is also refused by the data offsets step,
// which leaves it to pg_restore and says so in the report), and no scratch database is left
// behind.
func TestPostgresDrillFails(t *testing.T) {
	cases := []struct {
		name    string
		mutate  string
		corrupt func(t *testing.T, store storage.Store, key string)
		want    string
		warn    string // in the report besides
	}{
		{name: "table removed", mutate: "DROP TABLE audit_log", want: "missing table: audit_log"},
		{name: "empty critical table", mutate: "TRUNCATE credit_transactions", want: "critical table credit_transactions is empty"},
		{name: "corrupted object", corrupt: func(t *testing.T, store storage.Store, key string) {
			rewrite(t, store, key, func(b []byte) []byte { b[len(b)/2] ^= 0xff; return b }, false)
		}, want: "sha256"},
		{name: "corrupted archive", corrupt: func(t *testing.T, store storage.Store, key string) {
			// Keep the header and table of contents, garble the data blocks.
			rewrite(t, store, key, func(b []byte) []byte {
				for i := len(b) / 2; i < len(b); i += 7 {
					b[i] ^= 0x5a
				}
				return b
			}, true)
		}, want: "pg_restore into opsd_drill_", warn: "data offsets not set (pg_restore skips through the data): set data offsets: not a complete custom-format pg_dump archive"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fake := storagetest.NewFakeS3(t)
			store := storagetest.NewS3(t, fake.Config)
			server, tools, key := pgBackup(t, store, "none", tc.mutate)
			if tc.corrupt != nil {
				tc.corrupt(t, store, key)
			}
			database := strings.Split(strings.TrimPrefix(key, "postgres/20261125/"), "-")[0]
			res, err := pgDrill(server, tools, database, store).Run(context.Background())
			t.Log(res.Report)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q\n%s", err, tc.want, res.Report)
			}
			if !strings.Contains(res.Report, "FAIL  "+database+" — ") || !strings.Contains(res.Report, "Result: 0 passed, 1 failed, 0 skipped") ||
				(tc.warn != "" && !strings.Contains(res.Report, tc.warn)) {
				t.Fatalf("report:\n%s", res.Report)
			}
			if res.Drill == nil || res.Drill.Passed {
				t.Fatalf("drill stats %+v", res.Drill)
			}
			if left := scratchLeft(t, server, database); len(left) != 0 {
				t.Fatalf("scratch databases left: %v", left)
			}
		})
	}
}

// TestPostgresDrillEncryptedDump: a zstd + age dump drills with the identity, and fails with a
// reason naming identity_file without it.
func TestPostgresDrillEncryptedDump(t *testing.T) {
	server, tools := pgtest.Server(t)
	ctx := context.Background()
	db := pgtest.NewDatabase(t, server, "opsd_age")
	if err := pgtest.Fill(ctx, db, 300); err != nil {
		t.Fatal(err)
	}
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	fake := storagetest.NewFakeS3(t)
	store := storagetest.NewS3(t, fake.Config)
	j := jobs.NewPostgresBackup("pg", jobs.PostgresBackupConfig{DSN: db, Tools: tools, Compression: "zstd", Recipients: []age.Recipient{id.Recipient()},
		Now: func() time.Time { return pgDay }}, store)
	res, err := j.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if key := res.Targets[0].Key; !strings.HasSuffix(key, ".dump.zst.age") {
		t.Fatalf("key %s", key)
	}
	d := pgDrill(server, tools, db.Database(), store)
	if _, err := d.Run(ctx); err == nil || !strings.Contains(err.Error(), "identity_file") {
		t.Fatalf("without identity: %v", err)
	}
	d.cfg.Identities = []age.Identity{id}
	if res, err := d.Run(ctx); err != nil {
		t.Fatalf("with identity: %v\n%s", err, res.Report)
	}
	if left := scratchLeft(t, server, db.Database()); len(left) != 0 {
		t.Fatalf("scratch databases left: %v", left)
	}
}

// childrenOf lists the processes whose parent is pid.
func childrenOf(pid int) []int {
	var out []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		child, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", child))
		if err != nil {
			continue
		}
		// "pid (comm) state ppid ...": comm may hold spaces, so read after the last ')'.
		f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
		if len(f) > 1 && f[1] == strconv.Itoa(pid) {
			out = append(out, child)
		}
	}
	return out
}

// TestPostgresDrillCancelledMidRestore: the drill is cancelled (its timeout, opsd's shutdown)
// while a pg_restore --jobs worker is busy loading a table (here: a CHECK constraint that waits
// while a role exists). Run returns without waiting for the worker, no pg_restore process is
// left, and the scratch database is dropped.
func TestPostgresDrillCancelledMidRestore(t *testing.T) {
	fake := storagetest.NewFakeS3(t)
	store := storagetest.NewS3(t, fake.Config)
	gate := pgtest.Name("opsd_gate")
	server, tools, key := pgBackup(t, store, "none", `
		CREATE FUNCTION public.gate(x int) RETURNS boolean LANGUAGE plpgsql AS $$
		BEGIN
			WHILE x = 1 AND EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = '`+gate+`') LOOP
				PERFORM pg_catalog.pg_sleep(0.05);
			END LOOP;
			RETURN true;
		END $$;
		CREATE TABLE gated (x int CHECK (public.gate(x)));
		INSERT INTO gated SELECT generate_series(1, 10);`)
	database := strings.Split(strings.TrimPrefix(key, "postgres/20261125/"), "-")[0]
	ctx := context.Background()
	admin, err := server.Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, "CREATE ROLE "+gate); err != nil {
		t.Fatal(err)
	}
	open := func() { admin.Exec(context.Background(), "DROP ROLE IF EXISTS "+gate) }
	defer open()

	d := pgDrill(server, tools, database, store)
	leader := make(chan int, 1)
	d.cfg.OnRestoreStart = func(cmd *exec.Cmd) { leader <- cmd.Process.Pid }
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := d.Run(rctx)
		done <- err
	}()
	pid := <-leader
	// Wait until a worker's session is held by the gate.
	for i := 0; ; i++ {
		var n int
		if err := admin.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE datname LIKE 'opsd_drill_%' AND wait_event = 'PgSleep'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			break
		}
		if i > 1200 {
			t.Fatal("no pg_restore worker reached the gated table")
		}
		time.Sleep(50 * time.Millisecond)
	}
	workers := childrenOf(pid)
	if len(workers) == 0 {
		t.Fatalf("pg_restore (pid %d) has no worker processes", pid)
	}
	cancel()
	select {
	case err = <-done:
	case <-time.After(time.Minute):
		open() // let the worker finish so the drill can end
		<-done
		t.Fatal("the cancelled drill did not return while a pg_restore worker was busy (it waited for the worker)")
	}
	if err == nil {
		t.Fatal("a cancelled drill passed")
	}
	for _, w := range append(workers, pid) {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", w)); err == nil {
			b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", w))
			if strings.Contains(string(b), "pg_restore") {
				t.Fatalf("pg_restore process %d is still running after the drill returned", w)
			}
		}
	}
	if left := scratchLeft(t, server, database); len(left) != 0 {
		t.Fatalf("scratch databases left: %v", left)
	}
}

// gatedDump is a mutation for pgBackup: table gated, whose CHECK constraint waits (on row 1) while
// the role gate exists, so a test can hold a pg_restore worker mid-table.
func gatedDump(gate string) string {
	return `
		CREATE FUNCTION public.gate(x int) RETURNS boolean LANGUAGE plpgsql AS $$
		BEGIN
			WHILE x = 1 AND EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = '` + gate + `') LOOP
				PERFORM pg_catalog.pg_sleep(0.05);
			END LOOP;
			RETURN true;
		END $$;
		CREATE TABLE gated (x int CHECK (public.gate(x)));
		INSERT INTO gated SELECT generate_series(1, 10);`
}

// waitGated waits until a session of a drill's scratch database is held by the gate.
func waitGated(t *testing.T, q postgres.Querier) {
	t.Helper()
	for i := 0; ; i++ {
		var n int
		if err := q.QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_activity WHERE datname LIKE 'opsd_drill_%' AND wait_event = 'PgSleep'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			return
		}
		if i > 1200 {
			t.Fatal("no pg_restore worker reached the gated table")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestPostgresDrillKilledHelper is the opsd TestPostgresDrillKilledMidRestore kills: it drills
// the dump in OPSD_DRILL_HELPER_DIR and prints pg_restore's pid.
func TestPostgresDrillKilledHelper(t *testing.T) {
	dir := os.Getenv("OPSD_DRILL_HELPER_DIR")
	if dir == "" {
		t.Skip("run by TestPostgresDrillKilledMidRestore")
	}
	server, tools := pgtest.Server(t)
	store, err := local.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	d := pgDrill(server, tools, os.Getenv("OPSD_DRILL_HELPER_DB"), store)
	d.cfg.OnRestoreStart = func(cmd *exec.Cmd) { fmt.Printf("pg_restore %d\n", cmd.Process.Pid) }
	d.Run(context.Background())
}

// TestPostgresDrillKilledMidRestore: opsd is killed (SIGKILL) while a drill's pg_restore runs.
// pg_restore dies with it (it does not go on filling the scratch server), and the next drill
// drops the scratch database the killed one left.
func TestPostgresDrillKilledMidRestore(t *testing.T) {
	dir := t.TempDir()
	store, err := local.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	gate := pgtest.Name("opsd_gate")
	server, tools, key := pgBackup(t, store, "none", gatedDump(gate))
	database := strings.Split(strings.TrimPrefix(key, "postgres/20261125/"), "-")[0]
	ctx := context.Background()
	admin, err := server.Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, "CREATE ROLE "+gate); err != nil {
		t.Fatal(err)
	}
	open := func() { admin.Exec(context.Background(), "DROP ROLE IF EXISTS "+gate) }
	defer open()
	defer func() {
		for _, n := range scratchLeft(t, server, database) {
			pgtest.DropDatabase(t, server, n)
		}
	}()

	child := exec.Command(os.Args[0], "-test.run=^TestPostgresDrillKilledHelper$", "-test.v")
	child.Env = append(os.Environ(), "OPSD_DRILL_HELPER_DIR="+dir, "OPSD_DRILL_HELPER_DB="+database)
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
		fmt.Sscanf(sc.Text(), "pg_restore %d", &pid)
	}
	if pid == 0 {
		t.Fatal("the helper never started pg_restore")
	}
	go io.Copy(io.Discard, out)
	waitGated(t, admin)
	child.Process.Kill() // SIGKILL: no deferred drop runs
	child.Wait()
	for i := 0; ; i++ {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err != nil {
			break
		}
		if i > 600 {
			t.Fatalf("pg_restore (pid %d) is still running after opsd was killed", pid)
		}
		time.Sleep(50 * time.Millisecond)
	}

	// The worker the gate held finishes its table and exits; the killed drill's scratch database
	// is left, and the next drill drops it.
	open()
	for i := 0; ; i++ {
		var n int
		if err := admin.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE datname LIKE 'opsd_drill_%'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
		if i > 1200 {
			t.Fatal("the killed drill's pg_restore workers never ended")
		}
		time.Sleep(50 * time.Millisecond)
	}
	left := scratchLeft(t, server, database)
	if len(left) != 1 {
		t.Fatalf("scratch databases after the kill: %v", left)
	}
	res, err := pgDrill(server, tools, database, store).Run(ctx)
	if err != nil {
		t.Fatalf("%v\n%s", err, res.Report)
	}
	if now := scratchLeft(t, server, database); len(now) != 0 {
		t.Fatalf("scratch databases left after the next drill: %v", now)
	}
	if !strings.Contains(res.Report, left[0]) {
		t.Fatalf("the report does not name the dropped leftover %s:\n%s", left[0], res.Report)
	}
}

// TestConcurrentPostgresDrillsKeepEachOthersScratch: two drills of one database at once (a CLI
// drill while the daemon's runs, or nodes without coordination sharing a scratch server). The
// second one starts while the first has restored its scratch database and not yet connected to
// check it (no session on it): cleaning up what killed drills left must not drop a scratch
// database a live drill holds. Both pass, and no scratch database is left.
func TestConcurrentPostgresDrillsKeepEachOthersScratch(t *testing.T) {
	fake := storagetest.NewFakeS3(t)
	store := storagetest.NewS3(t, fake.Config)
	server, tools, key := pgBackup(t, store, "zstd", "")
	database := strings.Split(strings.TrimPrefix(key, "postgres/20261125/"), "-")[0]
	ctx := context.Background()
	first := pgDrill(server, tools, database, store)
	var second error
	first.cfg.AfterRestore = func(ctx context.Context, _ postgres.DSN) error {
		_, second = pgDrill(server, tools, database, store).Run(ctx)
		return nil
	}
	if _, err := first.Run(ctx); err != nil {
		t.Fatalf("the first drill, while a second one ran: %v", err)
	}
	if second != nil {
		t.Fatalf("the second drill: %v", second)
	}
	if left := scratchLeft(t, server, database); len(left) != 0 {
		t.Fatalf("scratch databases left: %v", left)
	}
}

// TestPostgresDrillRefusesWhatDoesNotFit: a dump whose manifest says its content is larger than
// the free space (a hostile or broken manifest) is refused before a byte is downloaded, naming
// the space, instead of filling the drill host's disk.
func TestPostgresDrillRefusesWhatDoesNotFit(t *testing.T) {
	server, tools := pgtest.Server(t)
	store, err := local.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	key := "postgres/20261130/opsd_big-20261130.dump"
	if _, err := store.Put(ctx, key, strings.NewReader("x"), storage.PutOptions{Size: 1}); err != nil {
		t.Fatal(err)
	}
	if err := artifact.WriteManifest(ctx, store, artifact.Manifest{Key: key, Kind: "postgres", Target: "opsd_big", Size: 1, RawSize: 1 << 60, SHA256: "00", Compression: artifact.Zstd}); err != nil {
		t.Fatal(err)
	}
	res, err := pgDrill(server, tools, "opsd_big", store).Run(ctx)
	if err == nil || !strings.Contains(err.Error()+res.Report, "free in") {
		t.Fatalf("drill of a dump larger than the disk: %v\n%s", err, res.Report)
	}
}
