package main

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/wopr-network/opsd/internal/artifact"
	"github.com/wopr-network/opsd/internal/httpapi"
	"github.com/wopr-network/opsd/internal/restore"
	"github.com/wopr-network/opsd/internal/state"
	"github.com/wopr-network/opsd/internal/storage"
)

var keyDateRe = regexp.MustCompile(`\d{8}`)

// snapshots lists a target's stored backups (artifacts with manifests) under the layouts opsd
// writes: nightly/{node}/{target}/, latest/{target}/, on-demand/{target}/, and platform sets.
func (m *Main) snapshots(ctx context.Context, target string) ([]httpapi.Snapshot, error) {
	if strings.ContainsAny(target, "/\\") || target == "" || target == "." || target == ".." {
		return nil, nil
	}
	node := m.cfg().NodeID
	if b, err := m.state.GetBackup(ctx, target, time.Now(), time.Hour); err == nil && b.NodeID != "" {
		node = b.NodeID
	}
	var out []httpapi.Snapshot
	for _, prefix := range []string{"nightly/" + node + "/" + target + "/", "latest/" + target + "/", "on-demand/" + target + "/"} {
		objs, err := storage.ListAll(ctx, m.objStore(), prefix)
		if err != nil {
			return nil, err
		}
		out = append(out, withManifests(objs, nil)...)
	}
	// Platform databases: platform/{date}/{db}-{date}...
	objs, err := storage.ListAll(ctx, m.objStore(), "platform/")
	if err != nil {
		return nil, err
	}
	out = append(out, withManifests(objs, func(key string) bool {
		base := key[strings.LastIndexByte(key, '/')+1:]
		return strings.HasPrefix(base, target+"-")
	})...)
	sort.Slice(out, func(i, j int) bool {
		return out[i].Date > out[j].Date || (out[i].Date == out[j].Date && out[i].Path > out[j].Path)
	})
	return out, nil
}

func withManifests(objs []storage.ObjectInfo, keep func(string) bool) []httpapi.Snapshot {
	have := map[string]bool{}
	for _, o := range objs {
		have[o.Key] = true
	}
	var out []httpapi.Snapshot
	for _, o := range objs {
		if artifact.IsManifest(o.Key) || !have[artifact.ManifestKey(o.Key)] || (keep != nil && !keep(o.Key)) {
			continue
		}
		date := o.ModTime.UTC().Format(time.RFC3339)
		if d := keyDateRe.FindString(o.Key[strings.LastIndexByte(o.Key, '/')+1:]); d != "" {
			if t, err := time.Parse("20060102", d); err == nil {
				date = t.Format("2006-01-02")
			}
		}
		out = append(out, httpapi.Snapshot{Path: o.Key, Date: date, SizeMB: float64(o.Size) / (1024 * 1024)})
	}
	return out
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
		if g, err := gatewaySummary(ctx, cfg.Alerts.GatewayDB, now); err == nil {
			out["gateway"] = g
		} else {
			m.log.Warn().Err(err).Msg("admin health: gateway figures")
		}
	}
	if m.hasContainerJobs() {
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
		q := cfg.Alerts.CreditsQuery
		if q == "" {
			q = `SELECT COALESCE(-SUM(amount), 0) FROM credit_transactions WHERE amount < 0 AND at > :now / 1000 - 86400`
		}
		if v, err := queryOne(ctx, cfg.Alerts.CreditsDB, q, now); err == nil {
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

func openRO(path string) (*sql.DB, error) {
	q := url.Values{}
	q.Set("mode", "ro")
	q.Add("_pragma", "query_only(1)")
	return sql.Open("sqlite", "file:"+path+"?"+q.Encode())
}

func queryOne(ctx context.Context, path, q string, now time.Time) (float64, error) {
	db, err := openRO(path)
	if err != nil {
		return 0, err
	}
	defer db.Close()
	var v sql.NullFloat64
	err = db.QueryRowContext(ctx, q, sql.Named("now", now.UnixMilli())).Scan(&v)
	return v.Float64, err
}

// gatewaySummary reads gateway_metrics for the last 5 and 60 minutes.
func gatewaySummary(ctx context.Context, path string, now time.Time) (map[string]any, error) {
	db, err := openRO(path)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	window := func(minutes int) (map[string]any, error) {
		rows, err := db.QueryContext(ctx, `SELECT capability, COALESCE(SUM(requests),0), COALESCE(SUM(errors),0) FROM gateway_metrics
			WHERE minute_key > :now - :span AND capability != '__credit_failures__' GROUP BY capability ORDER BY capability`,
			sql.Named("now", now.UnixMilli()), sql.Named("span", int64(minutes)*60000))
		if err != nil {
			return nil, err
		}
		defer rows.Close()
		var reqs, errs int64
		by := map[string]any{}
		for rows.Next() {
			var c string
			var r, e int64
			if err := rows.Scan(&c, &r, &e); err != nil {
				return nil, err
			}
			reqs, errs = reqs+r, errs+e
			rate := 0.0
			if r > 0 {
				rate = float64(e) / float64(r)
			}
			by[c] = map[string]any{"requests": r, "errors": e, "errorRate": rate}
		}
		rate := 0.0
		if reqs > 0 {
			rate = float64(errs) / float64(reqs)
		}
		return map[string]any{"totalRequests": reqs, "totalErrors": errs, "errorRate": rate, "byCapability": by}, rows.Err()
	}
	l5, err := window(5)
	if err != nil {
		return nil, err
	}
	l60, err := window(60)
	if err != nil {
		return nil, err
	}
	return map[string]any{"last5m": l5, "last60m": l60}, nil
}

// startRestore validates an admin restore request and runs the container restore in the
// background, recording it; the id lets GET /api/admin/restores/{id} follow it.
func (m *Main) startRestore(ctx context.Context, containerID, key, targetNode string) (int64, error) {
	cfg := m.cfg()
	if targetNode != "" && targetNode != cfg.NodeID {
		return 0, fmt.Errorf("%w: this is node %s; send the request to the opsd on %s", httpapi.ErrBadRequest, cfg.NodeID, targetNode)
	}
	if !restore.KeyBelongsTo(key, containerID) {
		return 0, httpapi.ErrForbidden
	}
	if _, err := artifact.ReadManifest(ctx, m.objStore(), key); err != nil {
		return 0, fmt.Errorf("%w: %s has no manifest: not a backup", httpapi.ErrNotFound, key)
	}
	release, err := m.locks.TryAcquire(strings.SplitN(key, "/", 2)[0]+"/", false, "restore of "+containerID)
	if err != nil {
		return 0, err
	}
	id, err := m.state.StartRestore(ctx, state.Restore{Kind: "container", Target: containerID, Key: key, RequestedBy: "api", StartedAt: time.Now()})
	if err != nil {
		release()
		return 0, err
	}
	m.bg.Add(1)
	go func() {
		defer m.bg.Done()
		defer release()
		rctx := context.WithoutCancel(m.runCtx)
		res, err := restore.RestoreContainer(rctx, restore.ContainerOptions{Store: m.objStore(), Engine: m.docker, Name: containerID, Key: key, Node: cfg.NodeID,
			Progress: func(s string) { m.state.RestoreProgress(rctx, id, s) }})
		fin := time.Now()
		rec := state.Restore{ID: id, FinishedAt: &fin, DowntimeMS: res.Downtime.Milliseconds(), Outcome: "success", Safety: res.SafetyKey}
		if err != nil {
			rec.Outcome, rec.Error = "failure", m.redactor.Redact(err.Error())
			if strings.Contains(err.Error(), "rolled back") {
				rec.Outcome = "rolled_back"
			}
			m.log.Error().Err(err).Str("target", containerID).Str("key", key).Msg("restore failed")
		} else {
			m.log.Info().Str("target", containerID).Str("key", key).Msg("restore succeeded")
		}
		m.state.FinishRestore(rctx, rec)
	}()
	return id, nil
}
