package restore

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/wopr-network/opsd/internal/artifact"
	"github.com/wopr-network/opsd/internal/docker"
	"github.com/wopr-network/opsd/internal/layout"
	"github.com/wopr-network/opsd/internal/state"
	"github.com/wopr-network/opsd/internal/storage"
)

// DBRun is the run of a database restore of the set o.Date (the one the plan chose).
func DBRun(st *state.Store, o DBOptions, who string) *Run {
	if o.Layout == nil {
		o.Layout = layout.Default()
	}
	target := "platform"
	if len(o.Only) > 0 {
		target = strings.Join(o.Only, ",")
	}
	r := &Run{Kind: KindDB, Target: target, Key: o.Layout.SetPrefix(o.Date), RequestedBy: who, State: st}
	r.Do = func(ctx context.Context, t *Tracker) (Report, error) {
		o.Tracker, o.Progress = t, t.Progress
		res, err := RestoreDB(ctx, o)
		return Report{Downtime: res.Downtime, Summary: fmt.Sprintf("set %s: %d databases", res.Set, len(res.Databases))}, err
	}
	return r
}

// Engine is what every container restore needs from Docker (replace and recreate).
type Engine interface {
	ContainerEngine
	EnsureNetwork(ctx context.Context, name string, ns docker.NetworkSpec) (bool, error)
	EnsureVolume(ctx context.Context, vs docker.VolumeSpec) (bool, error)
}

// ContainerRun is the run of a container restore: over the existing container of that name
// (safety export, stop, swap, roll back on failure), or, when none exists on this engine (a lost
// node's tenant), recreated from the backup and the create spec captured at export time.
func ContainerRun(st *state.Store, e Engine, o ContainerOptions, who string) *Run {
	r := &Run{Kind: KindContainer, Target: o.Name, Key: o.Key, RequestedBy: who, State: st}
	r.Do = func(ctx context.Context, t *Tracker) (Report, error) {
		o.Engine, o.Tracker, o.Progress = e, t, t.Progress
		_, err := e.Inspect(ctx, o.Name, false)
		if err == nil {
			res, err := RestoreContainer(ctx, o)
			return Report{Downtime: res.Downtime, Summary: "replaced by " + shortID(res.NewID)}, err
		}
		if !docker.IsNotFound(err) {
			return Report{}, fmt.Errorf("restore %s: %w (nothing was changed)", o.Name, err)
		}
		t.Progress(fmt.Sprintf("%s does not exist on this node: recreating it from %s and its captured spec", o.Name, o.Key))
		res := Recreate(ctx, RecreateOptions{Store: o.Store, Engine: e, Key: o.Key, Name: o.Name, Identities: o.Identities, TempDir: o.TempDir, HostAccess: o.HostAccess, Probe: o.Probe, OnBytes: o.OnBytes})
		for _, w := range res.Warnings {
			t.Progress("note: " + w)
		}
		rep := Report{Bytes: res.Bytes, Summary: "recreated as " + shortID(res.ID)}
		rep.Phases = recreatePhases(res)
		if res.Outcome == "failed" {
			return rep, fmt.Errorf("restore %s: %s", o.Name, res.Error)
		}
		return rep, nil
	}
	return r
}

// recreatePhases lists a recreate's phases in their order.
func recreatePhases(res RecreateResult) []Phase {
	var out []Phase
	for _, p := range RecreatePhases {
		if s, ok := res.Phases[p]; ok {
			out = append(out, Phase{Name: p, Duration: time.Duration(s * float64(time.Second))})
		}
	}
	return out
}

// SnapshotRun is the run of a WOPR_HOME snapshot restore.
func SnapshotRun(st *state.Store, o SnapshotOptions, who string) *Run {
	r := &Run{Kind: KindSnapshot, Target: o.Instance, Key: o.Key, RequestedBy: who, State: st}
	r.Do = func(ctx context.Context, t *Tracker) (Report, error) {
		o.Tracker, o.Progress = t, t.Progress
		res, err := RestoreSnapshot(ctx, o)
		return Report{Summary: fmt.Sprintf("%d entries", res.Files)}, err
	}
	return r
}

// PostgresRun is the run of a PostgreSQL restore of the dump key (the one the plan chose;
// o.Date its set).
func PostgresRun(st *state.Store, o PostgresOptions, key, who string) *Run {
	r := &Run{Kind: KindPostgres, Target: o.DSN.Database(), Key: key, RequestedBy: who, State: st}
	r.Do = func(ctx context.Context, t *Tracker) (Report, error) {
		o.Tracker, o.Progress = t, t.Progress
		res, err := RestorePostgres(ctx, o)
		return Report{Downtime: res.Downtime, Summary: "restored into " + res.Restored}, err
	}
	return r
}

// NodeRunOptions configure a node restore run beyond NodeOptions.
type NodeRunOptions struct {
	NodeOptions
	// SnapshotBaseDir, when set, also restores the node's newest WOPR_HOME snapshots there.
	SnapshotBaseDir string
	// Node is this node's id (recorded in safety copies' manifests).
	Node string
}

// NodeRun is the run of a node restore (runbook Procedure 3): every tenant container the node
// backed up, recreated here; each container is a target of the run. Report.Detail is the
// NodeReport.
func NodeRun(st *state.Store, o NodeRunOptions, who string) (*Run, *NodeReport) {
	keys := o.Layout
	if keys == nil {
		keys = layout.Default()
	}
	out := &NodeReport{}
	r := &Run{Kind: KindNode, Target: o.FromNode, Key: keys.Root(layout.Nightly) + " (node " + o.FromNode + ")", RequestedBy: who, State: st}
	r.Do = func(ctx context.Context, t *Tracker) (Report, error) {
		started := time.Now()
		var total, done int64
		if cands, err := NodeCandidates(ctx, o.Store, keys, o.FromNode); err == nil {
			for _, k := range cands {
				if m, err := artifact.ReadManifest(ctx, o.Store, k); err == nil {
					total += m.Size
				}
			}
		}
		n := 0
		var lines []string
		no := o.NodeOptions
		no.Progress = func(c RecreateResult) {
			n++
			done += c.Bytes
			eta := ""
			if el := time.Since(started).Seconds(); done > 0 && total > done {
				eta = fmt.Sprintf(", ETA %s", time.Duration(float64(total-done)/(float64(done)/el)*float64(time.Second)).Round(time.Second))
			}
			line := fmt.Sprintf("[%d] %-8s %s (%s, %.1fs)  total %s of %s%s", n, c.Outcome, c.Name, mib(c.Bytes), c.Seconds, mib(done), mib(total), eta)
			if c.Error != "" {
				line += ": " + c.Error
			}
			lines = append(lines, c.Outcome+" "+c.Name)
			t.Progress(line)
		}
		t.Phase("containers")
		rep, err := RestoreNode(ctx, no)
		*out = rep
		report := Report{Bytes: rep.Bytes, RTO: time.Duration(rep.RTOSeconds * float64(time.Second))}
		for _, c := range rep.Containers {
			tr := TargetReport{Name: c.Name, Key: c.Key, Outcome: c.Outcome, Bytes: c.Bytes, Phases: recreatePhases(c), Duration: time.Duration(c.Seconds * float64(time.Second))}
			if c.Error != "" {
				tr.Err = errors.New(c.Error)
			}
			report.Targets = append(report.Targets, tr)
		}
		report.Summary = fmt.Sprintf("%d restored, %d skipped, %d failed in %.1fs; %s", rep.Restored, rep.Skipped, rep.Failed, rep.RTOSeconds, strings.Join(lines, "; "))
		if o.SnapshotBaseDir != "" {
			t.Phase("snapshots")
			if serr := nodeSnapshots(ctx, o, keys, t); serr != nil {
				err = errors.Join(err, serr)
			}
		}
		return report, err
	}
	return r, out
}

// nodeSnapshots restores the newest WOPR_HOME snapshot of every instance the node backed up.
func nodeSnapshots(ctx context.Context, o NodeRunOptions, keys *layout.Layout, t *Tracker) error {
	snaps, err := NodeArtifacts(ctx, o.Store, keys, o.FromNode, "snapshot")
	if err != nil {
		return err
	}
	names := make([]string, 0, len(snaps))
	for n := range snaps {
		names = append(names, n)
	}
	sort.Strings(names)
	var errs []error
	for _, inst := range names {
		if o.DryRun {
			t.Progress(fmt.Sprintf("planned  snapshot %s from %s into %s", inst, snaps[inst], o.SnapshotBaseDir))
			continue
		}
		_, err := RestoreSnapshot(ctx, SnapshotOptions{Store: o.Store, BaseDir: o.SnapshotBaseDir, Instance: inst, Key: snaps[inst], Node: o.Node, Identities: o.Identities,
			Progress: t.Progress, Tracker: t})
		if err != nil {
			errs = append(errs, fmt.Errorf("snapshot %s: %w", inst, err))
			t.Progress(fmt.Sprintf("failed   snapshot %s: %v", inst, err))
			continue
		}
		t.Progress(fmt.Sprintf("restored snapshot %s from %s", inst, snaps[inst]))
	}
	return errors.Join(errs...)
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// ResolveContainerKey picks the archive a container restore uses: key, the nightly of date,
// the newest hot backup (latest), or by default the newest verified archive node backed up;
// the archive must belong to the container.
func ResolveContainerKey(ctx context.Context, store storage.Store, keys *layout.Layout, node, name, key, date string, latest bool) (string, error) {
	var k string
	var err error
	if key != "" || date != "" || latest {
		k, err = ContainerKey(ctx, store, keys, node, name, key, date, latest)
	} else {
		k, err = NewestContainerKey(ctx, store, keys, node, name)
	}
	if err != nil {
		return "", err
	}
	if keys != nil && !keys.BelongsTo(k, name) {
		return "", fmt.Errorf("%s is not a backup of %s", k, name)
	}
	return k, nil
}
