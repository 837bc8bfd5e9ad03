package main

import (
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/wopr-network/opsd/config"
	"github.com/wopr-network/opsd/jobs"
)

// adapter adjusts a built job to the command line (a date, a dry run, a subset).
type adapter func(jobs.Job) (jobs.Job, error)

// oneJob is a CLI command that runs one configured job of a kind once, in the foreground.
type oneJob struct {
	name, synopsis, kind string
	// fallback is the name of a job built from the kind's defaults when the config has none;
	// "" makes a configured job required.
	fallback string
	// match narrows the config's jobs of the kind (e.g. hot or nightly exports).
	match func(config.Job) bool
	print func(io.Writer, jobs.Outcome)
	// flags adds the command's own flags and returns prepare, which checks them and returns the
	// adapter (or an exit code). It may change the job entry (e.g. select databases).
	flags func(fs *flag.FlagSet) func(cfg *config.Config, jc *config.Job, args []string) (adapter, int)
}

func (c oneJob) run(args []string, stdout, stderr io.Writer) int {
	fs := newFlags(c.name, c.synopsis, stdout, stderr)
	cfgPath := configFlag(fs)
	jobName := fs.String("job", "", "the "+c.kind+" job to use (default: the first one)")
	var prepare func(*config.Config, *config.Job, []string) (adapter, int)
	if c.flags != nil {
		prepare = c.flags(fs)
	}
	cfg, code := loadConfig(fs, cfgPath, args, stdout, stderr)
	if cfg == nil {
		return code
	}
	jc, err := cfg.FindJob(c.kind, *jobName, c.match)
	switch {
	case err != nil && (*jobName != "" || c.fallback == ""):
		fmt.Fprintf(stderr, "opsd: %v\n", err)
		return 1
	case err != nil:
		jc = cfg.DefaultJob(c.fallback, c.kind)
	}
	var adapt adapter
	if prepare != nil {
		if adapt, code = prepare(cfg, &jc, fs.Args()); code != 0 {
			return code
		}
	}
	return runOnce(cfg, jc, stdout, stderr, c.print, adapt)
}

// subcommands dispatches args[0] to a subcommand.
func subcommands(name string, args []string, stdout, stderr io.Writer, subs map[string]func([]string, io.Writer, io.Writer) int, syn string) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "Usage: "+syn)
		return 2
	}
	if args[0] == "-h" || args[0] == "--help" {
		fmt.Fprintln(stdout, "Usage: "+syn)
		return 0
	}
	if f, ok := subs[args[0]]; ok {
		return f(args[1:], stdout, stderr)
	}
	var names []string
	for n := range subs {
		names = append(names, n)
	}
	sort.Strings(names)
	fmt.Fprintf(stderr, "opsd %s: unknown subcommand %q (one of %s)\nUsage: %s\n", name, args[0], strings.Join(names, ", "), syn)
	return 2
}
