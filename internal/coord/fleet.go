package coord

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/wopr-network/opsd/internal/metrics"
)

// NodeInfo is one node's heartbeat.
type NodeInfo struct {
	Node     string    `json:"node"`
	Version  string    `json:"version"`
	LastSeen time.Time `json:"lastSeen"`
	// Containers are the tenant containers the node backs up.
	Containers []string `json:"containers"`
	// LastSuccess is each job's last success.
	LastSuccess map[string]time.Time `json:"lastSuccess"`
	// BacksUpContainers: the node runs container exports (node-lost applies to it).
	BacksUpContainers bool `json:"backsUpContainers"`
	// ActiveBots is how many of its tenant containers run.
	ActiveBots int `json:"activeBots"`
	// Host and Instance are the host name and a random id of the process that sent the
	// heartbeat: two live processes heartbeating as one node (a cloned VM image) are told apart.
	Host     string `json:"host,omitempty"`
	Instance string `json:"instance,omitempty"`
	// Schedules are the node's platform-scoped jobs' schedules (a cron schedule with its time
	// zone): nodes that disagree claim different ticks, so the job runs on both schedules.
	Schedules map[string]string `json:"platformSchedules,omitempty"`
}

// LostTick is an open claim whose job lock no session holds: a run its node lost.
type LostTick struct {
	Job         string
	ScheduledAt time.Time
	Attempt     int
}

// Beat is what one heartbeat returns: every node (this one included) and the lost ticks of
// other nodes.
type Beat struct {
	Nodes []NodeInfo
	Lost  []LostTick
	// Duplicate is another live process heartbeating under this node id (it wrote the node's
	// row since this process's previous heartbeat); nil when there is none.
	Duplicate *NodeInfo
}

// Heartbeat records this node as alive with what it backs up and, in the same statement, reads
// every other node's heartbeat and the open claims whose job lock no session holds (one round
// trip per heartbeat: the idle load of a node). Ages are measured on the database's clock.
func (p *Postgres) Heartbeat(ctx context.Context, n NodeInfo) (Beat, error) {
	if err := p.ensure(ctx); err != nil {
		return Beat{}, err
	}
	n.Node, n.Host, n.Instance = p.o.Node, p.host, p.instance
	info, err := json.Marshal(n)
	if err != nil {
		return Beat{}, fmt.Errorf("heartbeat: %w", err)
	}
	s := p.o.Schema
	ctx, cancel := context.WithTimeout(ctx, p.o.QueryTimeout)
	defer cancel()
	// Kinds of rows: 0 another node, 1 a lost tick, 2 this node's row as it was before this
	// heartbeat (the statement's snapshot does not see its own upsert).
	rows, err := p.pool.Query(ctx, `WITH hb AS (
			INSERT INTO `+s+`.nodes (node, version, last_seen, info) VALUES ($1, $2, now(), $3)
			ON CONFLICT (node) DO UPDATE SET version = excluded.version, last_seen = excluded.last_seen, info = excluded.info
			RETURNING 1)
		SELECT 0, n.node, n.last_seen, n.info, 0, now() FROM `+s+`.nodes n WHERE n.node <> $1
		UNION ALL
		SELECT 2, n.node, n.last_seen, n.info, 0, now() FROM `+s+`.nodes n WHERE n.node = $1
		UNION ALL
		SELECT 1, c.job, c.scheduled_at, NULL, c.attempt, now() FROM `+s+`.claims c
		WHERE c.finished_at IS NULL AND c.node <> $1 AND c.lock_key IS NOT NULL AND NOT EXISTS (
			SELECT 1 FROM pg_locks l WHERE l.locktype = 'advisory' AND l.objsubid = 1
			AND l.classid = ((c.lock_key >> 32) & 4294967295)::oid AND l.objid = (c.lock_key & 4294967295)::oid
			AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()))`,
		p.o.Node, n.Version, info)
	if err != nil {
		p.setOK(isPgError(err))
		return Beat{}, fmt.Errorf("heartbeat: %w: %w", ErrUnavailable, redact(err))
	}
	var b Beat
	dbNow := time.Time{}
	now := time.Now()
	var prev *NodeInfo
	for rows.Next() {
		var kind int
		var name string
		var at time.Time
		var raw []byte
		var attempt int
		if err := rows.Scan(&kind, &name, &at, &raw, &attempt, &dbNow); err != nil {
			rows.Close()
			return Beat{}, fmt.Errorf("heartbeat: %w", err)
		}
		if kind == 1 {
			b.Lost = append(b.Lost, LostTick{Job: name, ScheduledAt: at, Attempt: attempt})
			continue
		}
		var o NodeInfo
		json.Unmarshal(raw, &o) // the row's own columns below are authoritative
		o.Node = name
		o.LastSeen = now.Add(-dbNow.Sub(at))
		if kind == 2 {
			prev = &o
			continue
		}
		b.Nodes = append(b.Nodes, o)
	}
	if err := rows.Err(); err != nil {
		p.setOK(isPgError(err))
		return Beat{}, fmt.Errorf("heartbeat: %w: %w", ErrUnavailable, redact(err))
	}
	p.setOK(true)
	p.mu.Lock()
	// Another process wrote this node's row since this one's previous heartbeat. Before the
	// first heartbeat the row may be this node's previous process (a restart): not a duplicate.
	if prev != nil && p.beaten && prev.Instance != p.instance {
		b.Duplicate = prev
	}
	p.beaten = true
	p.mu.Unlock()
	n.LastSeen = now
	b.Nodes = append(b.Nodes, n)
	sort.Slice(b.Nodes, func(i, j int) bool { return b.Nodes[i].Node < b.Nodes[j].Node })
	return b, nil
}

// Nodes returns every node's last heartbeat (LastSeen from the database's clock).
func (p *Postgres) Nodes(ctx context.Context) ([]NodeInfo, error) {
	if err := p.ensure(ctx); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, p.o.QueryTimeout)
	defer cancel()
	rows, err := p.pool.Query(ctx, `SELECT node, last_seen, info, now() FROM `+p.o.Schema+`.nodes ORDER BY node`)
	if err != nil {
		p.setOK(isPgError(err))
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, redact(err))
	}
	var out []NodeInfo
	var dbNow time.Time
	for rows.Next() {
		var n NodeInfo
		var seen time.Time
		var info []byte
		if err := rows.Scan(&n.Node, &seen, &info, &dbNow); err != nil {
			rows.Close()
			return nil, err
		}
		json.Unmarshal(info, &n)
		// Ages are measured on the database's clock, so node clock skew does not matter.
		n.LastSeen = time.Now().Add(-dbNow.Sub(seen))
		out = append(out, n)
	}
	p.setOK(rows.Err() == nil)
	return out, rows.Err()
}

// LostNodes names the nodes that back up containers and were last seen more than after ago.
func LostNodes(nodes []NodeInfo, now time.Time, after time.Duration) []string {
	var lost []string
	for _, n := range nodes {
		if n.BacksUpContainers && now.Sub(n.LastSeen) > after {
			lost = append(lost, n.Node)
		}
	}
	sort.Strings(lost)
	return lost
}

// Problems is where the fleet reports that coordination is down (/health).
type Problems interface {
	Set(name, msg string) bool
	Clear(name string) bool
}

// Fleet runs this node's heartbeats and keeps the fleet view they return: the metrics, the
// node-lost alert's input and the lost ticks to retry.
type Fleet struct {
	P       *Postgres
	Metrics *metrics.Fleet
	Log     zerolog.Logger
	// Problems gets "coordination" while the database does not answer (nil: none).
	Problems Problems
	// Interval and LostAfter are read at every heartbeat (the config may be reloaded).
	Interval  func() time.Duration
	LostAfter func() time.Duration
	// Info describes this node for its heartbeat.
	Info func(ctx context.Context) NodeInfo
	// Retry is called for a lost tick of another node once it has been lost for longer than
	// a lease check could take (its node has surely stopped the run); it may be called again on
	// later heartbeats while the tick stays open.
	Retry func(job string, scheduled time.Time)

	mu       sync.Mutex
	last     Beat
	lastErr  error
	beaten   bool
	lostSeen map[LostTick]time.Time
	dupSeen  time.Time       // when another process last heartbeated under this node id
	mismatch map[string]bool // platform jobs with a schedule_mismatch problem
}

// Run heartbeats every Interval until ctx ends.
func (f *Fleet) Run(ctx context.Context) {
	for {
		f.Beat(ctx)
		select {
		case <-ctx.Done():
			return
		case <-time.After(f.Interval()):
		}
	}
}

// Beat sends one heartbeat and refreshes the fleet view, the metrics and /health.
func (f *Fleet) Beat(ctx context.Context) {
	var info NodeInfo
	if f.Info != nil {
		info = f.Info(ctx)
	}
	b, err := f.P.Heartbeat(ctx, info)
	f.mu.Lock()
	f.last, f.lastErr, f.beaten = b, err, true
	f.mu.Unlock()
	up := 0.0
	if err != nil {
		f.Log.Warn().Err(err).Msg("heartbeat to the coordination database failed")
		if f.Problems != nil {
			f.Problems.Set("coordination", "coordination database unavailable: platform-scoped jobs are skipped until it answers")
		}
	} else {
		up = 1
		if f.Problems != nil && f.Problems.Clear("coordination") {
			f.Log.Info().Msg("the coordination database answers again: platform-scoped jobs run")
		}
	}
	if f.Metrics != nil {
		f.Metrics.Up.Set(up)
	}
	if err != nil {
		return
	}
	f.duplicate(b.Duplicate)
	f.schedules(info, b.Nodes)
	f.retryLost(b.Lost)
	if f.Metrics == nil {
		return
	}
	lost := LostNodes(b.Nodes, time.Now(), f.LostAfter())
	f.Metrics.LastSeen.Reset()
	for _, n := range b.Nodes {
		f.Metrics.LastSeen.WithLabelValues(n.Node).Set(float64(n.LastSeen.UnixMilli()) / 1000)
	}
	f.Metrics.Nodes.WithLabelValues("lost").Set(float64(len(lost)))
	f.Metrics.Nodes.WithLabelValues("alive").Set(float64(len(b.Nodes) - len(lost)))
}

// duplicate puts "duplicate_node_id" on /health and logs an error while another live process
// heartbeats under this node's id (two hosts with one node_id, e.g. a cloned VM image), and
// clears it once none has for LostAfter. Platform jobs still run once per tick (their locks and
// claims do not depend on the node id), but the fleet sees one node for two hosts.
func (f *Fleet) duplicate(d *NodeInfo) {
	node := f.P.Node()
	now := time.Now()
	f.mu.Lock()
	if d != nil {
		f.dupSeen = now
	}
	seen := f.dupSeen
	f.mu.Unlock()
	if d != nil {
		msg := fmt.Sprintf("another opsd (host %q, instance %s) heartbeats as node %q too: give every host its own node_id (the fleet view shows one node for both, node-lost cannot tell when one of them stops, a platform tick lost by one is not retried by the other, and both write container exports under nightly/%s/)",
			d.Host, d.Instance, node, node)
		if f.Problems == nil || f.Problems.Set("duplicate_node_id", msg) {
			f.Log.Error().Str("node", node).Str("other_host", d.Host).Str("other_instance", d.Instance).Msg(msg)
		}
		return
	}
	if !seen.IsZero() && now.Sub(seen) > f.LostAfter() && f.Problems != nil && f.Problems.Clear("duplicate_node_id") {
		f.Log.Warn().Str("node", node).Msgf("no other opsd has heartbeated as node %q for %s: duplicate_node_id cleared", node, f.LostAfter())
	}
}

// schedules puts "schedule_mismatch:<job>" on /health while a live node (seen within
// LostAfter) configures one of this node's platform jobs with another schedule (a rollout in
// progress, or a different timezone): each node claims its own schedule's ticks, so the job
// runs on both. It clears when they agree.
func (f *Fleet) schedules(self NodeInfo, nodes []NodeInfo) {
	if f.Problems == nil {
		return
	}
	now, after := time.Now(), f.LostAfter()
	others := map[string][]string{}
	for _, n := range nodes {
		if n.Node == f.P.Node() || now.Sub(n.LastSeen) > after {
			continue
		}
		for job, sched := range n.Schedules {
			if mine, ok := self.Schedules[job]; ok && sched != mine {
				others[job] = append(others[job], fmt.Sprintf("%q on %s", sched, n.Node))
			}
		}
	}
	f.mu.Lock()
	prev := f.mismatch
	f.mismatch = map[string]bool{}
	for job := range others {
		f.mismatch[job] = true
	}
	f.mu.Unlock()
	for job, o := range others {
		sort.Strings(o)
		msg := fmt.Sprintf("platform job %s is scheduled %q here but %s: each node claims its own schedule's ticks, so the job runs on every schedule until the nodes agree", job, self.Schedules[job], strings.Join(o, ", "))
		if f.Problems.Set("schedule_mismatch:"+job, msg) {
			f.Log.Error().Str("job", job).Msg(msg)
		}
	}
	for job := range prev {
		if !f.mismatch[job] && f.Problems.Clear("schedule_mismatch:"+job) {
			f.Log.Info().Str("job", job).Msg("every live node schedules the platform job alike again")
		}
	}
}

// retryLost hands lost ticks to Retry once they have been seen lost for longer than a lease's
// session check takes: a node cut off from the database stops its run within that time, so the
// retry never overlaps it.
func (f *Fleet) retryLost(lost []LostTick) {
	grace := f.P.o.CheckInterval + f.P.o.LeaseTimeout
	now := time.Now()
	f.mu.Lock()
	seen := map[LostTick]time.Time{}
	var due []LostTick
	for _, t := range lost {
		first, ok := f.lostSeen[t]
		if !ok {
			first = now
		}
		seen[t] = first
		if now.Sub(first) > grace {
			due = append(due, t)
		}
	}
	f.lostSeen = seen
	f.mu.Unlock()
	for _, t := range due {
		if f.Retry != nil {
			f.Retry(t.Job, t.ScheduledAt)
		}
	}
}

// Nodes returns the nodes of the last heartbeat (no query: the node-lost alert and
// /admin/health read it), or that heartbeat's error; before the first heartbeat it reads them.
func (f *Fleet) Nodes(ctx context.Context) ([]NodeInfo, error) {
	f.mu.Lock()
	beaten, nodes, err := f.beaten, f.last.Nodes, f.lastErr
	f.mu.Unlock()
	if !beaten {
		return f.P.Nodes(ctx)
	}
	return nodes, err
}

// ActiveBots is the whole fleet's running tenant containers (alive nodes' last heartbeats).
func (f *Fleet) ActiveBots() (int, bool) {
	nodes, err := f.Nodes(context.Background())
	if err != nil {
		return 0, false
	}
	lost := map[string]bool{}
	for _, n := range LostNodes(nodes, time.Now(), f.LostAfter()) {
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

// ViewNode is one node of the fleet view.
type ViewNode struct {
	NodeInfo
	Lost           bool    `json:"lost"`
	SecondsSeenAgo float64 `json:"secondsSinceHeartbeat"`
}

// View is GET /api/fleet's body.
type View struct {
	Nodes                []ViewNode `json:"nodes"`
	Count                int        `json:"count"`
	Lost                 int        `json:"lost"`
	ActiveBots           int        `json:"activeBots"`
	NodeLostAfterSeconds float64    `json:"nodeLostAfterSeconds"`
}

// View reads every node now: its last heartbeat, whether it is lost, and its backup freshness
// (each job's last success).
func (f *Fleet) View(ctx context.Context) (View, error) {
	nodes, err := f.P.Nodes(ctx)
	if err != nil {
		return View{}, err
	}
	after := f.LostAfter()
	lost := map[string]bool{}
	for _, n := range LostNodes(nodes, time.Now(), after) {
		lost[n] = true
	}
	v := View{Nodes: []ViewNode{}, Count: len(nodes), Lost: len(lost), NodeLostAfterSeconds: after.Seconds()}
	for _, n := range nodes {
		v.Nodes = append(v.Nodes, ViewNode{NodeInfo: n, Lost: lost[n.Node], SecondsSeenAgo: time.Since(n.LastSeen).Seconds()})
		if !lost[n.Node] {
			v.ActiveBots += n.ActiveBots
		}
	}
	return v, nil
}
