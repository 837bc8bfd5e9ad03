package checks

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"time"

	"filippo.io/age"

	"github.com/wopr-network/opsd/internal/artifact"
	"github.com/wopr-network/opsd/internal/layout"
	"github.com/wopr-network/opsd/internal/prefixlock"
	"github.com/wopr-network/opsd/internal/restore"
	"github.com/wopr-network/opsd/internal/storage"
	"github.com/wopr-network/opsd/jobs"
)

// NodeDrillConfig configures a NodeDrill.
type NodeDrillConfig struct {
	// FromNode is the node whose backups are drilled (its containers under nightly/{node}/).
	FromNode string
	// Sample is how many containers are restored into the sandbox (default 3; 0 or more than
	// the node has: all).
	Sample int
	// Parallel is how many containers a real node restore would run at once (the projection
	// divides by it; default 4, as `opsd restore node`).
	Parallel int
	// Probe: a restored container that ran before must keep running this long (default 5s).
	Probe      time.Duration
	Identities []age.Identity
	// RTOTarget is the whole-node objective (the runbook's "1-2 h": default 2h).
	RTOTarget       time.Duration
	FailOnRTOBreach bool
	TempDir         string
	Locks           *prefixlock.Locks
	Layout          *layout.Layout
}

// NodeDrill is the `node_drill` kind: it restores a sample of a node's tenant containers into a
// sandbox on this node (renamed, no network, no mounts, never with the tenant's ports), exactly
// as `opsd restore node` would (verified download, import, create from the captured spec, start,
// probe), removes them, and projects the whole node's restore time from the measured
// per-container times and the node's total backup size.
type NodeDrill struct {
	name   string
	cfg    NodeDrillConfig
	store  storage.Store
	engine restore.RecreateEngine
}

// NewNodeDrill returns the drill.
func NewNodeDrill(name string, cfg NodeDrillConfig, engine restore.RecreateEngine, store storage.Store) *NodeDrill {
	if cfg.Sample == 0 {
		cfg.Sample = 3
	}
	if cfg.Parallel < 1 {
		cfg.Parallel = 4
	}
	if cfg.Probe == 0 {
		cfg.Probe = 5 * time.Second
	}
	if cfg.RTOTarget == 0 {
		cfg.RTOTarget = 2 * time.Hour
	}
	if cfg.Locks == nil {
		cfg.Locks = prefixlock.New()
	}
	if cfg.Layout == nil {
		cfg.Layout = layout.Default()
	}
	return &NodeDrill{name: name, cfg: cfg, store: store, engine: engine}
}

// Name returns the job's name.
func (d *NodeDrill) Name() string { return d.name }

// Kind returns "node_drill".
func (d *NodeDrill) Kind() string { return "node_drill" }

// IsDrill marks a restore drill (jobs.Drill).
func (d *NodeDrill) IsDrill() {}

// Run performs the drill.
func (d *NodeDrill) Run(ctx context.Context) (jobs.Result, error) {
	started := time.Now()
	prefix := d.cfg.Layout.Root(layout.Nightly)
	release, err := d.cfg.Locks.Acquire(ctx, prefix, false, "drill "+d.name)
	if err != nil {
		return jobs.Result{}, err
	}
	defer release()
	cands, err := restore.NodeCandidates(ctx, d.store, d.cfg.Layout, d.cfg.FromNode)
	if err != nil {
		return jobs.Result{}, fmt.Errorf("drill %s: %w", d.name, err)
	}
	if len(cands) == 0 {
		return jobs.Result{}, fmt.Errorf("drill %s: node %s has no container backups with a manifest", d.name, d.cfg.FromNode)
	}
	names := make([]string, 0, len(cands))
	var total int64
	for n, k := range cands {
		names = append(names, n)
		if m, err := artifact.ReadManifest(ctx, d.store, k); err == nil {
			total += m.Size
		}
	}
	sort.Strings(names)
	if d.cfg.Sample > 0 && d.cfg.Sample < len(names) {
		rand.Shuffle(len(names), func(i, j int) { names[i], names[j] = names[j], names[i] })
		names = names[:d.cfg.Sample]
		sort.Strings(names)
	}
	results := make([]restore.RecreateResult, len(names))
	for i, n := range names {
		sandbox := fmt.Sprintf("opsd-drill-%s-%d", strings.ToLower(n), time.Now().UnixNano())
		results[i] = restore.Recreate(ctx, restore.RecreateOptions{Store: d.store, Engine: d.engine, Key: cands[n], Name: n, Identities: d.cfg.Identities,
			TempDir: d.cfg.TempDir, Probe: d.cfg.Probe, Sandbox: sandbox})
		if results[i].Name == "" {
			results[i].Name = n
		}
	}
	var sampledBytes int64
	var sampledSeconds float64
	targets := make([]jobs.TargetResult, len(results))
	passed, failed := 0, 0
	var text strings.Builder
	fmt.Fprintf(&text, "Node restore drill (%s, %d of %d containers in a sandbox)\n", d.cfg.FromNode, len(results), len(cands))
	for i, r := range results {
		t := jobs.TargetResult{Name: r.Name, Key: r.Key, Bytes: r.Bytes, StatusKind: "drill", Duration: time.Duration(r.Seconds * float64(time.Second)), Status: jobs.TargetOK}
		for _, p := range restore.RecreatePhases {
			if s, ok := r.Phases[p]; ok {
				t.Phases = append(t.Phases, jobs.Phase{Name: p, Duration: time.Duration(s * float64(time.Second))})
			}
		}
		if r.Outcome == "failed" {
			t.Status, t.Err = jobs.TargetFailed, fmt.Errorf("%s", r.Error)
			failed++
			fmt.Fprintf(&text, "FAIL  %s — %s\n", r.Name, r.Error)
		} else {
			passed++
			sampledBytes += r.Bytes
			sampledSeconds += r.Seconds
			fmt.Fprintf(&text, "PASS  %s — %s downloaded, verified, imported, created from its spec and started in %s\n", r.Name, jobs.HumanBytes(r.Bytes), seconds(t.Duration))
		}
		targets[i] = t
	}
	// The projection: the sample's seconds per byte, applied to the node's total size, spread
	// over the parallel restores a real `opsd restore node` runs.
	var projected time.Duration
	if sampledBytes > 0 {
		projected = time.Duration(float64(total) / float64(sampledBytes) * sampledSeconds / float64(d.cfg.Parallel) * float64(time.Second))
	}
	fmt.Fprintf(&text, "Result: %d passed, %d failed, 0 skipped\n", passed, failed)
	fmt.Fprintf(&text, "RTO (drill time): %s\n", seconds(time.Since(started)))
	fmt.Fprintf(&text, "Projected node RTO: %s for %d containers (%s) at %d in parallel; objective %s\n",
		seconds(projected), len(cands), jobs.HumanBytes(total), d.cfg.Parallel, seconds(d.cfg.RTOTarget))
	breach := projected > d.cfg.RTOTarget
	if breach {
		fmt.Fprintf(&text, "WARN  projected node restore %s exceeds the objective %s\n", seconds(projected), seconds(d.cfg.RTOTarget))
	}
	ok := failed == 0 && sampledBytes > 0 && !(breach && d.cfg.FailOnRTOBreach)
	body, _ := json.MarshalIndent(map[string]any{"drill": d.name, "node": d.cfg.FromNode, "startedAt": started.UTC(), "containers": results,
		"nodeContainers": len(cands), "nodeBytes": total, "parallel": d.cfg.Parallel, "projectedRtoSeconds": projected.Seconds(),
		"rtoTargetSeconds": d.cfg.RTOTarget.Seconds(), "passed": ok}, "", "  ")
	res := jobs.Result{Targets: targets, Report: text.String(), ReportJSON: body,
		Drill:   &jobs.DrillStats{RTO: projected, RTOTarget: d.cfg.RTOTarget, Passed: ok},
		Summary: fmt.Sprintf("%d passed, %d failed, projected node RTO %s", passed, failed, seconds(projected))}
	switch {
	case failed > 0:
		return res, res.TargetsError("containers")
	case breach && d.cfg.FailOnRTOBreach:
		return res, fmt.Errorf("drill %s: projected node restore %s misses the objective %s", d.name, seconds(projected), seconds(d.cfg.RTOTarget))
	}
	return res, nil
}
