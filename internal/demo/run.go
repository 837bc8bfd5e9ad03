package demo

import (
	"context"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"time"
)

// Options configure Run (`opsd demo`).
type Options struct {
	// Dir is the working directory: sample databases, store, state and the job file.
	Dir string
	// Listen is the HTTP address (a free port is picked when it is taken).
	Listen string
	// Container is the demo's tenant container (default tenant_demo).
	Container    string
	Rows, Writes int
	// Duration stops the demo after this long (0: until Done or the process ends).
	Duration       time.Duration
	Stdout, Stderr io.Writer
	// Done stops the demo when closed (tests); Started is called once the daemon serves.
	Done    <-chan struct{}
	Started func(Started)
}

// Started describes the daemon the demo started, as its job file configures it.
type Started struct {
	// Addr is the HTTP server's host:port.
	Addr                    string
	Node, Store, AdminToken string
	// Ctx ends when the daemon cancels its runs.
	Ctx    context.Context
	Daemon Daemon
}

// Serve runs the daemon of the job file at cfgPath until done is closed, calls started once it
// serves, and returns its exit code; an error means the job file does not load.
type Serve func(cfgPath string, done <-chan struct{}, started func(Started)) (int, error)

// Run is `opsd demo`: it prepares the sample databases, instances and (with a Docker engine) a
// tenant container under o.Dir, writes the job file, keeps a writer committing, runs the daemon
// through serve with a banner of where to look, and runs every job once the first backup is in.
func Run(o Options, serve Serve) int {
	fail := func(err error) int { fmt.Fprintf(o.Stderr, "opsd demo: %v\n", err); return 1 }
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return fail(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	fmt.Fprintf(o.Stdout, "opsd demo: preparing %s\n", dir)
	paths, err := Create(ctx, dir, o.Rows)
	if err == nil {
		err = Instances(dir)
	}
	if err != nil {
		return fail(err)
	}
	listen := o.Listen
	if ln, err := net.Listen("tcp", listen); err != nil {
		fmt.Fprintf(o.Stdout, "opsd demo: %s is taken; using a free port\n", listen)
		listen = "127.0.0.1:0"
	} else {
		ln.Close()
	}
	if o.Container == "" {
		o.Container = "tenant_demo"
	}
	withDocker, cleanup := StartContainer(ctx, o.Stdout, o.Container)
	defer cleanup()
	if !withDocker {
		o.Container = ""
	}
	cfgPath := filepath.Join(dir, "opsd.yaml")
	if err := WriteConfig(cfgPath, dir, listen, o.Container); err != nil {
		return fail(err)
	}
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		if _, err := Write(ctx, paths, o.Writes); err != nil {
			fmt.Fprintf(o.Stderr, "opsd demo: sample writer stopped: %v\n", err)
		}
	}()
	done := make(chan struct{})
	go func() {
		var timeout <-chan time.Time
		if o.Duration > 0 {
			timeout = time.After(o.Duration)
		}
		select {
		case <-o.Done:
		case <-timeout:
		case <-ctx.Done():
			return
		}
		close(done)
	}()
	code, err := serve(cfgPath, done, func(s Started) {
		base := "http://" + s.Addr
		fmt.Fprintf(o.Stdout, `
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

`, s.Node, cfgPath, s.Store, base, s.AdminToken)
		go RunChecks(s.Ctx, s.Daemon, o.Stdout)
		if o.Started != nil {
			o.Started(s)
		}
	})
	if err != nil {
		code = fail(err)
	}
	cancel()
	<-writerDone
	return code
}
