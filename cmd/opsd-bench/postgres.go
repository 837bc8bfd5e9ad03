package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/wopr-network/opsd/checks"
	"github.com/wopr-network/opsd/internal/postgres"
	"github.com/wopr-network/opsd/internal/postgres/pgtest"
	"github.com/wopr-network/opsd/jobs"
)

// pgServer uses OPSD_TEST_PG_DSN when set, else starts a throwaway cluster with
// .ci/start-postgres.sh (stopped by the returned function).
func pgServer(ctx context.Context) (postgres.DSN, postgres.Tools, func(), error) {
	stop := func() {}
	raw, bin := os.Getenv("OPSD_TEST_PG_DSN"), os.Getenv("OPSD_TEST_PG_BINDIR")
	if raw == "" {
		fmt.Fprintln(os.Stderr, "opsd-bench: starting PostgreSQL (.ci/start-postgres.sh)")
		out, err := exec.CommandContext(ctx, "bash", ".ci/start-postgres.sh").Output()
		if err != nil {
			return postgres.DSN{}, postgres.Tools{}, stop, fmt.Errorf("start PostgreSQL (run from the repository root; apt-get install postgresql): %w", err)
		}
		env := os.Environ()
		for _, f := range strings.Fields(strings.TrimPrefix(strings.TrimSpace(string(out)), "export ")) {
			k, v, _ := strings.Cut(f, "=")
			env = append(env, f)
			switch k {
			case "OPSD_TEST_PG_DSN":
				raw = v
			case "OPSD_TEST_PG_BINDIR":
				bin = v
			}
		}
		stop = func() {
			cmd := exec.Command("bash", ".ci/stop-postgres.sh")
			cmd.Env = env
			cmd.Run()
		}
	}
	dsn, err := postgres.ParseDSN(raw)
	if err != nil {
		stop()
		return dsn, postgres.Tools{}, func() {}, err
	}
	tools, err := postgres.FindTools(bin)
	if err != nil {
		stop()
		return dsn, tools, func() {}, err
	}
	return dsn, tools, stop, nil
}

// postgresScenario: opsd's postgres_backup next to `pg_dump -Fc | s3cmd put -`, and its
// postgres_drill next to `s3cmd get` + `pg_restore`, on the same database and S3 engine.
func (b *bench) postgresScenario(ctx context.Context) error {
	if err := need("s3cmd", "s3cmd"); err != nil {
		return err
	}
	server, tools, stop, err := pgServer(ctx)
	if err != nil {
		return err
	}
	defer stop()
	admin, err := server.Connect(ctx)
	if err != nil {
		return err
	}
	defer admin.Close(context.WithoutCancel(ctx))
	name := pgtest.Name("opsd_bench")
	if err := postgres.CreateDatabase(ctx, admin, name, ""); err != nil {
		return err
	}
	defer postgres.DropDatabase(context.WithoutCancel(ctx), admin, name)
	db := server.WithDatabase(name)
	// pgtest.Fill with n rows makes about n × 0.67 KB (600,000: 401 MB).
	rows := b.sz.postgresMB * 1500
	fmt.Fprintf(os.Stderr, "postgres: filling a ~%d MB database\n", b.sz.postgresMB)
	if err := pgtest.Fill(ctx, db, rows); err != nil {
		return err
	}
	var size int64
	if err := admin.QueryRow(ctx, "SELECT pg_database_size($1)", name).Scan(&size); err != nil {
		return err
	}
	store, bucket, err := b.store(ctx, "postgres")
	if err != nil {
		return err
	}
	// The peer gets the password the usual way; opsd's children never see this variable.
	os.Setenv("PGPASSWORD", server.Password())
	defer os.Unsetenv("PGPASSWORD")

	backup := []row{{name: "opsd postgres_backup (pg_dump -Z0, parallel zstd, verified, upload)"}, {name: "pg_dump -Fc | s3cmd put -"}}
	drill := []row{{name: "opsd postgres_drill (download, verify, restore --jobs 2, checks, drop)"}, {name: "s3cmd get + createdb + pg_restore --jobs 2 + dropdb"}}
	date := time.Now().UTC().Format("20060102")
	for r := 0; r < b.rounds; r++ {
		job := jobs.NewPostgresBackup("bench", jobs.PostgresBackupConfig{DSN: db, Tools: tools, Compression: "zstd",
			KeyTemplate: fmt.Sprintf("postgres/{date}/{database}-{date}-%d.dump", r)}, store)
		backup[0].samples = append(backup[0].samples, timed(func() (int64, error) {
			_, err := job.Run(ctx)
			return size, err
		}))
		peerKey := fmt.Sprintf("s3://%s/peer/%s-%d.dump", bucket, name, r)
		backup[1].samples = append(backup[1].samples, timedCmd(ctx, b.sz.timeLimit, size, "bash", "-o", "pipefail", "-c",
			fmt.Sprintf("%s -Fc --dbname=%q | s3cmd -c %s --no-progress --multipart-chunk-size-mb=16 put - %s >/dev/null",
				tools.Path("pg_dump"), db.String(), b.s3.s3cfg, peerKey)))

		d := checks.NewPostgresDrill("bench", checks.PostgresDrillConfig{Server: server, Tools: tools, Database: name, Tables: []string{"meter_events", "credit_transactions"},
			Critical: []string{"credit_transactions"}, Jobs: 2, TempDir: b.dir, Date: date}, store)
		drill[0].samples = append(drill[0].samples, timed(func() (int64, error) {
			_, err := d.Run(ctx)
			return size, err
		}))
		work := filepath.Join(b.dir, fmt.Sprintf("pgpeer-%d", r))
		os.MkdirAll(work, 0o755)
		scratch := fmt.Sprintf("%s_peer_%d", name, r)
		psql := tools.Path("psql")
		script := fmt.Sprintf(`set -e
s3cmd -c %[1]s --no-progress get --force %[2]s %[3]s/dump >/dev/null
%[4]s %[5]q -qc 'CREATE DATABASE %[6]s'
trap '%[4]s %[5]q -qc "DROP DATABASE IF EXISTS %[6]s WITH (FORCE)"' EXIT
%[7]s --exit-on-error --jobs 2 --no-owner --dbname=%[8]q %[3]s/dump
%[4]s %[8]q -tAc 'SELECT count(*) FROM credit_transactions' | grep -qv '^0$'
`, b.s3.s3cfg, peerKey, work, psql, server.String(), scratch, tools.Path("pg_restore"), server.WithDatabase(scratch).String())
		drill[1].samples = append(drill[1].samples, timedCmd(ctx, b.sz.timeLimit, size, "bash", "-c", script))
		os.RemoveAll(work)
	}
	table(fmt.Sprintf("postgres: backup of a %d MB database", size>>20),
		"opsd's row includes the pipeline's SHA-256, pg_restore --list on the stream and the manifest. Goal: at least 1.5x the pipeline (ratio ≥ 1.5), peak RSS flat at any size.", backup)
	table(fmt.Sprintf("postgres: drill of a %d MB database", size>>20), "opsd's row includes the SHA-256 check, the table checks and the scratch database's drop.", drill)
	return nil
}
