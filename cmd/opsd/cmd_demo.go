package main

import (
	"context"
	"io"

	"github.com/wopr-network/opsd/config"
	"github.com/wopr-network/opsd/internal/demo"
	"github.com/wopr-network/opsd/jobs"
)

func cmdDemo(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("demo", "opsd demo [--dir DIR] [--listen ADDR] [--duration D]", stdout, stderr)
	o := demo.Options{Stdout: stdout, Stderr: stderr}
	fs.StringVar(&o.Dir, "dir", "opsd-demo", "working directory for the sample databases, the store, the state and the config")
	fs.StringVar(&o.Listen, "listen", "127.0.0.1:9100", "HTTP listen address (a free port is picked if it is taken)")
	fs.IntVar(&o.Rows, "rows", 20000, "rows per sample table when the databases are created")
	fs.IntVar(&o.Writes, "writes", 50, "transactions per second the sample writer commits to each busy database")
	fs.DurationVar(&o.Duration, "duration", 0, "stop after this long (0: run until Ctrl-C)")
	if code, ok := parseFlags(fs, args, stdout); !ok {
		return code
	}
	return runDemo(o)
}

// runDemo runs the demo (demo.Run) with this binary's daemon.
func runDemo(o demo.Options) int {
	return demo.Run(o, func(cfgPath string, done <-chan struct{}, started func(demo.Started)) (int, error) {
		cfg, err := config.Load(cfgPath)
		if err != nil {
			return 1, err
		}
		return serveUntil(cfg, Options{Stderr: o.Stderr}, done, func(m *Main) {
			started(demo.Started{Addr: m.Addr().String(), Node: cfg.NodeID, Store: cfg.Storage.Local.Path, AdminToken: cfg.HTTP.AdminToken.Value(),
				Ctx: m.runCtx, Daemon: demoDaemon{m}})
		}), nil
	})
}

// demoDaemon is the running daemon as the demo's checks see it.
type demoDaemon struct{ m *Main }

func (d demoDaemon) BackedUp(ctx context.Context) bool {
	r, err := d.m.state.LastSuccess(ctx, "platform-db-backup")
	return err == nil && !r.StartedAt.IsZero()
}

func (d demoDaemon) IsRunning(name string) bool { return d.m.runner.IsRunning(name) }

func (d demoDaemon) RunJob(ctx context.Context, name string) (string, bool) {
	spec, ok := d.m.sched.Spec(name)
	if !ok {
		return "", false
	}
	return d.m.runner.Run(ctx, spec.Job, spec.Timeout, jobs.TriggerStart).Result.Report, true
}
