package main

import (
	"flag"
	"fmt"
	"io"

	"github.com/wopr-network/opsd/config"
	"github.com/wopr-network/opsd/jobs"
)

func cmdBackup(args []string, stdout, stderr io.Writer) int {
	return subcommands("backup", args, stdout, stderr, map[string]func([]string, io.Writer, io.Writer) int{
		"db":         backupDB.run,
		"containers": backupContainers(false).run,
		"hot":        backupContainers(true).run,
		"postgres":   backupPostgres.run,
		"snapshots": oneJob{name: "backup snapshots", synopsis: "opsd backup snapshots -c FILE [--job NAME] [INSTANCE...]", kind: "dir_snapshot",
			flags: onlyNamed(func(j jobs.Job, names []string) jobs.Job { return j.(*jobs.DirSnapshot).WithOnly(names) })}.run,
	}, "opsd backup db|containers|hot|snapshots|postgres -c FILE ... (see --help of each)")
}

// backupDB runs the config's sqlite_backup job once and prints one line per database: status,
// name, size, duration, key (or the reason it failed).
var backupDB = oneJob{name: "backup db", synopsis: "opsd backup db -c FILE [--db NAME]... [--job NAME]", kind: "sqlite_backup",
	flags: func(fs *flag.FlagSet) func(*config.Config, *config.Job, []string) (adapter, int) {
		var dbs multiFlag
		fs.Var(&dbs, "db", "back up only this database (repeatable, or comma-separated)")
		return func(_ *config.Config, jc *config.Job, _ []string) (adapter, int) {
			if len(dbs) == 0 {
				return nil, 0
			}
			byName := map[string]bool{}
			for _, d := range jc.SQLiteBackup.Databases {
				byName[d.Name] = true
			}
			for _, name := range dbs {
				if !byName[name] {
					fmt.Fprintf(fs.Output(), "opsd: job %s has no database named %q\n", jc.Name, name)
					return nil, 1
				}
			}
			// The job restricted to them (Only): a run of some databases retires none of the others.
			return func(j jobs.Job) (jobs.Job, error) { return j.(*jobs.SQLiteBackup).Only(dbs) }, 0
		}
	}}

// backupContainers runs the nightly (or hot, changed-only) container_export job once, for every
// selected container or the named ones.
func backupContainers(hot bool) oneJob {
	name := map[bool]string{false: "containers", true: "hot"}[hot]
	return oneJob{name: "backup " + name, synopsis: "opsd backup " + name + " -c FILE [--job NAME] [CONTAINER...]", kind: "container_export",
		match: func(j config.Job) bool { return j.ContainerExport.ChangedOnly == hot },
		flags: onlyNamed(func(j jobs.Job, names []string) jobs.Job { return j.(*jobs.ContainerExport).WithOnly(names) })}
}

// onlyNamed restricts a job to the names given as arguments.
func onlyNamed(with func(jobs.Job, []string) jobs.Job) func(*flag.FlagSet) func(*config.Config, *config.Job, []string) (adapter, int) {
	return func(*flag.FlagSet) func(*config.Config, *config.Job, []string) (adapter, int) {
		return func(_ *config.Config, _ *config.Job, names []string) (adapter, int) {
			if len(names) == 0 {
				return nil, 0
			}
			return func(j jobs.Job) (jobs.Job, error) { return with(j, names), nil }, 0
		}
	}
}
