package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/wopr-network/opsd/internal/artifact"
	"github.com/wopr-network/opsd/internal/docker"
	"github.com/wopr-network/opsd/internal/httpapi"
	"github.com/wopr-network/opsd/internal/restore"
	"github.com/wopr-network/opsd/internal/state"
)

// adminRestore performs the container restore an admin request started (id is its record): a
// container that does not exist here (a lost node's tenant) is recreated from the archive and
// its spec, an existing one is replaced. Tests replace it to hold a restore open and prove
// overlapping requests are refused.
var adminRestore = func(ctx context.Context, m *Main, id int64, containerID, key string) (restore.ContainerResult, error) {
	var res restore.ContainerResult
	if _, ierr := m.docker.Inspect(ctx, containerID, false); docker.IsNotFound(ierr) {
		m.state.RestoreProgress(ctx, id, containerID+" does not exist here: recreating it from "+key)
		rr := restore.Recreate(ctx, restore.RecreateOptions{Store: m.objStore(), Engine: m.docker, Key: key})
		res.NewID = rr.ID
		if rr.Outcome == "failed" {
			return res, fmt.Errorf("restore %s: %s", containerID, rr.Error)
		}
		return res, nil
	}
	keys, err := keyLayout(m.cfg())
	if err != nil {
		return res, err
	}
	return restore.RestoreContainer(ctx, restore.ContainerOptions{Store: m.objStore(), Layout: keys, Engine: m.docker, Name: containerID, Key: key, Node: m.cfg().NodeID,
		Progress: func(s string) { m.state.RestoreProgress(ctx, id, s) }})
}

// startRestore validates an admin restore request and runs the container restore in the
// background, recording it; the id lets GET /api/admin/restores/{id} follow it.
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
	// One restore of a container at a time: a second would stop and rename the container the
	// first is replacing.
	if other, busy := m.restoring.LoadOrStore(containerID, int64(0)); busy {
		return 0, fmt.Errorf("%w: a restore of %s is already running (id %d)", httpapi.ErrConflict, containerID, other)
	}
	unmark := func() { m.restoring.Delete(containerID) }
	release, err := m.locks.TryAcquire(strings.SplitN(key, "/", 2)[0]+"/", false, "restore of "+containerID)
	if err != nil {
		unmark()
		return 0, fmt.Errorf("%w: %v", httpapi.ErrConflict, err)
	}
	id, err := m.state.StartRestore(ctx, state.Restore{Kind: "container", Target: containerID, Key: key, RequestedBy: "api", StartedAt: time.Now()})
	if err != nil {
		release()
		unmark()
		return 0, err
	}
	m.restoring.Store(containerID, id)
	m.bg.Add(1)
	go func() {
		defer m.bg.Done()
		defer unmark()
		defer release()
		rctx := context.WithoutCancel(m.runCtx)
		res, err := adminRestore(rctx, m, id, containerID, key)
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
