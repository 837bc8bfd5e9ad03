package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/mattn/go-isatty"

	"github.com/wopr-network/opsd/config"
	"github.com/wopr-network/opsd/jobs"
)

// forgetStdin and forgetStdinIsTerminal are where the confirmation is read (tests replace them).
var (
	forgetStdin           io.Reader = os.Stdin
	forgetStdinIsTerminal           = func() bool { return isatty.IsTerminal(os.Stdin.Fd()) }
)

var tenantIDRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)

// cmdForget deletes every artifact of one tenant: `opsd forget --tenant ID [--dry-run] [--yes]`.
func cmdForget(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("forget", "opsd forget -c FILE --tenant ID [--dry-run] [--yes]", stdout, stderr)
	cfgPath := configFlag(fs)
	tenant := fs.String("tenant", "", "the tenant id whose every backup is deleted (e.g. abc for container tenant_abc)")
	dry := fs.Bool("dry-run", false, "print what would be deleted and delete nothing")
	yes := fs.Bool("yes", false, "delete without asking (required when stdin is not a terminal)")
	if code, ok := parseFlags(fs, args, stdout); !ok {
		return code
	}
	if !tenantIDRe.MatchString(*tenant) {
		fmt.Fprintf(stderr, "opsd forget: --tenant must be a tenant id (letters, digits, '.', '_', '-'), got %q\n", *tenant)
		return 2
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	e, err := newEnv(ctx, cfg, Options{Stderr: stderr, LogLevel: "warn"})
	if err != nil {
		fmt.Fprintf(stderr, "opsd: %v\n", err)
		return 1
	}
	defer e.close(context.Background())
	d := e.deps(cfg, e.store)
	dps := 1000
	if cfg.Storage.Backend == "s3" {
		dps = cfg.Storage.S3.DeletesPerSec
	}
	job := jobs.NewForget(jobs.ForgetConfig{Tenant: *tenant, Names: forgetNames(cfg, *tenant), Places: forgetPlaces(cfg),
		DeletesPerSecond: dps, Locks: d.locks}, e.store)

	plan, err := job.WithDryRun(true).Plan(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "opsd: %v\n", err)
		return 1
	}
	plan.DryRun = true
	fmt.Fprint(stdout, plan.Text())
	switch {
	case len(plan.Keys) == 0:
		fmt.Fprintf(stdout, "nothing stored for tenant %s\n", *tenant)
		return 0
	case *dry:
		return 0
	case !*yes && !forgetStdinIsTerminal():
		fmt.Fprintln(stderr, "opsd forget: refusing to delete without --yes: stdin is not a terminal to confirm on")
		return 2
	case !*yes:
		fmt.Fprintf(stdout, "Delete these %d objects of tenant %s for good? Type the tenant id to confirm: ", len(plan.Keys), *tenant)
		line, _ := bufio.NewReader(forgetStdin).ReadString('\n')
		if strings.TrimSpace(line) != *tenant {
			fmt.Fprintln(stdout, "not confirmed: nothing deleted")
			return 1
		}
	}
	// The deletion runs through the Runner: it is recorded as a run of "forget" in the history.
	o := e.runner.Run(ctx, job, time.Hour, jobs.TriggerCLI)
	fmt.Fprintf(stdout, "forget: %s", o.Run.Outcome)
	if o.Result.Summary != "" {
		fmt.Fprintf(stdout, " (%s)", o.Result.Summary)
	}
	fmt.Fprintln(stdout)
	if !o.OK() {
		if o.Err != nil {
			fmt.Fprintf(stderr, "opsd: forget: %s\n", e.redactor.Redact(o.Err.Error()))
		}
		return 1
	}
	return 0
}

// forgetNames are the target names that stand for a tenant: the id itself (instances,
// on-demand folders) and every export's or snapshot's tenant_from pattern (tenant_{id}).
func forgetNames(cfg *config.Config, id string) []string {
	names := map[string]bool{id: true, "tenant_" + id: true}
	for _, j := range cfg.Jobs {
		var ts config.TierSource
		switch {
		case j.ContainerExport != nil:
			ts = j.ContainerExport.ResolvedTierSource()
		case j.DirSnapshot != nil:
			ts = j.DirSnapshot.ResolvedTierSource()
		default:
			continue
		}
		names[strings.ReplaceAll(ts.TenantFrom, "{id}", id)] = true
	}
	out := make([]string, 0, len(names))
	for n := range names {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// forgetPlaces are where per-target artifacts live: the prune rules' targets (platform sets are
// shared and never a tenant's) and the folder each export's or snapshot's key template names
// after its container or instance.
func forgetPlaces(cfg *config.Config) []jobs.ForgetPlace {
	var out []jobs.ForgetPlace
	rules := config.DefaultPruneRules()
	for _, j := range cfg.Jobs {
		if j.Prune != nil {
			rules = append(rules, j.Prune.Rules...)
		}
	}
	for _, r := range rules {
		if !r.Sets && r.Depth > 0 {
			out = append(out, jobs.ForgetPlace{Prefix: r.Prefix, Depth: r.Depth})
		}
	}
	for _, j := range cfg.Jobs {
		switch {
		case j.ContainerExport != nil:
			if p, ok := templatePlace(j.ContainerExport.Key, "{container}"); ok {
				out = append(out, p)
			}
		case j.DirSnapshot != nil:
			if p, ok := templatePlace(j.DirSnapshot.Key, "{instance}"); ok {
				out = append(out, p)
			}
		}
	}
	out = append(out, jobs.ForgetPlace{Prefix: "latest/", Depth: 1})
	seen := map[jobs.ForgetPlace]bool{}
	var uniq []jobs.ForgetPlace
	for _, p := range out {
		if !seen[p] {
			seen[p] = true
			uniq = append(uniq, p)
		}
	}
	return uniq
}

// templatePlace finds the folder a key template names after a target: nightly/{node}/{container}/...
// gives prefix nightly/, depth 2. A template that puts the target only in the file name gives none.
func templatePlace(key, placeholder string) (jobs.ForgetPlace, bool) {
	first := strings.IndexByte(key, '{')
	if first < 0 {
		return jobs.ForgetPlace{}, false
	}
	prefix := key[:strings.LastIndexByte(key[:first], '/')+1]
	parts := strings.Split(strings.TrimPrefix(key, prefix), "/")
	for i, p := range parts[:len(parts)-1] {
		if p == placeholder {
			return jobs.ForgetPlace{Prefix: prefix, Depth: i + 1}, prefix != ""
		}
	}
	return jobs.ForgetPlace{}, false
}
