package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/mattn/go-isatty"

	"github.com/wopr-network/opsd/config"
	"github.com/wopr-network/opsd/internal/layout"
	"github.com/wopr-network/opsd/internal/restore"
	"github.com/wopr-network/opsd/jobs"
)

func cmdRestore(args []string, stdout, stderr io.Writer) int {
	return subcommands("restore", args, stdout, stderr, map[string]func([]string, io.Writer, io.Writer) int{
		"db": restoreDB, "container": restoreContainer, "snapshot": restoreSnapshot, "node": restoreNode, "postgres": restorePostgres,
	}, "opsd restore db|container|snapshot|node|postgres -c FILE ... (see --help of each); SIGINT cancels a restore (rolled back); opsd restores lists them")
}

// restoreEnv is what a restore command needs: the environment (state, store, Runner), the
// signal context (SIGINT or SIGTERM cancels the restore, which then rolls back) and progress
// output. Restores found interrupted are reported when it opens.
type restoreEnv struct {
	*env
	ctx     context.Context
	stop    func()
	stdout  io.Writer
	console *restore.Console // progress lines and, on a terminal, download bars
	keys    *layout.Layout
}

func openRestore(cfgPath string, stdout, stderr io.Writer) (*restoreEnv, int) {
	cfg, err := config.Load(cfgPath)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return nil, 1
	}
	keys, err := cfg.Layout()
	if err != nil {
		fmt.Fprintf(stderr, "opsd: %v\n", err)
		return nil, 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	e, err := newEnv(ctx, cfg, Options{Stderr: stderr, LogLevel: "warn"})
	if err != nil {
		stop()
		fmt.Fprintf(stderr, "opsd: %v\n", err)
		return nil, 1
	}
	bar := false
	if f, ok := stdout.(*os.File); ok && isatty.IsTerminal(f.Fd()) {
		bar = true
	}
	for _, r := range restore.ReportInterrupted(ctx, e.state, e.reporting()) {
		fmt.Fprintf(stderr, "warning: %s\n", e.redactor.Redact(r.Error))
	}
	return &restoreEnv{env: e, ctx: ctx, stop: stop, stdout: stdout, keys: keys,
		console: &restore.Console{W: stdout, Bar: bar, Redact: e.redactor.Redact}}, 0
}

// openRestoreJob parses a restore command's flags, checks its --date, opens the restore
// environment and finds the job of kind (named --job, or the first) whose settings say what
// is restored; why is added to the error when there is none. A nil r: exit with code.
func openRestoreJob(fs *flag.FlagSet, args []string, cfgPath, date *string, kind string, jobName *string, why string, stdout, stderr io.Writer) (r *restoreEnv, jc config.Job, code int) {
	if code, ok := parseFlags(fs, args, stdout); !ok {
		return nil, jc, code
	}
	if !validDate(stderr, *date) {
		return nil, jc, 2
	}
	r, code = openRestore(*cfgPath, stdout, stderr)
	if r == nil {
		return nil, jc, code
	}
	jc, err := r.cfg.FindJob(kind, *jobName)
	if err != nil {
		r.close()
		fmt.Fprintf(stderr, "opsd: %v (%s)\n", err, why)
		return nil, jc, 1
	}
	return r, jc, 0
}

// execRestore runs a restore in the foreground through the Runner (SIGINT cancels it).
func (r *restoreEnv) execRestore(run *restore.Run) jobs.Outcome {
	run.Redact, run.Print = r.redactor.Redact, r.console.Line
	o := r.runner.Run(r.ctx, jobs.Restore{R: run}, jobs.RestoreTimeout, jobs.TriggerCLI)
	if o.Run.ID == 0 {
		run.Abort(r.ctx, o.Err) // never started
	}
	return o
}

// runRestore runs a restore in the foreground and prints how it ended.
func (r *restoreEnv) runRestore(run *restore.Run) int {
	o := r.execRestore(run)
	var outcome string
	var down time.Duration
	if rs := o.Result.Restore; rs != nil {
		outcome, down = rs.Outcome, rs.Downtime
	}
	run.WriteResult(r.stdout, o.Err, outcome, o.Run.FinishedAt.Sub(o.Run.StartedAt), down, r.redactor.Redact)
	if o.Err != nil {
		return 1
	}
	return 0
}

func (r *restoreEnv) close() {
	r.env.close(context.Background())
	r.stop()
}

// hold takes prefix for a restore, shared (prune and forget cannot delete what it reads). When
// one of them holds it, it says so and waits for it (SIGINT ends the wait); a failure is printed.
func (r *restoreEnv) hold(prefix string, stderr io.Writer) (func(), bool) {
	rel, err := r.locks.TryAcquire(prefix, false, "restore")
	if err == nil {
		return rel, true
	}
	fmt.Fprintf(stderr, "opsd: waiting: %v (a prune or forget deletes there; Ctrl-C stops waiting, nothing is changed)\n", err)
	if rel, err = r.locks.Acquire(r.ctx, prefix, false, "restore"); err != nil {
		fmt.Fprintf(stderr, "opsd: %v (nothing was changed)\n", err)
		return nil, false
	}
	return rel, true
}

func who() string {
	if u := os.Getenv("SUDO_USER"); u != "" {
		return "cli:" + u
	}
	if u := os.Getenv("USER"); u != "" {
		return "cli:" + u
	}
	return "cli"
}

// stdin and stdinIsTerminal are where confirmations are read (tests replace them).
var (
	stdin           io.Reader = os.Stdin
	stdinIsTerminal           = func() bool { return isatty.IsTerminal(os.Stdin.Fd()) }
)

// confirm asks a yes/no question on a terminal. Without a terminal it refuses: a restore
// started from a script must say --yes.
func confirm(stdout io.Writer, question string) (bool, string) {
	if !stdinIsTerminal() {
		return false, "refusing to restore without confirmation: stdin is not a terminal; pass --yes to confirm"
	}
	fmt.Fprintf(stdout, "%s Type yes to continue: ", question)
	line, _ := bufio.NewReader(stdin).ReadString('\n')
	if strings.TrimSpace(strings.ToLower(line)) != "yes" {
		return false, "not confirmed"
	}
	return true, ""
}

func restoreDB(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("restore db", "opsd restore db -c FILE [--date YYYYMMDD] [--db NAME]... [--dry-run] (--stop-container C | --live) [--health-url URL] [--yes] [--remove-safety-copies]", stdout, stderr)
	cfgPath := configFlag(fs)
	date := fs.String("date", "", "the set to restore (default: the newest complete one)")
	var dbs multiFlag
	fs.Var(&dbs, "db", "restore only this database (repeatable)")
	dry := fs.Bool("dry-run", false, "download and verify every backup (checksums, integrity, target, tables), print the plan, change nothing")
	stopC := fs.String("stop-container", "", "stop this container (the platform API) during the swap and start it after")
	live := fs.Bool("live", false, "swap the files without stopping a container (nothing uses them)")
	yes := fs.Bool("yes", false, "do not ask for confirmation (needed when stdin is not a terminal)")
	removeSafety := fs.Bool("remove-safety-copies", false, "remove the local NAME.db.pre-restore-{ts} copies after a successful restore (the store's copies stay)")
	health := fs.String("health-url", "", `poll this URL after the swap until it answers 200 with status "ok" or "degraded" (e.g. http://127.0.0.1:3100/health)`)
	identity := fs.String("identity", "", "age identity file for encrypted backups")
	jobName := fs.String("job", "", "the sqlite_backup job whose databases (names and paths) are restored")
	r, jc, code := openRestoreJob(fs, args, cfgPath, date, "sqlite_backup", jobName, "its databases say where each one lives", stdout, stderr)
	if r == nil {
		return code
	}
	defer r.close()
	ids, err := readIdentities(*identity)
	if err != nil {
		fmt.Fprintf(stderr, "opsd: %v\n", err)
		return 1
	}
	var list []restore.Database
	for _, d := range jc.SQLiteBackup.Databases {
		list = append(list, restore.Database{Name: d.Name, Path: d.Path, Tables: d.Tables})
	}
	if !*dry && *stopC == "" && !*live {
		fmt.Fprintln(stderr, "opsd: restore db replaces the live database files: pass --stop-container NAME to stop the platform API during the swap, or --live when nothing uses them (nothing was changed)")
		return 2
	}
	if *stopC != "" && *live {
		fmt.Fprintln(stderr, "opsd: --stop-container and --live exclude each other")
		return 2
	}
	release, ok := r.hold(r.keys.Root(layout.SQLite), stderr)
	if !ok {
		return 1
	}
	defer release()
	o := restore.DBOptions{Store: r.store, Layout: r.keys, Databases: list, Only: dbs, Date: *date, Identities: ids, DryRun: *dry, StopContainer: *stopC, Live: *live,
		RemoveSafetyCopies: *removeSafety, Docker: r.docker, HealthURL: *health, Node: r.cfg.NodeID, Progress: r.console.RedactedLine, OnBytes: r.console.OnBytes()}
	if *dry {
		res, err := restore.RestoreDB(r.ctx, o)
		if err != nil {
			fmt.Fprintf(stderr, "opsd: %v\n", err)
			return 1
		}
		fmt.Fprint(stdout, res.Plan)
		fmt.Fprintln(stdout, "DRY RUN: every backup verified; nothing was changed")
		return 0
	}
	// The plan first: what will be replaced, from which set, and where the safety copies go.
	o.PlanOnly = true
	plan, err := restore.RestoreDB(r.ctx, o)
	if err != nil {
		fmt.Fprintf(stderr, "opsd: %v\n", err)
		return 1
	}
	fmt.Fprint(stdout, plan.Plan)
	if !*yes {
		if ok, msg := confirm(stdout, "Replace these databases?"); !ok {
			fmt.Fprintf(stderr, "opsd: %s (nothing was changed)\n", msg)
			return 1
		}
	}
	o.PlanOnly, o.Date = false, plan.Set
	return r.runRestore(restore.DBRun(r.state, o, who()))
}

func restoreSnapshot(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("restore snapshot", "opsd restore snapshot -c FILE INSTANCE [--key KEY] [--base-dir DIR]", stdout, stderr)
	cfgPath := configFlag(fs)
	key := fs.String("key", "", "the snapshot to restore (default: the newest)")
	base := fs.String("base-dir", "", "the WOPR_HOME base directory (default: the dir_snapshot job's)")
	identity := fs.String("identity", "", "age identity file for encrypted backups")
	if code, ok := parseFlags(fs, args, stdout); !ok {
		return code
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(stderr, "Usage: opsd restore snapshot -c FILE INSTANCE [--key KEY]")
		return 2
	}
	inst := fs.Arg(0)
	r, code := openRestore(*cfgPath, stdout, stderr)
	if r == nil {
		return code
	}
	defer r.close()
	if *base == "" {
		jc, err := r.cfg.FindJob("dir_snapshot", "")
		if err != nil {
			fmt.Fprintf(stderr, "opsd: %v (or pass --base-dir)\n", err)
			return 1
		}
		*base = jc.DirSnapshot.BaseDir
	}
	ids, err := readIdentities(*identity)
	if err != nil {
		fmt.Fprintf(stderr, "opsd: %v\n", err)
		return 1
	}
	k := *key
	if k == "" {
		if k, err = restore.SnapshotKey(r.ctx, r.store, r.keys, r.cfg.NodeID, inst); err != nil {
			fmt.Fprintf(stderr, "opsd: %v\n", err)
			return 1
		}
	}
	return r.runRestore(restore.SnapshotRun(r.state, restore.SnapshotOptions{Store: r.store, BaseDir: *base, Instance: inst, Key: k, Node: r.cfg.NodeID, Identities: ids, OnBytes: r.console.OnBytes()}, who()))
}
