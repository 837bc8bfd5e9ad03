package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/wopr-network/opsd/checks"
	"github.com/wopr-network/opsd/internal/postgres"
	"github.com/wopr-network/opsd/internal/postgres/pgtest"
	"github.com/wopr-network/opsd/jobs"
)

var pgMB = flag.Int("pg-mb", 0, "postgres: database size in MB (default: the size profile's)")

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
			case "OPSD_PG_PID":
				os.Setenv(k, v) // the CPU columns read the backends' time
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
	mbs := b.sz.postgresMB
	if *pgMB > 0 {
		mbs = *pgMB
	}
	rows := mbs * 1500
	fmt.Fprintf(os.Stderr, "postgres: filling a ~%d MB database\n", mbs)
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

	backup := []row{{name: "opsd postgres_backup (pg_dump -Z0, parallel zstd fastest, verified, staged upload)"}, {name: "pg_dump -Fc | s3cmd put -"}}
	// Two peers for the drill: pg_restore as the issue and a runbook write it (one job), and with
	// --jobs 2 as opsd runs it.
	drill := []row{{name: "opsd postgres_drill (download, verify, restore --jobs 2, checks, drop)"}, {name: "s3cmd get + createdb + pg_restore --jobs 2 + dropdb"},
		{name: "s3cmd get + createdb + pg_restore (one job) + dropdb"}}
	date := time.Now().UTC().Format("20060102")
	cpu, dcpu := [2][]cpuSample{}, [3][]cpuSample{}
	phases := map[string][]float64{}
	for r := 0; r < b.rounds; r++ {
		job := jobs.NewPostgresBackup("bench", jobs.PostgresBackupConfig{DSN: db, Tools: tools, Compression: "zstd",
			KeyTemplate: fmt.Sprintf("postgres/{date}/{database}-{date}-%d.dump", r)}, store)
		m := startCPU()
		backup[0].samples = append(backup[0].samples, timed(func() (int64, error) {
			_, err := job.Run(ctx)
			return size, err
		}))
		cpu[0] = append(cpu[0], m.stop())
		peerKey := fmt.Sprintf("s3://%s/peer/%s-%d.dump", bucket, name, r)
		m = startCPU()
		backup[1].samples = append(backup[1].samples, timedCmd(ctx, b.sz.timeLimit, size, "bash", "-o", "pipefail", "-c",
			fmt.Sprintf("%s -Fc --dbname=%q | s3cmd -c %s --no-progress --multipart-chunk-size-mb=16 put - %s >/dev/null",
				tools.Path("pg_dump"), db.String(), b.s3.s3cfg, peerKey)))
		cpu[1] = append(cpu[1], m.stop())

		d := checks.NewPostgresDrill("bench", checks.PostgresDrillConfig{Server: server, Tools: tools, Database: name, Tables: []string{"meter_events", "credit_transactions"},
			Critical: []string{"credit_transactions"}, Jobs: 2, TempDir: b.dir, Date: date}, store)
		m = startCPU()
		drill[0].samples = append(drill[0].samples, timed(func() (int64, error) {
			res, err := d.Run(ctx)
			for _, p := range res.Phases {
				phases[p.Name] = append(phases[p.Name], p.Duration.Seconds())
			}
			return size, err
		}))
		dcpu[0] = append(dcpu[0], m.stop())
		work := filepath.Join(b.dir, fmt.Sprintf("pgpeer-%d", r))
		os.MkdirAll(work, 0o755)
		scratch := fmt.Sprintf("%s_peer_%d", name, r)
		psql := tools.Path("psql")
		for i, jobsFlag := range []string{"--jobs 2", ""} {
			script := fmt.Sprintf(`set -e
s3cmd -c %[1]s --no-progress get --force %[2]s %[3]s/dump >/dev/null
%[4]s %[5]q -qc 'CREATE DATABASE %[6]s'
trap '%[4]s %[5]q -qc "DROP DATABASE IF EXISTS %[6]s WITH (FORCE)"' EXIT
%[7]s --exit-on-error %[9]s --no-owner --dbname=%[8]q %[3]s/dump
%[4]s %[8]q -tAc 'SELECT count(*) FROM credit_transactions' | grep -qv '^0$'
`, b.s3.s3cfg, peerKey, work, psql, server.String(), scratch, tools.Path("pg_restore"), server.WithDatabase(scratch).String(), jobsFlag)
			m = startCPU()
			drill[1+i].samples = append(drill[1+i].samples, timedCmd(ctx, b.sz.timeLimit, size, "bash", "-c", script))
			dcpu[1+i] = append(dcpu[1+i], m.stop())
		}
		os.RemoveAll(work)
	}
	table(fmt.Sprintf("postgres: backup of a %d MB database", size>>20),
		"opsd's row includes the pipeline's SHA-256, pg_restore --list on the stream, staging, publishing and the manifest. Goal: at least 1.5x the pipeline (ratio ≥ 1.5), peak RSS flat at any size.", backup)
	cpuTable("postgres: CPU seconds of the backup (median of the rounds)", backup, cpu[:])
	table(fmt.Sprintf("postgres: drill of a %d MB database", size>>20), "opsd's row includes the SHA-256 check, the table checks and the scratch database's drop.", drill)
	cpuTable("postgres: CPU seconds of the drill (median of the rounds)", drill, dcpu[:])
	fmt.Print("opsd's drill phases (median of the rounds):")
	for _, name := range []string{"download", "create", "restore", "tables"} {
		if xs := phases[name]; len(xs) > 0 {
			sort.Float64s(xs)
			fmt.Printf(" %s %.1fs", name, xs[len(xs)/2])
		}
	}
	fmt.Print("\n\n")
	return nil
}

// cpuSample is the CPU time one variant's run used: the client side (this process and the
// children it waited for: opsd with pg_dump and pg_restore, or the shell pipeline), the
// PostgreSQL server's backends and the S3 engine (when their pids are known from
// OPSD_PG_PID and OPSD_WEED_PID, as .ci/start-postgres.sh and .ci/start-seaweedfs.sh print them).
type cpuSample struct{ client, server, s3 float64 }

type cpuMeter struct{ c0, p0, w0 float64 }

func startCPU() cpuMeter {
	return cpuMeter{rusageCPU(), procCPU(os.Getenv("OPSD_PG_PID"), true), procCPU(os.Getenv("OPSD_WEED_PID"), false)}
}

func (m cpuMeter) stop() cpuSample {
	time.Sleep(300 * time.Millisecond) // a backend's time reaches the postmaster when it exits
	return cpuSample{rusageCPU() - m.c0, procCPU(os.Getenv("OPSD_PG_PID"), true) - m.p0, procCPU(os.Getenv("OPSD_WEED_PID"), false) - m.w0}
}

func rusageCPU() float64 {
	var total float64
	for _, who := range []int{syscall.RUSAGE_SELF, syscall.RUSAGE_CHILDREN} {
		var ru syscall.Rusage
		syscall.Getrusage(who, &ru)
		total += time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
	}
	return total
}

// procCPU reads a process's CPU seconds from /proc (its waited-for children's with children:
// the postmaster's children are the backends); 0 when pid is unknown.
func procCPU(pid string, children bool) float64 {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if pid == "" || err != nil {
		return 0
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	i := 11 // utime, stime
	if children {
		i = 13 // cutime, cstime
	}
	if len(f) < i+2 {
		return 0
	}
	u, _ := strconv.ParseFloat(f[i], 64)
	s, _ := strconv.ParseFloat(f[i+1], 64)
	return (u + s) / 100 // USER_HZ
}

func cpuTable(title string, rows []row, samples [][]cpuSample) {
	fmt.Printf("## %s\n\n", title)
	fmt.Println("The machine is shared: CPU seconds move far less with load than the wall clock. Server: the PostgreSQL backends; S3: the engine.")
	fmt.Println()
	fmt.Println("| variant | client CPU | server CPU | S3 engine CPU | total | first row's total / this row's |")
	fmt.Println("|---|---|---|---|---|---|")
	med := func(xs []float64) float64 {
		if len(xs) == 0 {
			return 0
		}
		ys := append([]float64(nil), xs...)
		sort.Float64s(ys)
		return ys[len(ys)/2]
	}
	var base float64
	for i, r := range rows {
		var c, p, w, t []float64
		for _, s := range samples[i] {
			c, p, w, t = append(c, s.client), append(p, s.server), append(w, s.s3), append(t, s.client+s.server+s.s3)
		}
		if i == 0 {
			base = med(t)
		}
		ratio := ""
		if med(t) > 0 {
			ratio = fmt.Sprintf("%.2f", base/med(t))
		}
		fmt.Printf("| %s | %.2fs | %.2fs | %.2fs | %.2fs | %s |\n", r.name, med(c), med(p), med(w), med(t), ratio)
	}
	fmt.Println()
}
