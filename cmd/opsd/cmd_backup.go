package main

import (
	"fmt"
	"io"

	"github.com/wopr-network/opsd/config"
	"github.com/wopr-network/opsd/jobs"
)

func cmdBackup(args []string, stdout, stderr io.Writer) int {
	const syn = "opsd backup db|containers|hot|snapshots -c FILE ... (see --help of each)"
	if len(args) == 0 {
		fmt.Fprintln(stderr, "Usage: "+syn)
		return 2
	}
	switch args[0] {
	case "db":
		return backupDB(args[1:], stdout, stderr)
	case "containers":
		return backupContainers(args[1:], stdout, stderr, false)
	case "hot":
		return backupContainers(args[1:], stdout, stderr, true)
	case "snapshots":
		return backupSnapshots(args[1:], stdout, stderr)
	case "-h", "--help":
		fmt.Fprintln(stdout, "Usage: "+syn)
		return 0
	}
	fmt.Fprintf(stderr, "opsd backup: unknown subcommand %q\nUsage: %s\n", args[0], syn)
	return 2
}

// backupDB runs the config's sqlite_backup job once in the foreground and prints one line per
// database: status, name, size, duration, key (or the reason it failed).
func backupDB(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("backup db", "opsd backup db -c FILE [--db NAME]... [--job NAME]", stdout, stderr)
	cfgPath := configFlag(fs)
	var dbs multiFlag
	fs.Var(&dbs, "db", "back up only this database (repeatable, or comma-separated)")
	jobName := fs.String("job", "", "the sqlite_backup job to use (default: the first one)")
	if code, ok := parseFlags(fs, args, stdout); !ok {
		return code
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	jc, err := findJob(cfg, "sqlite_backup", *jobName)
	if err != nil {
		fmt.Fprintf(stderr, "opsd: %v\n", err)
		return 1
	}
	if len(dbs) > 0 {
		known := map[string]bool{}
		for _, d := range jc.SQLiteBackup.Databases {
			known[d.Name] = true
		}
		sel := *jc.SQLiteBackup
		sel.Databases = nil
		for _, name := range dbs {
			if !known[name] {
				fmt.Fprintf(stderr, "opsd: job %s has no database named %q\n", jc.Name, name)
				return 1
			}
		}
		for _, d := range jc.SQLiteBackup.Databases {
			for _, name := range dbs {
				if d.Name == name {
					sel.Databases = append(sel.Databases, d)
				}
			}
		}
		jc.SQLiteBackup = &sel
	}
	return runOnce(cfg, jc, stdout, stderr, nil, nil)
}

// findJob returns the named job of a kind, or the first job of that kind.
func findJob(cfg *config.Config, kind, name string) (config.Job, error) {
	for _, j := range cfg.Jobs {
		if j.Kind == kind && (name == "" || j.Name == name) {
			return j, nil
		}
	}
	if name != "" {
		return config.Job{}, fmt.Errorf("no %s job named %q in %s", kind, name, cfg.File)
	}
	return config.Job{}, fmt.Errorf("no %s job in %s", kind, cfg.File)
}

// backupContainers runs the config's nightly (or hot, changed-only) container_export job once,
// for every selected container or the named ones.
func backupContainers(args []string, stdout, stderr io.Writer, hot bool) int {
	name := "containers"
	if hot {
		name = "hot"
	}
	fs := newFlags("backup "+name, "opsd backup "+name+" -c FILE [--job NAME] [CONTAINER...]", stdout, stderr)
	cfgPath := configFlag(fs)
	jobName := fs.String("job", "", "the container_export job to use (default: the first one of this kind)")
	if code, ok := parseFlags(fs, args, stdout); !ok {
		return code
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	var jc config.Job
	found := false
	for _, j := range cfg.Jobs {
		if j.Kind == "container_export" && j.ContainerExport.ChangedOnly == hot && (*jobName == "" || j.Name == *jobName) {
			jc, found = j, true
			break
		}
	}
	if !found {
		fmt.Fprintf(stderr, "opsd: no %s container_export job (changed_only: %v) in %s\n", map[bool]string{true: "hot", false: "nightly"}[hot], hot, *cfgPath)
		return 1
	}
	names := fs.Args()
	return runOnce(cfg, jc, stdout, stderr, nil, func(j jobs.Job) (jobs.Job, error) {
		if len(names) > 0 {
			return j.(*jobs.ContainerExport).WithOnly(names), nil
		}
		return j, nil
	})
}

// backupSnapshots runs the config's dir_snapshot job once.
func backupSnapshots(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("backup snapshots", "opsd backup snapshots -c FILE [--job NAME] [INSTANCE...]", stdout, stderr)
	cfgPath := configFlag(fs)
	jobName := fs.String("job", "", "the dir_snapshot job to use (default: the first one)")
	if code, ok := parseFlags(fs, args, stdout); !ok {
		return code
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	jc, err := findJob(cfg, "dir_snapshot", *jobName)
	if err != nil {
		fmt.Fprintf(stderr, "opsd: %v\n", err)
		return 1
	}
	names := fs.Args()
	return runOnce(cfg, jc, stdout, stderr, nil, func(j jobs.Job) (jobs.Job, error) {
		if len(names) > 0 {
			return j.(*jobs.DirSnapshot).WithOnly(names), nil
		}
		return j, nil
	})
}
