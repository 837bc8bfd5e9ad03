package main

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/wopr-network/opsd/alerts"
	"github.com/wopr-network/opsd/internal/artifact"
	"github.com/wopr-network/opsd/internal/httpapi"
	"github.com/wopr-network/opsd/internal/layout"
	"github.com/wopr-network/opsd/internal/restore"
)

// snapshots lists a target's stored backups (artifacts with manifests) of every kind the key
// layout knows: nightly and hot exports, directory snapshots, on-demand snapshots, platform sets.
func (m *Main) snapshots(ctx context.Context, target string) ([]httpapi.Snapshot, error) {
	if strings.ContainsAny(target, "/\\") || target == "" || target == "." || target == ".." {
		return nil, nil
	}
	keys, err := keyLayout(m.cfg())
	if err != nil {
		return nil, err
	}
	node := m.cfg().NodeID
	if b, err := m.state.GetBackup(ctx, target, time.Now(), time.Hour); err == nil && b.NodeID != "" {
		node = b.NodeID
	}
	list, err := keys.Artifacts(ctx, m.objStore(), layout.Fields{Node: node, Target: target},
		layout.Nightly, layout.Hot, layout.Snapshot, layout.OnDemand, layout.SQLite)
	if err != nil {
		return nil, err
	}
	var out []httpapi.Snapshot
	for _, a := range list {
		date := a.Object.ModTime.UTC().Format(time.RFC3339)
		if t, err := layout.ParseDate(a.Date); err == nil {
			date = t.Format("2006-01-02")
		}
		out = append(out, httpapi.Snapshot{Path: a.Key, Date: date, SizeMB: float64(a.Object.Size) / (1024 * 1024)})
	}
	sort.Slice(out, func(i, j int) bool {
		return out[i].Date > out[j].Date || (out[i].Date == out[j].Date && out[i].Path > out[j].Path)
	})
	return out, nil
}

// adminHealth is the platform's /admin/health: gateway, fleet and billing figures when their
// sources are configured (null otherwise), and the alerts.
func (m *Main) adminHealth(ctx context.Context) any {
	cfg := m.cfg()
	now := time.Now()
	out := map[string]any{"timestamp": now.UTC().Format(time.RFC3339), "gateway": nil, "fleet": nil, "billing": nil}
	if cfg.Alerts.PostgresDSN != "" {
		m.postgresHealth(ctx, cfg, now, out)
	}
	if cfg.Alerts.GatewayDB != "" && cfg.Alerts.PostgresDSN == "" {
		if g, err := alerts.GatewaySummary(ctx, cfg.Alerts.GatewayDB, now); err == nil {
			out["gateway"] = g
		} else {
			m.log.Warn().Err(err).Msg("admin health: gateway figures")
		}
	}
	if active, ok := m.fleetActiveBots(ctx); ok {
		out["fleet"] = map[string]any{"activeBots": active} // the whole fleet, from the heartbeats
	} else if m.hasContainerJobs() {
		if list, err := m.docker.List(ctx, "tenant_", nil); err == nil {
			active := 0
			for _, c := range list {
				if c.State == "running" {
					active++
				}
			}
			out["fleet"] = map[string]any{"activeBots": active}
		}
	}
	if cfg.Alerts.CreditsDB != "" && cfg.Alerts.PostgresDSN == "" {
		if v, err := alerts.CreditsConsumed(ctx, cfg.Alerts.CreditsDB, cfg.Alerts.CreditsQuery, now); err == nil {
			out["billing"] = map[string]any{"creditsConsumed24h": v}
		} else {
			m.log.Warn().Err(err).Msg("admin health: billing figures")
		}
	}
	type alert struct {
		Name    string `json:"name"`
		Firing  bool   `json:"firing"`
		Message string `json:"message"`
	}
	alertsOut := []alert{}
	for _, s := range m.evaluator.Statuses() {
		alertsOut = append(alertsOut, alert{s.Name, s.Firing, s.Message})
	}
	out["alerts"] = alertsOut
	return out
}

func (m *Main) hasContainerJobs() bool {
	for _, j := range m.cfg().Jobs {
		if j.ContainerExport != nil {
			return true
		}
	}
	return false
}

// containerRestore builds the run of an admin container restore: over the existing container,
// or recreated from the archive and its spec when it does not exist here (a lost node's tenant).
// Tests replace it to hold a restore open.
var containerRestore = func(m *Main, keys *layout.Layout, containerID, key string) *restore.Run {
	return restore.ContainerRun(m.state, m.docker, restore.ContainerOptions{Store: m.objStore(), Layout: keys, Name: containerID, Key: key, Node: m.cfg().NodeID}, "api")
}

// startRestore validates an admin restore request and starts the container restore through the
// Runner; the id lets GET /api/admin/restores/{id} follow it and DELETE cancel it.
func (m *Main) startRestore(ctx context.Context, containerID, key, targetNode string) (int64, error) {
	cfg := m.cfg()
	if targetNode != "" && targetNode != cfg.NodeID {
		return 0, fmt.Errorf("%w: this is node %s; send the request to the opsd on %s", httpapi.ErrBadRequest, cfg.NodeID, targetNode)
	}
	keys, err := keyLayout(cfg)
	if err != nil {
		return 0, err
	}
	if !keys.BelongsTo(key, containerID) {
		return 0, httpapi.ErrForbidden
	}
	if _, err := artifact.ReadManifest(ctx, m.objStore(), key); err != nil {
		return 0, fmt.Errorf("%w: %s has no manifest: not a backup", httpapi.ErrNotFound, key)
	}
	release, err := m.locks.TryAcquire(strings.SplitN(key, "/", 2)[0]+"/", false, "restore of "+containerID)
	if err != nil {
		return 0, fmt.Errorf("%w: %v", httpapi.ErrConflict, err)
	}
	// One restore of a container at a time: a second would stop and rename the container the
	// first is replacing.
	return m.startRestoreRun(ctx, containerRestore(m, keys, containerID, key), release)
}
