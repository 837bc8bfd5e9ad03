package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/wopr-network/opsd/alerts"
	"github.com/wopr-network/opsd/config"
	"github.com/wopr-network/opsd/internal/coord"
	"github.com/wopr-network/opsd/internal/httpapi"
	"github.com/wopr-network/opsd/internal/metrics"
	"github.com/wopr-network/opsd/jobs"
)

// coordinator adapts the PostgreSQL coordinator to the scheduler's interface.
type coordinator struct{ p *coord.Postgres }

func (c coordinator) Claim(ctx context.Context, job string, at time.Time) (bool, error) {
	ok, err := c.p.Claim(ctx, job, at)
	return ok, mapCoordErr(err)
}

func (c coordinator) Finish(ctx context.Context, job string, at time.Time, outcome string) error {
	return mapCoordErr(c.p.Finish(ctx, job, at, outcome))
}

func (c coordinator) Release(ctx context.Context, job string, at time.Time) error {
	return mapCoordErr(c.p.Release(ctx, job, at))
}

func (c coordinator) TryLock(ctx context.Context, key string) (jobs.Lease, error) {
	l, err := c.p.TryLock(ctx, key)
	if err != nil {
		return nil, mapCoordErr(err)
	}
	return l, nil
}

func mapCoordErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, coord.ErrHeld):
		return fmt.Errorf("%w: %w", jobs.ErrHeldElsewhere, err)
	case errors.Is(err, coord.ErrUnavailable):
		return fmt.Errorf("%w: %w", jobs.ErrCoordinationDown, err)
	}
	return err
}

// openCoordination connects to the coordination database when one is configured. An
// unreachable database is not fatal: opsd starts, platform-scoped jobs are skipped (counted) and
// /health says degraded until it answers again.
func (m *Main) openCoordination(ctx context.Context, cfg *config.Config) error {
	if !cfg.Coordination.Enabled() {
		return nil
	}
	p, err := coord.Open(ctx, coord.Options{DSN: cfg.Coordination.Postgres.DSN.Value(), Schema: cfg.Coordination.Postgres.Schema, Node: cfg.NodeID})
	if p == nil {
		return err
	}
	if err != nil {
		m.log.Error().Err(err).Msg("coordination database unavailable at start: platform-scoped jobs wait for it")
	}
	m.coord = p
	m.fleet = metrics.NewFleet(m.reg)
	m.sched.Coord = coordinator{p}
	m.http.Handle("GET /api/fleet", m.http.Admin(m.fleetView))
	return nil
}

// heartbeats records this node in the coordination database every interval and refreshes the
// fleet metrics from what every node recorded.
func (m *Main) heartbeats(ctx context.Context) {
	if m.coord == nil {
		return
	}
	m.bg.Add(1)
	go func() {
		defer m.bg.Done()
		for {
			m.heartbeat(ctx)
			select {
			case <-ctx.Done():
				return
			case <-time.After(m.cfg().Coordination.HeartbeatInterval.D()):
			}
		}
	}()
}

func (m *Main) heartbeat(ctx context.Context) {
	cfg := m.cfg()
	info := coord.NodeInfo{Node: cfg.NodeID, Version: version, LastSuccess: map[string]time.Time{}, BacksUpContainers: m.hasContainerJobs()}
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
	err := m.coord.Heartbeat(ctx, info)
	if err != nil {
		m.log.Warn().Err(err).Msg("heartbeat to the coordination database failed")
	}
	nodes, nerr := m.coord.Nodes(ctx)
	up := 0.0
	if err == nil && nerr == nil {
		up = 1
		if m.problems.Clear("coordination") {
			m.log.Info().Msg("the coordination database answers again: platform-scoped jobs run")
		}
	} else {
		m.problems.Set("coordination", "coordination database unavailable: platform-scoped jobs are skipped until it answers")
	}
	m.fleet.Up.Set(up)
	if nerr != nil {
		return
	}
	lost := map[string]bool{}
	for _, n := range lostNodes(nodes, cfg.Coordination.NodeLostAfter.D()) {
		lost[n] = true
	}
	m.fleet.LastSeen.Reset()
	for _, n := range nodes {
		m.fleet.LastSeen.WithLabelValues(n.Node).Set(float64(n.LastSeen.UnixMilli()) / 1000)
	}
	m.fleet.Nodes.WithLabelValues("lost").Set(float64(len(lost)))
	m.fleet.Nodes.WithLabelValues("alive").Set(float64(len(nodes) - len(lost)))
}

// fleetView serves GET /api/fleet: every node with its last heartbeat, whether it is lost, and
// its backup freshness (each job's last success).
func (m *Main) fleetView(w http.ResponseWriter, r *http.Request) {
	nodes, err := m.coord.Nodes(r.Context())
	if err != nil {
		httpapi.WriteError(w, http.StatusServiceUnavailable, "coordination database unavailable")
		return
	}
	after := m.cfg().Coordination.NodeLostAfter.D()
	lost := map[string]bool{}
	for _, n := range lostNodes(nodes, after) {
		lost[n] = true
	}
	type node struct {
		coord.NodeInfo
		Lost           bool    `json:"lost"`
		SecondsSeenAgo float64 `json:"secondsSinceHeartbeat"`
	}
	out := []node{}
	active := 0
	for _, n := range nodes {
		out = append(out, node{NodeInfo: n, Lost: lost[n.Node], SecondsSeenAgo: time.Since(n.LastSeen).Seconds()})
		if !lost[n.Node] {
			active += n.ActiveBots
		}
	}
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{"nodes": out, "count": len(out), "lost": len(lost), "activeBots": active, "nodeLostAfterSeconds": after.Seconds()})
}

// fleetActiveBots is the whole fleet's running tenant containers (alive nodes' heartbeats).
func (m *Main) fleetActiveBots(ctx context.Context) (int, bool) {
	if m.coord == nil {
		return 0, false
	}
	nodes, err := m.coord.Nodes(ctx)
	if err != nil {
		return 0, false
	}
	lost := map[string]bool{}
	for _, n := range lostNodes(nodes, m.cfg().Coordination.NodeLostAfter.D()) {
		lost[n] = true
	}
	active := 0
	for _, n := range nodes {
		if !lost[n.Node] {
			active += n.ActiveBots
		}
	}
	return active, true
}

func lostNodes(nodes []coord.NodeInfo, after time.Duration) []string {
	return alerts.LostNodes(nodes, time.Now(), after)
}

// nodeLostRule is the built-in node-lost alert.
func (m *Main) nodeLostRule() alerts.Spec {
	return alerts.Spec{Rule: &alerts.NodeLost{RuleName: "node-lost", Nodes: m.coord.Nodes,
		LostAfter: func() time.Duration { return m.cfg().Coordination.NodeLostAfter.D() }}}
}

// cliPlatformLock takes a platform-scoped job's fleet-wide lock for a CLI run (a no-op without
// coordination): a clear message and exit 1 when the job runs on another node or the
// coordination database cannot be reached (a platform job never runs uncoordinated).
func cliPlatformLock(ctx context.Context, cfg *config.Config, jc config.Job, stderr io.Writer) (func(), int) {
	if !cfg.Coordination.Enabled() || cfg.Scope(jc) != jobs.ScopePlatform {
		return func() {}, 0
	}
	p, err := coord.Open(ctx, coord.Options{DSN: cfg.Coordination.Postgres.DSN.Value(), Schema: cfg.Coordination.Postgres.Schema, Node: cfg.NodeID})
	if err != nil {
		if p != nil {
			p.Close()
		}
		fmt.Fprintf(stderr, "opsd: %s is a platform job and the coordination database cannot be reached: %v\n", jc.Name, err)
		return nil, 1
	}
	lease, err := p.TryLock(ctx, "job:"+jc.Name)
	if err != nil {
		p.Close()
		if errors.Is(err, coord.ErrHeld) {
			fmt.Fprintf(stderr, "opsd: %s is running on another node right now (platform job, fleet-wide lock held); try again when it finishes\n", jc.Name)
		} else {
			fmt.Fprintf(stderr, "opsd: %s: %v\n", jc.Name, err)
		}
		return nil, 1
	}
	return func() { lease.Release(); p.Close() }, 0
}
