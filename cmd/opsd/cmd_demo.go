package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"time"

	"github.com/wopr-network/opsd/config"
	"github.com/wopr-network/opsd/internal/demo"
	"github.com/wopr-network/opsd/jobs"
)

type demoOptions struct {
	dir, listen    string
	container      string // the demo's tenant container (default tenant_demo)
	rows, writes   int
	duration       time.Duration
	stdout, stderr io.Writer
	// done stops the demo when closed (tests); started is called once it serves.
	done    <-chan struct{}
	started func(*Main)
}

func cmdDemo(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("demo", "opsd demo [--dir DIR] [--listen ADDR] [--duration D]", stdout, stderr)
	o := demoOptions{stdout: stdout, stderr: stderr}
	fs.StringVar(&o.dir, "dir", "opsd-demo", "working directory for the sample databases, the store, the state and the config")
	fs.StringVar(&o.listen, "listen", "127.0.0.1:9100", "HTTP listen address (a free port is picked if it is taken)")
	fs.IntVar(&o.rows, "rows", 20000, "rows per sample table when the databases are created")
	fs.IntVar(&o.writes, "writes", 50, "transactions per second the sample writer commits to each busy database")
	fs.DurationVar(&o.duration, "duration", 0, "stop after this long (0: run until Ctrl-C)")
	if code, ok := parseFlags(fs, args, stdout); !ok {
		return code
	}
	return runDemo(o)
}

func runDemo(o demoOptions) int {
	fail := func(err error) int { fmt.Fprintf(o.stderr, "opsd demo: %v\n", err); return 1 }
	dir, err := filepath.Abs(o.dir)
	if err != nil {
		return fail(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	fmt.Fprintf(o.stdout, "opsd demo: preparing %s\n", dir)
	paths, err := demo.Create(ctx, dir, o.rows)
	if err == nil {
		err = demo.Instances(dir)
	}
	if err != nil {
		return fail(err)
	}
	listen := o.listen
	if ln, err := net.Listen("tcp", listen); err != nil {
		fmt.Fprintf(o.stdout, "opsd demo: %s is taken; using a free port\n", listen)
		listen = "127.0.0.1:0"
	} else {
		ln.Close()
	}
	if o.container == "" {
		o.container = "tenant_demo"
	}
	withDocker, cleanup := demo.StartContainer(ctx, o.stdout, o.container)
	defer cleanup()
	if !withDocker {
		o.container = ""
	}
	cfgPath := filepath.Join(dir, "opsd.yaml")
	if err := demo.WriteConfig(cfgPath, dir, listen, o.container); err != nil {
		return fail(err)
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		return fail(err)
	}
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		if _, err := demo.Write(ctx, paths, o.writes); err != nil {
			fmt.Fprintf(o.stderr, "opsd demo: sample writer stopped: %v\n", err)
		}
	}()
	done := make(chan struct{})
	go func() {
		var timeout <-chan time.Time
		if o.duration > 0 {
			timeout = time.After(o.duration)
		}
		select {
		case <-o.done:
		case <-timeout:
		case <-ctx.Done():
			return
		}
		close(done)
	}()
	code := serveUntil(cfg, Options{Stderr: o.stderr}, done, func(m *Main) {
		base, tok := "http://"+m.Addr().String(), cfg.HTTP.AdminToken.Value()
		fmt.Fprintf(o.stdout, `
opsd demo is running (node %s)
  config   %s   (edit it: opsd reloads it live)
  store    %s
  health   %[4]s/health
  ready    %[4]s/health/ready
  metrics  %[4]s/metrics
  jobs     %[4]s/api/jobs
  run a job now:
    curl -X POST -H 'Authorization: Bearer %[5]s' %[4]s/api/jobs/platform-db-backup/run
A writer keeps committing to billing, credits and audit. Ctrl-C stops the demo.

`, cfg.NodeID, cfgPath, cfg.Storage.Local.Path, base, tok)
		go demo.RunChecks(m.runCtx, demoDaemon{m}, o.stdout)
		if o.started != nil {
			o.started(m)
		}
	})
	cancel()
	<-writerDone
	return code
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
