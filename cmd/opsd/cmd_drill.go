package main

import (
	"fmt"
	"io"
	"regexp"
	"time"

	"github.com/wopr-network/opsd/checks"
	"github.com/wopr-network/opsd/config"
	"github.com/wopr-network/opsd/jobs"
)

func cmdDrill(args []string, stdout, stderr io.Writer) int {
	const syn = "opsd drill db -c FILE [--date YYYYMMDD] [--job NAME] | opsd drill containers -c FILE [TENANT]"
	if len(args) == 0 {
		fmt.Fprintln(stderr, "Usage: "+syn)
		return 2
	}
	switch args[0] {
	case "db":
		return drillDB(args[1:], stdout, stderr)
	case "containers":
		return drillContainers(args[1:], stdout, stderr)
	case "-h", "--help":
		fmt.Fprintln(stdout, "Usage: "+syn)
		return 0
	}
	fmt.Fprintf(stderr, "opsd drill: unknown subcommand %q\nUsage: %s\n", args[0], syn)
	return 2
}

// drillDB restores the newest complete platform set (or --date) into scratch files, prints the
// report and exits 1 when anything failed.
func drillDB(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("drill db", "opsd drill db -c FILE [--date YYYYMMDD] [--job NAME]", stdout, stderr)
	cfgPath := configFlag(fs)
	date := fs.String("date", "", "drill this date's set instead of the newest complete one")
	jobName := fs.String("job", "", "the sqlite_drill job to use (default: the first one, or the built-in defaults)")
	if code, ok := parseFlags(fs, args, stdout); !ok {
		return code
	}
	if *date != "" && !regexp.MustCompile(`^\d{8}$`).MatchString(*date) {
		fmt.Fprintf(stderr, "opsd: --date %q is not YYYYMMDD\n", *date)
		return 2
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	jc, err := findJob(cfg, "sqlite_drill", *jobName)
	if err != nil && *jobName != "" {
		fmt.Fprintf(stderr, "opsd: %v\n", err)
		return 1
	}
	if err != nil {
		jc = defaultJob(cfg, "platform-drill", "sqlite_drill")
	}
	return runOnce(cfg, jc, stdout, stderr, printReport, func(j jobs.Job) (jobs.Job, error) {
		if *date != "" {
			return j.(*checks.PlatformDrill).WithDate(*date), nil
		}
		return j, nil
	})
}

func cmdVerify(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("verify", "opsd verify -c FILE [--deep] [--job NAME]", stdout, stderr)
	cfgPath := configFlag(fs)
	deep := fs.Bool("deep", false, "also re-download the newest set and check every SHA-256")
	jobName := fs.String("job", "", "the offsite_verify job to use (default: the first one, or the built-in defaults)")
	if code, ok := parseFlags(fs, args, stdout); !ok {
		return code
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	jc, err := findJob(cfg, "offsite_verify", *jobName)
	if err != nil && *jobName != "" {
		fmt.Fprintf(stderr, "opsd: %v\n", err)
		return 1
	}
	if err != nil {
		jc = defaultJob(cfg, "offsite-verify", "offsite_verify")
	}
	return runOnce(cfg, jc, stdout, stderr, printReport, func(j jobs.Job) (jobs.Job, error) {
		if *deep {
			return j.(*checks.OffsiteVerify).WithDeep(true), nil
		}
		return j, nil
	})
}

// defaultJob builds a job of a kind with every default, for CLI use without a configured job.
func defaultJob(cfg *config.Config, name, kind string) config.Job {
	text := fmt.Sprintf("node_id: %s\nstate:\n  path: /tmp/unused.db\njobs:\n  - name: %s\n    kind: %s\n    schedule: \"@monthly\"\n", cfg.NodeID, name, kind)
	parsed, err := config.Parse([]byte(text), "defaults")
	if err != nil {
		panic(err) // the defaults always parse
	}
	j := parsed.Jobs[0]
	j.Timeout = config.Duration(2 * time.Hour)
	return j
}

// printReport prints a drill's or verification's report.
func printReport(w io.Writer, o jobs.Outcome) {
	if o.Result.Report != "" {
		fmt.Fprint(w, o.Result.Report)
		return
	}
	printOutcome(w, o)
}

func cmdPrune(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("prune", "opsd prune -c FILE [--dry-run] [-o text|json] [--job NAME]", stdout, stderr)
	cfgPath := configFlag(fs)
	dry := fs.Bool("dry-run", false, "print the plan (what is kept, by which rule, and what would be deleted) and delete nothing")
	out := fs.String("o", "text", "output: text or json")
	jobName := fs.String("job", "", "the prune job to use (default: the first one, or the REFERENCE.md rules)")
	if code, ok := parseFlags(fs, args, stdout); !ok {
		return code
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	jc, err := findJob(cfg, "prune", *jobName)
	if err != nil && *jobName != "" {
		fmt.Fprintf(stderr, "opsd: %v\n", err)
		return 1
	}
	if err != nil {
		jc = defaultJob(cfg, "prune", "prune")
	}
	print := printReport
	if *out == "json" {
		print = func(w io.Writer, o jobs.Outcome) { fmt.Fprintln(w, string(o.Result.ReportJSON)) }
	}
	return runOnce(cfg, jc, stdout, stderr, print, func(j jobs.Job) (jobs.Job, error) {
		if *dry {
			return j.(*jobs.Prune).WithDryRun(true), nil
		}
		return j, nil
	})
}

// drillContainers restores the newest nightly archive of every tenant container (or one) into a
// throwaway image, starts it, cleans up, and prints the report.
func drillContainers(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("drill containers", "opsd drill containers -c FILE [--job NAME] [TENANT]", stdout, stderr)
	cfgPath := configFlag(fs)
	jobName := fs.String("job", "", "the container_drill job to use (default: the first one, or the built-in defaults)")
	if code, ok := parseFlags(fs, args, stdout); !ok {
		return code
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	jc, err := findJob(cfg, "container_drill", *jobName)
	if err != nil && *jobName != "" {
		fmt.Fprintf(stderr, "opsd: %v\n", err)
		return 1
	}
	if err != nil {
		jc = defaultJob(cfg, "container-drill", "container_drill")
	}
	tenant := fs.Arg(0)
	return runOnce(cfg, jc, stdout, stderr, printReport, func(j jobs.Job) (jobs.Job, error) {
		if tenant != "" {
			return j.(*checks.ContainerDrill).WithTenant(tenant), nil
		}
		return j, nil
	})
}
