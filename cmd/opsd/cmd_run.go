package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/wopr-network/opsd/config"
)

func cmdRun(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("run", "opsd run -c FILE [--listen ADDR] [--log-level LEVEL]", stdout, stderr)
	cfgPath := configFlag(fs)
	listen := fs.String("listen", "", "override http.listen (e.g. 127.0.0.1:0)")
	level := fs.String("log-level", "", "override log.level (debug, info, warn, error)")
	if code, ok := parseFlags(fs, args, stdout); !ok {
		return code
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		fmt.Fprintf(stderr, "opsd: %v\n", err)
		return 1
	}
	return serveUntil(cfg, Options{Stderr: stderr, Listen: *listen, LogLevel: *level}, nil, nil)
}

// serveUntil runs the daemon until SIGINT or SIGTERM (or done is closed); SIGHUP reloads the
// config. The first stop signal drains gracefully within scheduler.shutdown_timeout; a second one
// cancels runs at once.
func serveUntil(cfg *config.Config, o Options, done <-chan struct{}, started func(*Main)) int {
	ctx := context.Background()
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)

	m, err := NewMain(ctx, cfg, o)
	if err != nil {
		fmt.Fprintf(o.Stderr, "opsd: %v\n", err)
		return 1
	}
	if err := m.Run(ctx); err != nil {
		m.log.Error().Err(err).Msg("cannot start")
		m.Close(ctx)
		return 1
	}
	if w := config.MountWarning(cfg.File); w != "" {
		m.log.Warn().Str("path", cfg.File).Msg(w)
	}
	if started != nil {
		started(m)
	}
	// SIGHUP reloads run beside the signal loop, so a reload waiting on I/O (an unreachable S3
	// endpoint) never keeps SIGTERM from being handled; shutdown cancels and waits for them.
	reloadCtx, stopReloads := context.WithCancel(ctx)
	defer stopReloads()
	var reloads sync.WaitGroup
wait:
	for {
		select {
		case <-done:
			m.log.Info().Msg("shutting down")
			break wait
		case sig := <-sigs:
			if sig == syscall.SIGHUP {
				reloads.Add(1)
				go func() {
					defer reloads.Done()
					if changed, err := m.Reload(reloadCtx); err != nil {
						m.log.Error().Err(err).Msg("config reload failed; the previous config keeps running")
					} else if !changed {
						m.log.Info().Msg("config unchanged")
					}
				}()
				continue
			}
			m.log.Info().Str("signal", sig.String()).Int64("timeout_ms", m.cfg().Scheduler.ShutdownTimeout.D().Milliseconds()).
				Msg("shutting down: waiting for runs in progress; send the signal again to abort them")
			break wait
		}
	}
	stopReloads()
	sctx, cancel := context.WithTimeout(ctx, m.cfg().Scheduler.ShutdownTimeout.D())
	defer cancel()
	go func() {
		for sig := range sigs {
			if sig != syscall.SIGHUP {
				m.log.Warn().Msg("second signal: aborting runs in progress")
				cancel()
				return
			}
		}
	}()
	m.Close(sctx)
	// The SIGHUP reloads were canceled above and Close stopped the watcher that might hold the
	// reload lock; a POST /-/reload still waiting on the network must not keep opsd alive.
	waited := make(chan struct{})
	go func() { reloads.Wait(); close(waited) }()
	select {
	case <-waited:
	case <-time.After(5 * time.Second):
	}
	return 0
}
