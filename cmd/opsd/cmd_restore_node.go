package main

import (
	"flag"
	"fmt"
	"io"
	"time"

	"filippo.io/age"

	"github.com/wopr-network/opsd/config"
	"github.com/wopr-network/opsd/internal/docker"
	"github.com/wopr-network/opsd/internal/layout"
	"github.com/wopr-network/opsd/internal/restore"
)

// restoreContainer restores one container: over an existing one of that name (--replace: safety
// export, stop, swap, roll back on failure), or, when none exists on this engine (a lost node's
// tenant), recreated from the backup and the create spec captured at export time.
func restoreContainer(args []string, stdout, stderr io.Writer) int {
	const usage = "opsd restore container -c FILE NAME [--from-node NODE] [--key KEY | --date YYYYMMDD | --latest] [--replace] [--allow-bind DIR]... [--allow-host-access]"
	fs := newFlags("restore container", usage, stdout, stderr)
	cfgPath := configFlag(fs)
	access := hostAccessFlags(fs)
	key := fs.String("key", "", "the archive to restore")
	date := fs.String("date", "", "restore this date's nightly archive")
	latest := fs.Bool("latest", false, "restore the latest hot backup")
	fromNode := fs.String("from-node", "", "the node whose backups to use (default: this node's node_id)")
	replace := fs.Bool("replace", false, "replace an existing container of that name (safety export first, rolled back on failure)")
	identity := fs.String("identity", "", "age identity file for encrypted backups")
	probe := fs.Duration("probe", 5*time.Second, "the restored container must keep running this long")
	if code, ok := parseFlags(fs, args, stdout); !ok {
		return code
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(stderr, "Usage: "+usage)
		return 2
	}
	name := fs.Arg(0)
	if !validDate(stderr, *date) {
		return 2
	}
	r, ids, code := openDockerRestore("restore container", *cfgPath, *identity, stdout, stderr)
	if r == nil {
		return code
	}
	defer r.close()
	node := *fromNode
	if node == "" {
		node = r.cfg.NodeID
	}
	k, err := restore.ResolveContainerKey(r.ctx, r.store, r.keys, node, name, *key, *date, *latest)
	if err != nil {
		fmt.Fprintf(stderr, "opsd: %v\n", err)
		return 1
	}
	_, inspectErr := r.docker.Inspect(r.ctx, name, false)
	exists := inspectErr == nil
	if inspectErr != nil && !docker.IsNotFound(inspectErr) {
		fmt.Fprintf(stderr, "opsd: %v\n", inspectErr)
		return 1
	}
	if exists && !*replace {
		fmt.Fprintf(stderr, "opsd: a container named %s exists on this node: pass --replace to replace it (a safety export is taken first and it is rolled back on failure)\n", name)
		return 1
	}
	release, ok := r.hold(r.keys.Root(layout.Nightly), stderr)
	if !ok {
		return 1
	}
	defer release()
	return r.runRestore(restore.ContainerRun(r.state, r.docker, restore.ContainerOptions{Store: r.store, Layout: r.keys, Name: name, Key: k, Identities: ids,
		Node: r.cfg.NodeID, HostAccess: access(r.cfg), Probe: *probe, OnBytes: r.console.OnBytes()}, who()))
}

// restoreNode restores every tenant container a (lost) node backed up onto this node: runbook
// Procedure 3 in one command.
func restoreNode(args []string, stdout, stderr io.Writer) int {
	const usage = "opsd restore node -c FILE --from NODE [--parallel N] [--start-parallel N] [--only A,B] [--exclude A,B] [--with-snapshots] [--allow-bind DIR]... [--allow-host-access] [--dry-run] [-o json]"
	fs := newFlags("restore node", usage, stdout, stderr)
	cfgPath := configFlag(fs)
	access := hostAccessFlags(fs)
	from := fs.String("from", "", "the lost node's node_id (its backups are under nightly/NODE/)")
	parallel := fs.Int("parallel", 4, "containers downloaded and imported at once (as many more may be created and started meanwhile; probes hold no slot)")
	startParallel := fs.Int("start-parallel", 0, "containers created and started at once (0: as many as --parallel)")
	only := fs.String("only", "", "restore only these containers (comma-separated)")
	exclude := fs.String("exclude", "", "skip these containers (comma-separated)")
	withSnaps := fs.Bool("with-snapshots", false, "also restore the node's WOPR_HOME snapshots into the dir_snapshot job's base_dir")
	dry := fs.Bool("dry-run", false, "list what would be restored from which archive, change nothing")
	identity := fs.String("identity", "", "age identity file for encrypted backups")
	probe := fs.Duration("probe", 5*time.Second, "each restored container must keep running this long")
	out := fs.String("o", "table", "output: table or json")
	if code, ok := parseFlags(fs, args, stdout); !ok {
		return code
	}
	if *from == "" || fs.NArg() != 0 {
		fmt.Fprintln(stderr, "Usage: "+usage)
		return 2
	}
	if *out != "table" && *out != "json" {
		fmt.Fprintf(stderr, "opsd: -o %q: want table or json\n", *out)
		return 2
	}
	if *parallel < 1 || *parallel > restore.MaxParallel {
		fmt.Fprintf(stderr, "opsd: --parallel %d: want 1 to %d\n", *parallel, restore.MaxParallel)
		return 2
	}
	if *startParallel < 0 || *startParallel > restore.MaxParallel {
		fmt.Fprintf(stderr, "opsd: --start-parallel %d: want 0 (as --parallel) to %d\n", *startParallel, restore.MaxParallel)
		return 2
	}
	r, ids, code := openDockerRestore("restore node", *cfgPath, *identity, stdout, stderr)
	if r == nil {
		return code
	}
	defer r.close()
	var baseDir string
	if *withSnaps {
		jc, err := r.cfg.FindJob("dir_snapshot", "")
		if err != nil {
			fmt.Fprintf(stderr, "opsd: --with-snapshots: %v\n", err)
			return 1
		}
		baseDir = jc.DirSnapshot.BaseDir
	}
	release, ok := r.hold(r.keys.Root(layout.Nightly), stderr)
	if !ok {
		return 1
	}
	defer release()
	run, rep := restore.NodeRun(r.state, restore.NodeRunOptions{NodeOptions: restore.NodeOptions{Store: r.store, Layout: r.keys, Engine: r.docker, FromNode: *from,
		Identities: ids, Parallel: *parallel, StartParallel: *startParallel, Only: splitList(*only), Exclude: splitList(*exclude), DryRun: *dry, Probe: *probe,
		HostAccess: access(r.cfg)},
		SnapshotBaseDir: baseDir, Node: r.cfg.NodeID}, who())
	code = 0
	if *dry {
		// A dry run changes nothing: it is not a restore run.
		if _, err := run.Do(r.ctx, restore.PrintTracker(r.console.RedactedLine)); err != nil {
			code = 1
		}
	} else if o := r.execRestore(run); o.Err != nil {
		code = 1
	}
	if *out == "json" {
		writeJSON(stdout, rep)
	} else {
		restore.WriteNodeReport(stdout, *rep)
	}
	return code
}

// hostAccessFlags adds --allow-bind and --allow-host-access: what host access a container's
// captured spec may ask for when it is recreated (bind mounts under the dir_snapshot jobs'
// base_dir are allowed without a flag).
func hostAccessFlags(fs *flag.FlagSet) func(*config.Config) restore.HostAccess {
	var binds multiFlag
	fs.Var(&binds, "allow-bind", "also allow bind mounts from under this host directory (repeatable; the dir_snapshot base_dir is always allowed)")
	all := fs.Bool("allow-host-access", false, "allow everything the captured specs ask of the host (privileged, capabilities, host namespaces, devices, any bind): check the specs first, they come from the bucket")
	return func(cfg *config.Config) restore.HostAccess {
		return restore.HostAccess{BindRoots: append(cfg.BindRoots(), binds...), Allow: *all}
	}
}

// splitList splits a comma-separated list (as a repeatable flag's value is split).
func splitList(s string) []string {
	var m multiFlag
	m.Set(s)
	return m
}

// openDockerRestore opens what a container or node restore needs: the restore environment with
// a Docker engine, and the age identities (nil r: exit with code).
func openDockerRestore(what, cfgPath, identity string, stdout, stderr io.Writer) (r *restoreEnv, ids []age.Identity, code int) {
	r, code = openRestore(cfgPath, stdout, stderr)
	if r == nil {
		return nil, nil, code
	}
	if r.docker == nil {
		r.close()
		fmt.Fprintf(stderr, "opsd: %s needs the Docker engine (docker.host)\n", what)
		return nil, nil, 1
	}
	ids, err := readIdentities(identity)
	if err != nil {
		r.close()
		fmt.Fprintf(stderr, "opsd: %v\n", err)
		return nil, nil, 1
	}
	return r, ids, 0
}
