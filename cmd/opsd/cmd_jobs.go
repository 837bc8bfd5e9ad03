package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/wopr-network/opsd/config"
	"github.com/wopr-network/opsd/internal/coord"
	"github.com/wopr-network/opsd/jobs"
)

func cmdJobs(args []string, stdout, stderr io.Writer) int {
	return subcommands("jobs", args, stdout, stderr, map[string]func([]string, io.Writer, io.Writer) int{"list": jobsList, "run": jobsRun},
		"opsd jobs list -c FILE [-o json] | opsd jobs run -c FILE NAME")
}

func jobsList(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("jobs list", "opsd jobs list -c FILE [-o json]", stdout, stderr)
	cfgPath := configFlag(fs)
	out := outputFlag(fs, "table", "json")
	ctx := context.Background()
	cfg, st, code := loadState(ctx, fs, cfgPath, args, stdout, stderr)
	if st == nil {
		return code
	}
	defer st.Close()
	now := time.Now().In(cfg.Location())
	var infos []jobs.Info
	for _, jc := range cfg.Jobs {
		info := jobs.Info{Name: jc.Name, Kind: jc.Kind, Schedule: jc.Schedule, Enabled: jc.IsEnabled()}
		if s, err := jc.ParsedSchedule(); err == nil && info.Enabled {
			t := s.Next(now).UTC()
			info.NextRun = &t
		}
		info.AddHistory(ctx, st)
		infos = append(infos, info)
	}
	if *out == "json" {
		writeJSON(stdout, map[string]any{"jobs": infos})
		return 0
	}
	jobs.WriteInfoTable(stdout, infos)
	return 0
}

func jobsRun(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("jobs run", "opsd jobs run -c FILE NAME", stdout, stderr)
	cfgPath := configFlag(fs)
	if code, ok := parseFlags(fs, args, stdout); !ok {
		return code
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(stderr, "Usage: opsd jobs run -c FILE NAME")
		return 2
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	jc, ok := cfg.Job(fs.Arg(0))
	if !ok {
		fmt.Fprintf(stderr, "opsd: no job named %q in %s\n", fs.Arg(0), *cfgPath)
		return 1
	}
	return runOnce(cfg, jc, stdout, stderr, nil, nil)
}

// runOnce runs one job in the foreground through the Runner (so it is recorded like a scheduled
// run) and prints its targets. Ctrl-C cancels the run cleanly. The exit code is 0 on success.
func runOnce(cfg *config.Config, jc config.Job, stdout, stderr io.Writer, print func(io.Writer, jobs.Outcome), adapt adapter) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	e, err := newEnv(ctx, cfg, Options{Stderr: stderr})
	if err != nil {
		fmt.Fprintf(stderr, "opsd: %v\n", err)
		return 1
	}
	defer e.close(context.Background())
	j, err := buildJob(jc, e.deps(cfg, e.store))
	if err == nil && adapt != nil {
		j, err = adapt(j)
	}
	if err != nil {
		fmt.Fprintf(stderr, "opsd: %v\n", err)
		return 1
	}
	var o jobs.Outcome
	if d, ok := j.(jobs.DryRunner); ok && d.IsDryRun() {
		o = e.runner.Plan(ctx, j, jc.Timeout.D()) // a plan is not a run: not recorded
	} else {
		// A platform-scoped job takes the same fleet-wide lock as the daemons' runs: it never
		// runs on two nodes at once.
		release, code := cliPlatformLock(ctx, cfg, jc, stderr)
		if code != 0 {
			return code
		}
		o = e.runner.Run(ctx, j, jc.Timeout.D(), jobs.TriggerCLI)
		release()
	}
	if print == nil {
		print = func(w io.Writer, o jobs.Outcome) { o.WriteText(w) }
	}
	print(stdout, o)
	if !o.OK() {
		if o.Err != nil {
			fmt.Fprintf(stderr, "opsd: %s: %s\n", jc.Name, e.redactor.Redact(o.Err.Error()))
		}
		return 1
	}
	return 0
}

// cliPlatformLock takes a platform-scoped job's fleet-wide lock for a CLI run (a no-op without
// coordination): a clear message and exit 1 when the job runs on another node or the
// coordination database cannot be reached (a platform job never runs uncoordinated).
func cliPlatformLock(ctx context.Context, cfg *config.Config, jc config.Job, stderr io.Writer) (func(), int) {
	if !cfg.Coordination.Enabled() || cfg.Scope(jc) != jobs.ScopePlatform {
		return func() {}, 0
	}
	p, err := coord.Open(ctx, coordOptions(cfg))
	if err != nil {
		if p != nil {
			p.Close()
		}
		fmt.Fprintf(stderr, "opsd: %s is a platform job and the coordination database cannot be reached: %v\n", jc.Name, err)
		return nil, 1
	}
	release, err := jobs.PlatformLock(ctx, p, jc.Name)
	switch {
	case errors.Is(err, jobs.ErrHeldElsewhere):
		fmt.Fprintf(stderr, "opsd: %s is running on another node right now (platform job, fleet-wide lock held); try again when it finishes\n", jc.Name)
		return nil, 1
	case err != nil:
		fmt.Fprintf(stderr, "opsd: %s: %v\n", jc.Name, err)
		return nil, 1
	}
	return release, 0
}
