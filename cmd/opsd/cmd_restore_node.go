package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"filippo.io/age"

	"github.com/wopr-network/opsd/internal/artifact"
	"github.com/wopr-network/opsd/internal/docker"
	"github.com/wopr-network/opsd/internal/layout"
	"github.com/wopr-network/opsd/internal/restore"
	"github.com/wopr-network/opsd/internal/state"
)

// restoreContainer restores one container: over an existing one of that name (--replace: safety
// export, stop, swap, roll back on failure), or, when none exists on this engine (a lost node's
// tenant), recreated from the backup and the create spec captured at export time.
func restoreContainer(args []string, stdout, stderr io.Writer) int {
	const usage = "opsd restore container -c FILE NAME [--from-node NODE] [--key KEY | --date YYYYMMDD | --latest] [--replace]"
	fs := newFlags("restore container", usage, stdout, stderr)
	cfgPath := configFlag(fs)
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
	if *date != "" && !layout.IsDate(*date) {
		fmt.Fprintf(stderr, "opsd: --date %q is not YYYYMMDD\n", *date)
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
	var k string
	var err error
	switch {
	case *key != "" || *date != "" || *latest:
		k, err = restore.ContainerKey(r.ctx, r.store, r.keys, node, name, *key, *date, *latest)
	default:
		k, err = restore.NewestContainerKey(r.ctx, r.store, r.keys, node, name)
	}
	if err != nil {
		fmt.Fprintf(stderr, "opsd: %v\n", err)
		return 1
	}
	if !r.keys.BelongsTo(k, name) {
		fmt.Fprintf(stderr, "opsd: %s is not a backup of %s\n", k, name)
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
	release, err := r.locks.Acquire(r.ctx, r.keys.Root(layout.Nightly), false, "restore")
	if err != nil {
		return 1
	}
	defer release()
	if exists {
		return r.record("container", name, k, func() (string, time.Duration, error) {
			res, err := restore.RestoreContainer(r.ctx, restore.ContainerOptions{Store: r.store, Layout: r.keys, Engine: r.docker, Name: name, Key: k, Identities: ids,
				Node: r.cfg.NodeID, Probe: *probe, Progress: r.progress, OnBytes: r.onBytes()})
			return res.SafetyKey, res.Downtime, err
		})
	}
	r.progress(fmt.Sprintf("%s does not exist on this node: recreating it from %s and its captured spec", name, k))
	return r.record("container", name, k, func() (string, time.Duration, error) {
		res := restore.Recreate(r.ctx, restore.RecreateOptions{Store: r.store, Engine: r.docker, Key: k, Identities: ids, Probe: *probe, OnBytes: r.onBytes()})
		for _, w := range res.Warnings {
			r.progress("note: " + w)
		}
		if res.Outcome == "failed" {
			return "", 0, fmt.Errorf("restore %s: %s", name, res.Error)
		}
		return "", time.Duration(res.Seconds * float64(time.Second)), nil
	})
}

// restoreNode restores every tenant container a (lost) node backed up onto this node: runbook
// Procedure 3 in one command.
func restoreNode(args []string, stdout, stderr io.Writer) int {
	const usage = "opsd restore node -c FILE --from NODE [--parallel N] [--only A,B] [--exclude A,B] [--with-snapshots] [--dry-run] [-o json]"
	fs := newFlags("restore node", usage, stdout, stderr)
	cfgPath := configFlag(fs)
	from := fs.String("from", "", "the lost node's node_id (its backups are under nightly/NODE/)")
	parallel := fs.Int("parallel", 4, "containers restored at once")
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
	if *parallel < 1 || *parallel > 64 {
		fmt.Fprintf(stderr, "opsd: --parallel %d: want 1 to 64\n", *parallel)
		return 2
	}
	r, ids, code := openDockerRestore("restore node", *cfgPath, *identity, stdout, stderr)
	if r == nil {
		return code
	}
	defer r.close()
	var baseDir string
	if *withSnaps {
		jc, err := findJob(r.cfg, "dir_snapshot", "")
		if err != nil {
			fmt.Fprintf(stderr, "opsd: --with-snapshots: %v\n", err)
			return 1
		}
		baseDir = jc.DirSnapshot.BaseDir
	}
	release, err := r.locks.Acquire(r.ctx, r.keys.Root(layout.Nightly), false, "restore")
	if err != nil {
		return 1
	}
	defer release()
	var total int64
	if cands, err := restore.NodeCandidates(r.ctx, r.store, r.keys, *from); err == nil {
		for _, k := range cands {
			if m, err := artifact.ReadManifest(r.ctx, r.store, k); err == nil {
				total += m.Size
			}
		}
	}
	started := time.Now()
	var done int64
	n := 0
	progress := func(c restore.RecreateResult) {
		n++
		done += c.Bytes
		eta := ""
		if el := time.Since(started).Seconds(); done > 0 && total > done {
			eta = fmt.Sprintf(", ETA %s", time.Duration(float64(total-done)/(float64(done)/el)*float64(time.Second)).Round(time.Second))
		}
		line := fmt.Sprintf("[%d] %-8s %s (%s, %.1fs)  total %s of %s%s", n, c.Outcome, c.Name, humanBytes(c.Bytes), c.Seconds, humanBytes(done), humanBytes(total), eta)
		if c.Error != "" {
			line += ": " + r.redactor.Redact(c.Error)
		}
		r.progress(line)
		if !*dry && c.Outcome != "skipped" {
			recordContainer(r, c, *from)
		}
	}
	id, _ := r.state.StartRestore(r.ctx, state.Restore{Kind: "node", Target: *from, Key: r.keys.Root(layout.Nightly) + " (node " + *from + ")", RequestedBy: who(), StartedAt: started})
	rep, runErr := restore.RestoreNode(r.ctx, restore.NodeOptions{Store: r.store, Layout: r.keys, Engine: r.docker, FromNode: *from, Identities: ids, Parallel: *parallel,
		Only: splitList(*only), Exclude: splitList(*exclude), DryRun: *dry, Probe: *probe, Progress: progress})
	var snapErrs []string
	if *withSnaps {
		snapErrs = restoreNodeSnapshots(r, *from, baseDir, ids, *dry)
	}
	if id != 0 && !*dry {
		fin := time.Now()
		rec := state.Restore{ID: id, FinishedAt: &fin, Outcome: "success", Progress: fmt.Sprintf("%d restored, %d skipped, %d failed", rep.Restored, rep.Skipped, rep.Failed)}
		if runErr != nil || len(snapErrs) > 0 {
			msg := strings.Join(snapErrs, "; ")
			if runErr != nil {
				msg = runErr.Error() + " " + msg
			}
			rec.Outcome, rec.Error = "failure", r.redactor.Redact(msg)
		}
		r.state.FinishRestore(context.WithoutCancel(r.ctx), rec)
	}
	if *out == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.Encode(rep)
	} else {
		printNodeReport(stdout, rep)
	}
	if runErr != nil || len(snapErrs) > 0 {
		return 1
	}
	return 0
}

func recordContainer(r *restoreEnv, c restore.RecreateResult, from string) {
	fin := time.Now()
	id, err := r.state.StartRestore(r.ctx, state.Restore{Kind: "container", Target: c.Name, Key: c.Key, RequestedBy: who() + " (restore node --from " + from + ")",
		StartedAt: fin.Add(-time.Duration(c.Seconds * float64(time.Second)))})
	if err != nil || id == 0 {
		return
	}
	rec := state.Restore{ID: id, FinishedAt: &fin, Outcome: "success"}
	if c.Outcome == "failed" {
		rec.Outcome, rec.Error = "failure", r.redactor.Redact(c.Error)
	}
	r.state.FinishRestore(context.WithoutCancel(r.ctx), rec)
}

// restoreNodeSnapshots restores the newest WOPR_HOME snapshot of every instance the node backed up.
func restoreNodeSnapshots(r *restoreEnv, from, baseDir string, ids []age.Identity, dry bool) []string {
	snaps, err := restore.NodeArtifacts(r.ctx, r.store, r.keys, from, "snapshot")
	if err != nil {
		return []string{err.Error()}
	}
	names := make([]string, 0, len(snaps))
	for n := range snaps {
		names = append(names, n)
	}
	sort.Strings(names)
	var errs []string
	for _, inst := range names {
		if dry {
			r.progress(fmt.Sprintf("planned  snapshot %s from %s into %s", inst, snaps[inst], baseDir))
			continue
		}
		_, err := restore.RestoreSnapshot(r.ctx, restore.SnapshotOptions{Store: r.store, BaseDir: baseDir, Instance: inst, Key: snaps[inst], Node: r.cfg.NodeID, Identities: ids, Progress: r.progress})
		if err != nil {
			errs = append(errs, fmt.Sprintf("snapshot %s: %v", inst, err))
			r.progress(fmt.Sprintf("failed   snapshot %s: %s", inst, r.redactor.Redact(err.Error())))
			continue
		}
		r.progress(fmt.Sprintf("restored snapshot %s from %s", inst, snaps[inst]))
	}
	return errs
}

func printNodeReport(w io.Writer, rep restore.NodeReport) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprint(tw, "CONTAINER\tOUTCOME\tKEY\tSIZE")
	for _, p := range restore.RecreatePhases {
		fmt.Fprintf(tw, "\t%s", strings.ToUpper(p))
	}
	fmt.Fprintln(tw, "\tTOTAL")
	for _, c := range rep.Containers {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s", c.Name, c.Outcome, c.Key, humanBytes(c.Bytes))
		for _, p := range restore.RecreatePhases {
			fmt.Fprintf(tw, "\t%.1fs", c.Phases[p])
		}
		fmt.Fprintf(tw, "\t%.1fs\n", c.Seconds)
	}
	tw.Flush()
	for _, c := range rep.Containers {
		for _, warn := range c.Warnings {
			fmt.Fprintf(w, "note: %s: %s\n", c.Name, warn)
		}
		if c.Error != "" {
			fmt.Fprintf(w, "FAIL  %s: %s\n", c.Name, c.Error)
		}
	}
	verb := "restored"
	if rep.DryRun {
		verb = "planned (dry run: nothing was changed)"
	}
	fmt.Fprintf(w, "Result: %d %s, %d skipped (already restored), %d failed; %s\n", rep.Restored+countPlanned(rep), verb, rep.Skipped, rep.Failed, humanBytes(rep.Bytes))
	fmt.Fprintf(w, "RTO (node %s): %.1fs\n", rep.FromNode, rep.RTOSeconds)
}

func countPlanned(rep restore.NodeReport) int {
	n := 0
	for _, c := range rep.Containers {
		if c.Outcome == "planned" {
			n++
		}
	}
	return n
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
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
