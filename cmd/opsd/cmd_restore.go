package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"regexp"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/mattn/go-isatty"

	"github.com/wopr-network/opsd/config"
	"github.com/wopr-network/opsd/internal/artifact"
	"github.com/wopr-network/opsd/internal/restore"
	"github.com/wopr-network/opsd/internal/state"
	"github.com/wopr-network/opsd/internal/storage"
)

func cmdRestore(args []string, stdout, stderr io.Writer) int {
	return subcommands("restore", args, stdout, stderr, map[string]func([]string, io.Writer, io.Writer) int{
		"db": restoreDB, "container": restoreContainer, "snapshot": restoreSnapshot, "postgres": restorePostgres,
	}, "opsd restore db|container|snapshot|postgres -c FILE ... (see --help of each)")
}

// restoreEnv opens what a restore needs and records the restore in the state database.
type restoreEnv struct {
	*env
	ctx    context.Context
	stop   func()
	stdout io.Writer
	bar    bool // stdout is a terminal: draw download progress bars
}

func openRestore(cfgPath string, stdout, stderr io.Writer) (*restoreEnv, int) {
	cfg, err := config.Load(cfgPath)
	if err != nil {
		fmt.Fprintln(stderr, err)
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
	return &restoreEnv{env: e, ctx: ctx, stop: stop, stdout: stdout, bar: bar}, 0
}

func (r *restoreEnv) close() {
	r.env.close(context.Background())
	r.stop()
}

func (r *restoreEnv) progress(s string) {
	if r.bar {
		fmt.Fprint(r.stdout, "\r\033[K")
	}
	fmt.Fprintf(r.stdout, "  %s  %s\n", time.Now().Format("15:04:05"), s)
}

// onBytes draws a download progress bar on a terminal (nothing otherwise: the step lines say
// what happens), at most ten times a second.
func (r *restoreEnv) onBytes() artifact.Progress {
	if !r.bar {
		return nil
	}
	var last time.Time
	return func(done, total int64) {
		if time.Since(last) < 100*time.Millisecond && done != total {
			return
		}
		last = time.Now()
		pct := 0.0
		if total > 0 {
			pct = float64(done) / float64(total)
		}
		n := int(pct * 30)
		fmt.Fprintf(r.stdout, "\r  [%s%s] %3.0f%%  %s / %s", strings.Repeat("#", n), strings.Repeat(".", 30-n), pct*100, humanBytes(done), humanBytes(total))
	}
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

// record runs a restore and records it (who, what, key, safety copy, downtime, outcome).
func (r *restoreEnv) record(kind, target, key string, run func() (safety string, downtime time.Duration, err error)) int {
	started := time.Now()
	id, err := r.state.StartRestore(r.ctx, state.Restore{Kind: kind, Target: target, Key: key, RequestedBy: who(), StartedAt: started})
	if err != nil {
		fmt.Fprintf(r.stdout, "warning: %v\n", err)
	}
	safety, down, runErr := run()
	fin := time.Now()
	rec := state.Restore{ID: id, FinishedAt: &fin, DowntimeMS: down.Milliseconds(), Outcome: "success", Safety: safety}
	if runErr != nil {
		rec.Outcome, rec.Error = "failure", r.redactor.Redact(runErr.Error())
		if strings.Contains(runErr.Error(), "rolled back") {
			rec.Outcome = "rolled_back"
		}
	}
	if id != 0 {
		r.state.FinishRestore(context.WithoutCancel(r.ctx), rec)
	}
	if runErr != nil {
		fmt.Fprintf(r.stdout, "FAILED  %s\n", rec.Error)
		return 1
	}
	fmt.Fprintf(r.stdout, "OK  %s %s restored from %s in %s (downtime %s)\n", kind, target, key, fin.Sub(started).Round(time.Millisecond), down.Round(time.Millisecond))
	return 0
}

var dateRe = regexp.MustCompile(`^\d{8}$`)

func restoreDB(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("restore db", "opsd restore db -c FILE [--date YYYYMMDD] [--db NAME]... [--dry-run] [--stop-container C] [--health-url URL]", stdout, stderr)
	cfgPath := configFlag(fs)
	date := fs.String("date", "", "the set to restore (default: the newest complete one)")
	var dbs multiFlag
	fs.Var(&dbs, "db", "restore only this database (repeatable)")
	dry := fs.Bool("dry-run", false, "print the plan and change nothing")
	stopC := fs.String("stop-container", "", "stop this container (the platform API) during the swap and start it after")
	health := fs.String("health-url", "", `poll this URL after the swap until it answers {"status":"ok"} (e.g. http://127.0.0.1:3100/health)`)
	identity := fs.String("identity", "", "age identity file for encrypted backups")
	jobName := fs.String("job", "", "the sqlite_backup job whose databases (names and paths) are restored")
	if code, ok := parseFlags(fs, args, stdout); !ok {
		return code
	}
	if *date != "" && !dateRe.MatchString(*date) {
		fmt.Fprintf(stderr, "opsd: --date %q is not YYYYMMDD\n", *date)
		return 2
	}
	r, code := openRestore(*cfgPath, stdout, stderr)
	if r == nil {
		return code
	}
	defer r.close()
	jc, err := findJob(r.cfg, "sqlite_backup", *jobName)
	if err != nil {
		fmt.Fprintf(stderr, "opsd: %v (its databases say where each one lives)\n", err)
		return 1
	}
	ids, err := readIdentities(*identity)
	if err != nil {
		fmt.Fprintf(stderr, "opsd: %v\n", err)
		return 1
	}
	var list []restore.Database
	for _, d := range jc.SQLiteBackup.Databases {
		list = append(list, restore.Database{Name: d.Name, Path: d.Path})
	}
	release, err := r.locks.Acquire(r.ctx, "platform/", false, "restore")
	if err != nil {
		return 1
	}
	defer release()
	o := restore.DBOptions{Store: r.store, Databases: list, Only: dbs, Date: *date, Identities: ids, DryRun: *dry, StopContainer: *stopC,
		Docker: r.docker, HealthURL: *health, Node: r.cfg.NodeID, Progress: r.progress, OnBytes: r.onBytes()}
	if *dry {
		res, err := restore.RestoreDB(r.ctx, o)
		if err != nil {
			fmt.Fprintf(stderr, "opsd: %v\n", err)
			return 1
		}
		fmt.Fprint(stdout, res.Plan)
		fmt.Fprintln(stdout, "DRY RUN: nothing was changed")
		return 0
	}
	target := "platform"
	if len(dbs) > 0 {
		target = strings.Join(dbs, ",")
	}
	// The plan first: what will be replaced, from which set, and where the safety copies go.
	o.DryRun = true
	plan, err := restore.RestoreDB(r.ctx, o)
	if err != nil {
		fmt.Fprintf(stderr, "opsd: %v\n", err)
		return 1
	}
	fmt.Fprint(stdout, plan.Plan)
	o.DryRun, o.Date = false, plan.Set
	return r.record("db", target, "platform/"+plan.Set+"/", func() (string, time.Duration, error) {
		res, err := restore.RestoreDB(r.ctx, o)
		var safety []string
		for _, d := range res.Databases {
			if d.SafetyKey != "" {
				safety = append(safety, d.SafetyKey)
			}
		}
		return strings.Join(safety, " "), res.Downtime, err
	})
}

func restoreContainer(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("restore container", "opsd restore container -c FILE NAME [--key KEY | --date YYYYMMDD | --latest]", stdout, stderr)
	cfgPath := configFlag(fs)
	key := fs.String("key", "", "the archive to restore")
	date := fs.String("date", "", "restore this date's nightly archive")
	latest := fs.Bool("latest", false, "restore the latest hot backup (latest/NAME/latest.tar.gz)")
	identity := fs.String("identity", "", "age identity file for encrypted backups")
	probe := fs.Duration("probe", 5*time.Second, "the restored container must keep running this long")
	if code, ok := parseFlags(fs, args, stdout); !ok {
		return code
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(stderr, "Usage: opsd restore container -c FILE NAME [--key KEY | --date YYYYMMDD | --latest]")
		return 2
	}
	name := fs.Arg(0)
	r, code := openRestore(*cfgPath, stdout, stderr)
	if r == nil {
		return code
	}
	defer r.close()
	ids, err := readIdentities(*identity)
	if err != nil {
		fmt.Fprintf(stderr, "opsd: %v\n", err)
		return 1
	}
	k, err := restore.ContainerKey(r.ctx, r.store, r.cfg.NodeID, name, *key, *date, *latest)
	if err != nil {
		fmt.Fprintf(stderr, "opsd: %v\n", err)
		return 1
	}
	if !restore.KeyBelongsTo(k, name) {
		fmt.Fprintf(stderr, "opsd: %s is not a backup of %s\n", k, name)
		return 1
	}
	release, err := r.locks.Acquire(r.ctx, "nightly/", false, "restore")
	if err != nil {
		return 1
	}
	defer release()
	return r.record("container", name, k, func() (string, time.Duration, error) {
		res, err := restore.RestoreContainer(r.ctx, restore.ContainerOptions{Store: r.store, Engine: r.docker, Name: name, Key: k, Identities: ids,
			Node: r.cfg.NodeID, Probe: *probe, Progress: r.progress, OnBytes: r.onBytes()})
		return res.SafetyKey, res.Downtime, err
	})
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
		jc, err := findJob(r.cfg, "dir_snapshot", "")
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
		if k, err = restore.SnapshotKey(r.ctx, r.store, r.cfg.NodeID, inst); err != nil {
			fmt.Fprintf(stderr, "opsd: %v\n", err)
			return 1
		}
	}
	return r.record("snapshot", inst, k, func() (string, time.Duration, error) {
		res, err := restore.RestoreSnapshot(r.ctx, restore.SnapshotOptions{Store: r.store, BaseDir: *base, Instance: inst, Key: k, Node: r.cfg.NodeID, Identities: ids, Progress: r.progress, OnBytes: r.onBytes()})
		return res.Previous, 0, err
	})
}

// cmdBackups lists what is in the store: key, size, date, and whether it has a manifest.
func cmdBackups(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || (args[0] != "list" && args[0] != "-h" && args[0] != "--help") {
		fmt.Fprintln(stderr, "Usage: opsd backups list -c FILE [--prefix P] [--target T] [-o json]")
		return 2
	}
	fs := newFlags("backups list", "opsd backups list -c FILE [--prefix P] [--target T] [-o json]", stdout, stderr)
	cfgPath := configFlag(fs)
	prefix := fs.String("prefix", "", "only keys under this prefix (platform/, nightly/, latest/, on-demand/, pre-restore/)")
	target := fs.String("target", "", "only backups of this target (database, container or instance)")
	out := fs.String("o", "table", "output: table or json")
	rest := args
	if args[0] == "list" {
		rest = args[1:]
	}
	if code, ok := parseFlags(fs, rest, stdout); !ok {
		return code
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	ctx := context.Background()
	store, err := openStore(ctx, cfg.Storage)
	if err != nil {
		fmt.Fprintf(stderr, "opsd: %v\n", err)
		return 1
	}
	objs, err := storage.ListAll(ctx, store, *prefix)
	if err != nil {
		fmt.Fprintf(stderr, "opsd: %v\n", err)
		return 1
	}
	have := map[string]bool{}
	for _, o := range objs {
		have[o.Key] = true
	}
	type row struct {
		Key         string    `json:"key"`
		Size        int64     `json:"size"`
		Modified    time.Time `json:"modified"`
		HasManifest bool      `json:"hasManifest"`
	}
	rows := []row{}
	for _, o := range objs {
		if artifact.IsManifest(o.Key) {
			continue
		}
		if *target != "" && !matchesTarget(o.Key, *target) {
			continue
		}
		rows = append(rows, row{o.Key, o.Size, o.ModTime, have[artifact.ManifestKey(o.Key)]})
	}
	if *out == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.Encode(map[string]any{"backups": rows, "count": len(rows)})
		return 0
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KEY\tSIZE\tMODIFIED\tMANIFEST")
	for _, r := range rows {
		m := "yes"
		if !r.HasManifest {
			m = "NO (not a backup)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.Key, humanBytes(r.Size), r.Modified.Format(time.RFC3339), m)
	}
	tw.Flush()
	return 0
}

func matchesTarget(key, target string) bool {
	for _, part := range strings.Split(key, "/") {
		if part == target || strings.HasPrefix(part, target+"-") || strings.HasPrefix(part, target+"_") {
			return true
		}
	}
	return false
}
