package main

import (
	"context"
	"path/filepath"
	"time"

	"github.com/rs/zerolog"

	"github.com/wopr-network/opsd/alerts"
	"github.com/wopr-network/opsd/config"
	"github.com/wopr-network/opsd/internal/coord"
	"github.com/wopr-network/opsd/internal/metrics"
	"github.com/wopr-network/opsd/internal/prefixlock"
	"github.com/wopr-network/opsd/jobs"
)

// coordOptions are the coordination database's connection options for this node.
func coordOptions(cfg *config.Config) coord.Options {
	return coord.Options{DSN: cfg.Coordination.Postgres.DSN.Value(), Schema: cfg.Coordination.Postgres.Schema, Node: cfg.NodeID}
}

// newLocks returns the prefix locks of a command or the daemon: flock files in the state
// directory (the CLI and the daemon on one host), and with coordination also advisory locks in
// the coordination database (across hosts).
func newLocks(cfg *config.Config, log zerolog.Logger) *prefixlock.Locks {
	files := prefixlock.Files(filepath.Dir(cfg.State.Path))
	if !cfg.Coordination.Enabled() {
		return prefixlock.With(files)
	}
	o := coordOptions(cfg)
	o.NoMigrate, o.MaxConns = true, 16
	p, err := coord.Open(context.Background(), o) // connects on first use
	if err != nil {
		log.Error().Err(err).Msg("prefix locks across hosts unavailable; only this host's processes are kept apart")
		return prefixlock.With(files)
	}
	l := prefixlock.With(files, coord.PrefixLocks{P: p, Degraded: func(err error) {
		log.Warn().Err(err).Msg("coordination database unreachable: a reading hold (drill, verification, restore) goes ahead with this host's lock only")
	}})
	l.OnClose(p.Close)
	return l
}

// openCoordination connects to the coordination database when one is configured. An
// unreachable database is not fatal: opsd starts, platform-scoped jobs are skipped (counted) and
// /health says degraded until it answers.
func (m *Main) openCoordination(ctx context.Context, cfg *config.Config) error {
	if !cfg.Coordination.Enabled() {
		return nil
	}
	p, err := coord.Open(ctx, coordOptions(cfg))
	if p == nil {
		return err
	}
	if err != nil {
		m.log.Error().Err(err).Msg("coordination database unavailable at start: platform-scoped jobs wait for it")
	}
	m.coord = p
	m.sched.Coord = jobs.PostgresCoordinator(p)
	m.fleet = &coord.Fleet{P: p, Metrics: metrics.NewFleet(m.reg), Log: m.log, Problems: m.problems,
		Interval:  func() time.Duration { return m.cfg().Coordination.HeartbeatInterval.D() },
		LostAfter: func() time.Duration { return m.cfg().Coordination.NodeLostAfter.D() },
		Info:      m.nodeInfo,
		Retry:     m.sched.RetryLost,
	}
	m.http.HandleFleet(m.fleet)
	return nil
}

// heartbeats runs the fleet's heartbeats in the background.
func (m *Main) heartbeats(ctx context.Context) {
	if m.fleet == nil {
		return
	}
	m.bg.Add(1)
	go func() {
		defer m.bg.Done()
		m.fleet.Run(ctx)
	}()
}

// nodeInfo is this node's heartbeat: version, each job's last success, the platform jobs'
// schedules, the tenant containers it backs up and how many run.
func (m *Main) nodeInfo(ctx context.Context) coord.NodeInfo {
	cfg := m.cfg()
	info := coord.NodeInfo{Node: cfg.NodeID, Version: version, LastSuccess: map[string]time.Time{}, BacksUpContainers: cfg.HasContainerExports(),
		Schedules: cfg.PlatformSchedules()}
	for _, j := range cfg.Jobs {
		if r, err := m.state.LastSuccess(ctx, j.Name); err == nil && r.FinishedAt != nil {
			info.LastSuccess[j.Name] = *r.FinishedAt
		}
	}
	if info.BacksUpContainers && m.docker != nil {
		if list, err := m.docker.List(ctx, "tenant_", nil); err == nil {
			for _, c := range list {
				info.Containers = append(info.Containers, c.Name)
				if c.State == "running" {
					info.ActiveBots++
				}
			}
		}
	}
	return info
}

// withNodeLost adds the built-in node-lost alert to the config's alerts when this node takes
// part in fleet coordination.
func (m *Main) withNodeLost(specs []alerts.Spec) []alerts.Spec {
	if m.fleet == nil {
		return specs
	}
	return append(specs, alerts.NodeLostSpec(m.fleet, func() time.Duration { return m.cfg().Coordination.NodeLostAfter.D() }))
}
