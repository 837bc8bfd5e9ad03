package main

import (
	"flag"
	"fmt"
	"io"

	"github.com/wopr-network/opsd/checks"
	"github.com/wopr-network/opsd/config"
	"github.com/wopr-network/opsd/jobs"
)

func cmdDrill(args []string, stdout, stderr io.Writer) int {
	return subcommands("drill", args, stdout, stderr, map[string]func([]string, io.Writer, io.Writer) int{
		"db": oneJob{name: "drill db", synopsis: "opsd drill db -c FILE [--date YYYYMMDD] [--job NAME]", kind: "sqlite_drill", fallback: "platform-drill", print: printReport,
			flags: dateFlag("drill this date's set instead of the newest complete one",
				func(j jobs.Job, date string) jobs.Job { return j.(*checks.PlatformDrill).WithDate(date) })}.run,
		"postgres": drillPostgres.run,
		"containers": oneJob{name: "drill containers", synopsis: "opsd drill containers -c FILE [--job NAME] [TENANT]", kind: "container_drill", fallback: "container-drill", print: printReport,
			flags: onlyNamed(func(j jobs.Job, names []string) jobs.Job { return j.(*checks.ContainerDrill).WithTenant(names[0]) })}.run,
		"node": oneJob{name: "drill node", synopsis: "opsd drill node -c FILE [--from NODE] [--sample N] [--job NAME]", kind: "node_drill", fallback: "node-drill", print: printReport,
			flags: func(fs *flag.FlagSet) func(*config.Config, *config.Job, []string) (adapter, int) {
				from := fs.String("from", "", "the node whose backups are drilled (default: the job's from_node, or this node)")
				sample := fs.Int("sample", 0, "containers restored into the sandbox (default: the job's sample)")
				return func(_ *config.Config, jc *config.Job, _ []string) (adapter, int) {
					if *from != "" {
						jc.NodeDrill.FromNode = *from
					}
					if *sample < 0 {
						fmt.Fprintf(fs.Output(), "opsd: --sample %d: want 1 or more\n", *sample)
						return nil, 2
					} else if *sample > 0 {
						jc.NodeDrill.Sample = *sample
					}
					return nil, 0
				}
			}}.run,
	}, "opsd drill db -c FILE [--date YYYYMMDD] | opsd drill containers -c FILE [TENANT] | opsd drill node -c FILE [--from NODE] | opsd drill postgres -c FILE [--date YYYYMMDD]")
}

func cmdVerify(args []string, stdout, stderr io.Writer) int {
	return oneJob{name: "verify", synopsis: "opsd verify -c FILE [--deep] [--job NAME]", kind: "offsite_verify", fallback: "offsite-verify", print: printReport,
		flags: func(fs *flag.FlagSet) func(*config.Config, *config.Job, []string) (adapter, int) {
			deep := fs.Bool("deep", false, "also re-download the newest set and check every SHA-256")
			return func(*config.Config, *config.Job, []string) (adapter, int) {
				return func(j jobs.Job) (jobs.Job, error) { return j.(*checks.OffsiteVerify).WithDeep(*deep), nil }, 0
			}
		}}.run(args, stdout, stderr)
}

func cmdPrune(args []string, stdout, stderr io.Writer) int {
	var asJSON bool
	c := oneJob{name: "prune", synopsis: "opsd prune -c FILE [--dry-run] [-o text|json] [--job NAME]", kind: "prune", fallback: "prune",
		print: func(w io.Writer, o jobs.Outcome) {
			if asJSON {
				fmt.Fprintln(w, string(o.Result.ReportJSON))
				return
			}
			printReport(w, o)
		},
		flags: func(fs *flag.FlagSet) func(*config.Config, *config.Job, []string) (adapter, int) {
			dry := fs.Bool("dry-run", false, "print the plan (what is kept, by which rule, and what would be deleted) and delete nothing")
			out := outputFlag(fs, "text", "json")
			return func(*config.Config, *config.Job, []string) (adapter, int) {
				asJSON = *out == "json"
				return func(j jobs.Job) (jobs.Job, error) {
					if *dry {
						return j.(*jobs.Prune).WithDryRun(true), nil
					}
					return j, nil
				}, 0
			}
		}}
	return c.run(args, stdout, stderr)
}

// dateFlag adds --date YYYYMMDD, refused when it is no date, and adapts the job to it with with.
func dateFlag(usage string, with func(jobs.Job, string) jobs.Job) func(*flag.FlagSet) func(*config.Config, *config.Job, []string) (adapter, int) {
	return func(fs *flag.FlagSet) func(*config.Config, *config.Job, []string) (adapter, int) {
		date := fs.String("date", "", usage)
		return func(*config.Config, *config.Job, []string) (adapter, int) {
			if !validDate(fs.Output(), *date) {
				return nil, 2
			}
			return func(j jobs.Job) (jobs.Job, error) {
				if *date != "" {
					j = with(j, *date)
				}
				return j, nil
			}, 0
		}
	}
}

// printReport prints a drill's or verification's report.
func printReport(w io.Writer, o jobs.Outcome) {
	if o.Result.Report != "" {
		fmt.Fprint(w, o.Result.Report)
		return
	}
	o.WriteText(w)
}
