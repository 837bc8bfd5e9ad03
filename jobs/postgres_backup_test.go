package jobs

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/wopr-network/opsd/internal/metrics"
	"github.com/wopr-network/opsd/internal/postgres"
	"github.com/wopr-network/opsd/internal/postgres/pgtest"
	"github.com/wopr-network/opsd/internal/state"
	"github.com/wopr-network/opsd/internal/storage"
	"github.com/wopr-network/opsd/internal/storage/storagetest"
	"github.com/wopr-network/opsd/internal/telemetry"
	"github.com/wopr-network/opsd/internal/telemetry/sentrytest"
)

// pgRows is how many rows the large tables get: about 200 MB in the full pass (600,000 rows
// make 401 MB), a few MB with -short; OPSD_TEST_PG_ROWS overrides it.
func pgRows(t *testing.T) int {
	if s := os.Getenv("OPSD_TEST_PG_ROWS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			t.Fatalf("OPSD_TEST_PG_ROWS: %v", err)
		}
		return n
	}
	if testing.Short() {
		return 5000
	}
	return 300000
}

func pgBackupJob(server postgres.DSN, db postgres.DSN, tools postgres.Tools, store storage.Store, mutate func(*PostgresBackupConfig)) *PostgresBackup {
	cfg := PostgresBackupConfig{DSN: db, Tools: tools, Compression: "zstd", Node: "n1", Now: func() time.Time { return day1 }}
	if mutate != nil {
		mutate(&cfg)
	}
	return NewPostgresBackup("postgres-backup", cfg, store)
}

// counts counts every platform table in q.
func counts(t *testing.T, ctx context.Context, q postgres.Querier) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	for _, tb := range pgtest.PlatformTables {
		n, err := postgres.CountRows(ctx, q, tb)
		if err != nil {
			t.Fatal(err)
		}
		out[tb] = n
	}
	return out
}

// TestPostgresBackupWhileWriterCommits: a writer commits pairs of rows during the backup; the
// dump, restored with the real pg_restore into a fresh database, holds exactly the rows of the
// snapshot taken at the dump's start (read by the test in that same snapshot), not the rows
// committed after it, and the manifest describes the server, the tool and the tables.
func TestPostgresBackupWhileWriterCommits(t *testing.T) {
	server, tools := pgtest.Server(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	db := pgtest.NewDatabase(t, server, "opsd_bk")
	if err := pgtest.Fill(ctx, db, pgRows(t)); err != nil {
		t.Fatal(err)
	}
	fake := storagetest.NewFakeS3(t)
	store := storagetest.NewS3(t, fake.Config)

	// The writer: each transaction adds one credit transaction and one meter event.
	var commits atomic.Int64
	committed := make(chan struct{}, 1)
	stop := make(chan struct{})
	writerDone := make(chan error, 1)
	go func() {
		c, err := db.Connect(ctx)
		if err != nil {
			writerDone <- err
			return
		}
		defer c.Close(context.Background())
		for i := 0; ; i++ {
			select {
			case <-stop:
				writerDone <- nil
				return
			default:
			}
			err := pgx.BeginFunc(ctx, c, func(tx pgx.Tx) error {
				if _, err := tx.Exec(ctx, `INSERT INTO credit_transactions (tenant, amount, reason, at) VALUES ('tenant_w', -1, 'deduction', $1)`, time.Now().Unix()); err != nil {
					return err
				}
				_, err := tx.Exec(ctx, `INSERT INTO meter_events (tenant, capability, units, cost_credits) VALUES ('tenant_w', 'chat', 1, 1)`)
				return err
			})
			if err != nil {
				writerDone <- err
				return
			}
			commits.Add(1)
			select {
			case committed <- struct{}{}:
			default:
			}
		}
	}()
	defer func() {
		close(stop)
		if err := <-writerDone; err != nil {
			t.Errorf("writer: %v", err)
		}
	}()

	var atSnapshot map[string]int64
	var argv, environ string
	j := pgBackupJob(server, db, tools, store, func(c *PostgresBackupConfig) {
		c.AtSnapshot = func(ctx context.Context, snapshot string) error {
			conn, err := db.Connect(ctx)
			if err != nil {
				return err
			}
			defer conn.Close(ctx)
			tx, err := conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
			if err != nil {
				return err
			}
			defer tx.Rollback(ctx)
			if _, err := tx.Exec(ctx, "SET TRANSACTION SNAPSHOT '"+snapshot+"'"); err != nil {
				return err
			}
			atSnapshot = counts(t, ctx, tx)
			// The writer commits more after the snapshot, before pg_dump starts.
			for base := commits.Load(); commits.Load() < base+5; {
				select {
				case <-committed:
				case <-ctx.Done():
					return ctx.Err()
				}
			}
			return nil
		}
		c.OnDumpStart = func(cmd *exec.Cmd) {
			argv = strings.Join(cmd.Args, " ")
			b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", cmd.Process.Pid))
			argv += " " + string(bytes.ReplaceAll(b, []byte{0}, []byte{' '}))
			e, _ := os.ReadFile(fmt.Sprintf("/proc/%d/environ", cmd.Process.Pid))
			environ = string(bytes.ReplaceAll(e, []byte{0}, []byte{'\n'}))
		}
	})
	before := commits.Load()
	res, err := j.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if commits.Load() < before+5 {
		t.Fatalf("writer committed %d transactions during the backup", commits.Load()-before)
	}
	key := "postgres/20261125/" + db.Database() + "-20261125.dump.zst"
	if res.Targets[0].Key != key || res.Targets[0].Status != TargetOK {
		t.Fatalf("result: %+v", res.Targets[0])
	}
	pw := server.Password()
	if pw == "" || strings.Contains(argv, pw) || strings.Contains(environ, pw) {
		t.Fatalf("password in pg_dump's argv or environment:\nargv: %s", argv)
	}
	if !strings.Contains(argv, "--format=custom") || !strings.Contains(argv, "--compress=0") || !strings.Contains(environ, "PGPASSFILE=") {
		t.Fatalf("pg_dump argv %q, env has PGPASSFILE: %v", argv, strings.Contains(environ, "PGPASSFILE="))
	}

	dir := t.TempDir()
	m := download(t, store, key, filepath.Join(dir, "dump"), nil)
	p := m.Postgres
	if m.Kind != "postgres" || m.Target != db.Database() || p == nil || p.Format != "custom" || p.ServerVersionNum < 100000 ||
		!strings.Contains(p.DumpVersion, "pg_dump (PostgreSQL)") || p.DatabaseSize <= 0 || strings.Contains(m.Source, pw) {
		t.Fatalf("manifest: %+v %+v", m, p)
	}
	t.Logf("database %d MB, dump %d MB raw, %d MB stored (zstd); %d transactions committed during the run",
		p.DatabaseSize>>20, m.RawSize>>20, m.Size>>20, commits.Load()-before)
	est := map[string]int64{}
	for _, tb := range p.Tables {
		est[tb.Name] = tb.RowsEstimate
	}
	for _, tb := range pgtest.PlatformTables {
		if _, ok := est[tb]; !ok {
			t.Fatalf("manifest tables %v lack %s", p.Tables, tb)
		}
	}
	if est["credit_transactions"] < int64(pgRows(t))/2 {
		t.Fatalf("row estimate of credit_transactions %d", est["credit_transactions"])
	}

	fresh := pgtest.NewDatabase(t, server, "opsd_rs")
	if err := tools.Restore(ctx, fresh, filepath.Join(dir, "dump"), postgres.RestoreOptions{Jobs: 2}); err != nil {
		t.Fatal(err)
	}
	c, err := fresh.Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	got := counts(t, ctx, c)
	for tb, want := range atSnapshot {
		if got[tb] != want {
			t.Errorf("%s: restored %d rows, the dump's snapshot had %d", tb, got[tb], want)
		}
	}
	live, err := db.Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close(ctx)
	if n, _ := postgres.CountRows(ctx, live, "credit_transactions"); n <= atSnapshot["credit_transactions"] {
		t.Fatalf("live has %d credit transactions, the snapshot %d: the writer did not commit after it", n, atSnapshot["credit_transactions"])
	}
}

// fakeTool writes an executable script named name into dir; every other tool links to the real one.
func toolsWith(t *testing.T, real postgres.Tools, scripts map[string]string) postgres.Tools {
	t.Helper()
	dir := t.TempDir()
	for _, name := range []string{"pg_dump", "pg_restore"} {
		path := filepath.Join(dir, name)
		if s, ok := scripts[name]; ok {
			body := strings.ReplaceAll(s, "$REAL", real.Path(name))
			if err := os.WriteFile(path, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.Symlink(real.Path(name), path); err != nil {
			t.Fatal(err)
		}
	}
	return postgres.Tools{BinDir: dir}
}

func objectsUnder(t *testing.T, store storage.Store, prefix string) []string {
	t.Helper()
	var keys []string
	if err := store.List(context.Background(), prefix, func(o storage.ObjectInfo) error { keys = append(keys, o.Key); return nil }); err != nil {
		t.Fatal(err)
	}
	return keys
}

// TestPostgresBackupNeverPublishesABadDump: pg_dump killed mid-run (non-zero exit), a dump tool
// whose output pg_restore cannot read, and a pg_dump older than the server each fail the run
// with the reason, and leave nothing under postgres/ (no object, no manifest).
func TestPostgresBackupNeverPublishesABadDump(t *testing.T) {
	server, tools := pgtest.Server(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	db := pgtest.NewDatabase(t, server, "opsd_bad")
	if err := pgtest.Fill(ctx, db, 2000); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name  string
		tools postgres.Tools
		kill  bool
		want  string
	}{
		{"killed", tools, true, "pg_dump of "},
		{"unreadable", toolsWith(t, tools, map[string]string{"pg_dump": `case "$1" in --version) exec $REAL --version;; esac; head -c 100000 /dev/urandom; exit 0`}), false, "pg_restore --list cannot read the dump"},
		{"old", toolsWith(t, tools, map[string]string{"pg_dump": `echo "pg_dump (PostgreSQL) 9.6.24"`}), false, "is older than the server"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fake := storagetest.NewFakeS3(t)
			store := storagetest.NewS3(t, fake.Config)
			j := pgBackupJob(server, db, tc.tools, store, func(c *PostgresBackupConfig) {
				if tc.kill {
					c.OnDumpStart = func(cmd *exec.Cmd) { cmd.Process.Kill() }
				}
			})
			_, err := j.Run(ctx)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
			if keys := objectsUnder(t, store, "postgres/"); len(keys) != 0 {
				t.Fatalf("published: %v", keys)
			}
			if tc.name == "old" {
				if err := j.CheckVersion(ctx); err == nil || !strings.Contains(err.Error(), "pg_dump 9 ") {
					t.Fatalf("CheckVersion: %v", err)
				}
			}
		})
	}
}

// TestPostgresBackupPasswordNeverLeaks: runs through the Runner (logs, run records, Sentry) with a wrong
// password (the error path) and the right one; neither password appears in the log or the
// recorded runs.
func TestPostgresBackupPasswordNeverLeaks(t *testing.T) {
	server, tools := pgtest.Server(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	db := pgtest.NewDatabase(t, server, "opsd_pw")
	if err := pgtest.Fill(ctx, db, 100); err != nil {
		t.Fatal(err)
	}
	wrongPW := "Wr0ng-p@ss:word"
	u := strings.Replace(db.String(), "@", ":"+strings.NewReplacer("@", "%40", ":", "%3A").Replace(wrongPW)+"@", 1)
	wrong, err := postgres.ParseDSN(u)
	if err != nil {
		t.Fatal(err)
	}
	if wrong.Password() != wrongPW {
		t.Fatalf("password parsed as %q", wrong.Password())
	}
	st, err := state.Open(ctx, filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var logs bytes.Buffer
	// Sentry without any secret to redact: the password must not be in the events at all.
	srv := sentrytest.New(t)
	sn, err := telemetry.NewSentry(telemetry.SentryOptions{DSN: srv.DSN(), Node: "n1"}, telemetry.NewRedactor())
	if err != nil {
		t.Fatal(err)
	}
	runner := NewRunner(st, metrics.New(prometheus.NewRegistry(), "test"), sn, zerolog.New(&logs), "n1", 2)
	fake := storagetest.NewFakeS3(t)
	store := storagetest.NewS3(t, fake.Config)

	bad := runner.Run(ctx, pgBackupJob(server, wrong, tools, store, nil), time.Minute, "test")
	if bad.Err == nil || !strings.Contains(bad.Err.Error(), "password authentication failed") {
		t.Fatalf("wrong password: %v", bad.Err)
	}
	good := runner.Run(ctx, pgBackupJob(server, db, tools, store, nil), time.Minute, "test")
	if good.Err != nil {
		t.Fatal(good.Err)
	}
	runs, err := st.Runs(ctx, "", 10)
	if err != nil {
		t.Fatal(err)
	}
	recorded, _ := json.Marshal(runs)
	fctx, fcancel := context.WithTimeout(ctx, 5*time.Second)
	sn.Flush(fctx)
	fcancel()
	events := srv.All()
	if !strings.Contains(events, "password authentication failed") {
		t.Fatalf("the failure did not reach Sentry: %s", events)
	}
	all := logs.String() + string(recorded) + fmt.Sprint(bad.Err) + events
	for _, pw := range []string{wrongPW, server.Password()} {
		if strings.Contains(all, pw) {
			t.Fatalf("password %q leaked:\n%s", pw, all)
		}
	}
	if !strings.Contains(string(recorded), "password authentication failed") {
		t.Fatalf("run records do not say why: %s", recorded)
	}
}

// TestPostgresBackupStoreGoesAwayMidUpload: the S3 server stops mid-upload; the run fails naming
// the key, nothing is at the key, and pg_dump is not left running.
func TestPostgresBackupStoreGoesAwayMidUpload(t *testing.T) {
	server, tools := pgtest.Server(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	db := pgtest.NewDatabase(t, server, "opsd_dead")
	if err := pgtest.Fill(ctx, db, 20000); err != nil {
		t.Fatal(err)
	}
	fake := storagetest.NewFakeS3(t)
	store := storagetest.NewS3(t, fake.Config)
	var pid int
	j := pgBackupJob(server, db, tools, &dyingStore{Store: store, after: 1 << 20, kill: fake.Stop}, func(c *PostgresBackupConfig) {
		c.Compression = "none"
		c.OnDumpStart = func(cmd *exec.Cmd) { pid = cmd.Process.Pid }
	})
	res, err := j.Run(ctx)
	key := "postgres/20261125/" + db.Database() + "-20261125.dump"
	if err == nil || res.Targets[0].Status != TargetFailed || !strings.Contains(err.Error(), "upload "+key) {
		t.Fatalf("upload to a dead store: %v", err)
	}
	if fake.HasObject(key) || fake.HasObject(key+".manifest.json") {
		t.Fatal("a partial object or manifest exists at the key")
	}
	if pid == 0 {
		t.Fatal("pg_dump never started")
	}
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
		t.Fatalf("pg_dump (pid %d) still exists after the run", pid)
	}
}

// TestPostgresBackupTimedOutBehindALock: a table is held ACCESS EXCLUSIVE (a migration) past
// the job's timeout. The run fails as timed out, pg_dump is gone, nothing is published, and
// pg_dump's server session is gone too: left queued behind the lock, it would keep holding
// ACCESS SHARE on every table it had locked (blocking the migration's next ALTER TABLE, or
// deadlocking it) until the lock holder commits.
func TestPostgresBackupTimedOutBehindALock(t *testing.T) {
	server, tools := pgtest.Server(t)
	db := pgtest.NewDatabase(t, server, "opsd_locked")
	o, pid, store := backupBehindALock(t, server, tools, db)
	if o.Err == nil || !strings.Contains(o.Err.Error(), "timed out") || !strings.Contains(o.Err.Error(), "nothing published") {
		t.Fatalf("run behind a lock: %v", o.Err)
	}
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
		t.Fatalf("pg_dump (pid %d) still exists after the run", pid)
	}
	if keys := objectsUnder(t, store, "postgres/"); len(keys) != 0 {
		t.Fatalf("published: %v", keys)
	}
}

// backupBehindALock fills db, holds ACCESS EXCLUSIVE on one of its tables, runs a
// postgres_backup of it with a 5 s timeout once pg_dump queues behind the lock, and then, the
// lock still held, fails the test unless no session is left queued behind it; it returns the
// run's outcome, pg_dump's pid and the store.
func backupBehindALock(t *testing.T, server postgres.DSN, tools postgres.Tools, db postgres.DSN) (Outcome, int, storage.Store) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := pgtest.Fill(ctx, db, 50); err != nil {
		t.Fatal(err)
	}
	c, err := db.Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	tx, err := c.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, "LOCK TABLE audit_log IN ACCESS EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	st, err := state.Open(ctx, filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	runner := NewRunner(st, metrics.New(prometheus.NewRegistry(), "test"), nil, zerolog.Nop(), "n1", 2)
	fake := storagetest.NewFakeS3(t)
	store := storagetest.NewS3(t, fake.Config)
	var pid int
	j := pgBackupJob(server, db, tools, store, func(c *PostgresBackupConfig) {
		c.OnDumpStart = func(cmd *exec.Cmd) {
			pid = cmd.Process.Pid
			// Wait until pg_dump queues behind the lock, so the timeout finds it there.
			for i := 0; i < 600; i++ {
				var n int
				if err := lockWaiters(ctx, server, db.Database(), &n); err == nil && n > 0 {
					return
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
	})
	o := runner.Run(ctx, j, 5*time.Second, "test")
	waitNoLockWaiters(t, server, db.Database())
	return o, pid, store
}

// waitNoLockWaiters fails the test unless no session of database waits for a lock within 30 s.
func waitNoLockWaiters(t *testing.T, server postgres.DSN, database string) {
	t.Helper()
	for i := 0; ; i++ {
		var n int
		if err := lockWaiters(context.Background(), server, database, &n); err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			return
		}
		if i > 300 {
			t.Fatalf("pg_dump's session is still queued behind the lock after the run (%d)", n)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// lockWaiters counts the sessions of database waiting for a lock.
func lockWaiters(ctx context.Context, server postgres.DSN, database string, n *int) error {
	c, err := server.Connect(ctx)
	if err != nil {
		return err
	}
	defer c.Close(ctx)
	return c.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND wait_event_type = 'Lock'", database).Scan(n)
}

// TestPostgresBackupBehindALockWithSessionSettingsInTheDSN is TestPostgresBackupTimedOutBehindALock
// with a DSN that sets application_name and options itself (as operators do): settings in the
// connection string override libpq's environment, so pg_dump's session must still carry the
// name opsd ends it by and the client check. The timed-out dump leaves no session queued.
func TestPostgresBackupBehindALockWithSessionSettingsInTheDSN(t *testing.T) {
	server, tools := pgtest.Server(t)
	plain := pgtest.NewDatabase(t, server, "opsd_locked")
	db, err := postgres.ParseDSN(plain.String() + "&application_name=platform-backups&options=--statement_timeout%3D0&password=" + server.Password())
	if err != nil {
		t.Fatal(err)
	}
	if o, _, _ := backupBehindALock(t, server, tools, db); o.Err == nil || !strings.Contains(o.Err.Error(), "timed out") {
		t.Fatalf("run behind a lock: %v", o.Err)
	}
}
