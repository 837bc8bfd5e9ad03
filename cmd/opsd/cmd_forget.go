package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"regexp"
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
	places, err := cfg.TargetFolders()
	if err != nil {
		fmt.Fprintf(stderr, "opsd: %v\n", err)
		return 1
	}
	job := jobs.NewForget(jobs.ForgetConfig{Tenant: *tenant, Names: cfg.TenantNames(*tenant), Places: places,
		DeletesPerSecond: cfg.Storage.DeletesPerSecond(), Locks: e.locks}, e.store)

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
