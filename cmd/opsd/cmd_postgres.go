package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/mattn/go-isatty"

	"github.com/wopr-network/opsd/checks"
	"github.com/wopr-network/opsd/internal/artifact"
	"github.com/wopr-network/opsd/internal/layout"
	"github.com/wopr-network/opsd/internal/postgres"
	"github.com/wopr-network/opsd/internal/restore"
	"github.com/wopr-network/opsd/jobs"
)

// backupPostgres runs the config's postgres_backup job once.
var backupPostgres = oneJob{name: "backup postgres", synopsis: "opsd backup postgres -c FILE [--job NAME]", kind: "postgres_backup"}

// drillPostgres runs the config's postgres_drill job once (optionally on one date's dump).
var drillPostgres = oneJob{name: "drill postgres", synopsis: "opsd drill postgres -c FILE [--date YYYYMMDD] [--job NAME]", kind: "postgres_drill", print: printReport,
	flags: dateFlag("drill this date's dump instead of the newest",
		func(j jobs.Job, date string) jobs.Job { return j.(*checks.PostgresDrill).WithDate(date) })}

// restorePostgres is `opsd restore postgres`: the database of the config's postgres_backup job
// from its newest (or --date) dump, swapped in by renaming, or side by side with --target-db.
func restorePostgres(args []string, stdout, stderr io.Writer) int {
	const syn = "opsd restore postgres -c FILE [--date YYYYMMDD] [--target-db NAME] [--dry-run] [--yes] [--job NAME]"
	fs := newFlags("restore postgres", syn, stdout, stderr)
	cfgPath := configFlag(fs)
	date := fs.String("date", "", "restore this date's dump (default: the newest)")
	target := fs.String("target-db", "", "restore into this new database beside the live one, which is not touched")
	dry := fs.Bool("dry-run", false, "print the plan and change nothing")
	yes := fs.Bool("yes", false, "replace the live database without asking")
	identity := fs.String("identity", "", "age identity file for encrypted dumps")
	jobName := fs.String("job", "", "the postgres_backup job whose database is restored (default: the first)")
	r, jc, code := openRestoreJob(fs, args, cfgPath, date, "postgres_backup", jobName, "its dsn says which database is restored", stdout, stderr)
	if r == nil {
		return code
	}
	defer r.close()
	s := jc.PostgresBackup
	dsn, err := postgres.ParseDSN(s.DSN.Value())
	if err != nil {
		fmt.Fprintf(stderr, "opsd: job %s: %v\n", jc.Name, err)
		return 1
	}
	tools, err := postgres.FindTools(s.PgBinDir)
	if err != nil {
		fmt.Fprintf(stderr, "opsd: %v\n", err)
		return 1
	}
	recipients, err := artifact.ParseRecipients(s.Encryption.Recipients)
	if err != nil {
		fmt.Fprintf(stderr, "opsd: %v\n", err)
		return 1
	}
	ids, err := readIdentities(*identity)
	if err != nil {
		fmt.Fprintf(stderr, "opsd: %v\n", err)
		return 1
	}
	o := restore.PostgresOptions{Store: r.store, Tools: tools, DSN: dsn, Date: *date, TargetDB: *target, Identities: ids, Jobs: 2,
		Safety: artifact.Options{Compression: s.Compression, Recipients: recipients}, Node: r.cfg.NodeID, Progress: r.console.RedactedLine, OnBytes: r.console.OnBytes()}
	// The drill's expectations, when the config has a drill of this database, are checked too.
	if d := r.cfg.PostgresDrillOf(dsn.Database()); d != nil {
		o.Tables, o.Critical, o.Jobs = d.Tables, d.Critical, d.Jobs
	}
	release, ok := r.hold(layout.PostgresRoot, stderr)
	if !ok {
		return 1
	}
	defer release()
	o.DryRun = true
	plan, err := restore.RestorePostgres(r.ctx, o)
	if err != nil {
		fmt.Fprintf(stderr, "opsd: %s\n", r.redactor.Redact(err.Error()))
		return 1
	}
	fmt.Fprint(stdout, plan.Plan)
	if *dry {
		fmt.Fprintln(stdout, "DRY RUN: nothing was changed")
		return 0
	}
	if *target == "" && !*yes {
		if !isatty.IsTerminal(os.Stdin.Fd()) {
			fmt.Fprintf(stderr, "opsd: this replaces the live database %s: add --yes (stdin is not a terminal to ask)\n", dsn.Database())
			return 1
		}
		fmt.Fprintf(stdout, "Type the database name (%s) to replace it: ", dsn.Database())
		line, _ := bufio.NewReader(os.Stdin).ReadString('\n')
		if strings.TrimSpace(line) != dsn.Database() {
			fmt.Fprintln(stderr, "opsd: not confirmed; nothing was changed")
			return 1
		}
	}
	o.DryRun, o.Date = false, plan.Set
	return r.runRestore(restore.PostgresRun(r.state, o, plan.Key, who()))
}
