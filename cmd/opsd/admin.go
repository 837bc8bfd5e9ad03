package main

import (
	"context"
	"fmt"

	"github.com/wopr-network/opsd/internal/httpapi"
	"github.com/wopr-network/opsd/internal/layout"
	"github.com/wopr-network/opsd/internal/restore"
	"github.com/wopr-network/opsd/jobs"
)

// containerRestore builds the run of an admin container restore: over the existing container,
// or recreated from the archive and its spec when it does not exist here (a lost node's tenant).
// Tests replace it to hold a restore open.
var containerRestore = func(m *Main, keys *layout.Layout, containerID, key string, access restore.HostAccess) *restore.Run {
	return restore.ContainerRun(m.state, m.docker, restore.ContainerOptions{Store: m.objStore(), Layout: keys, Name: containerID, Key: key, Node: m.cfg().NodeID,
		HostAccess: access}, "api")
}

// startRestore validates an admin restore request and starts the container restore through the
// Runner; the id lets GET /api/admin/restores/{id} follow it and DELETE cancel it.
func (m *Main) startRestore(ctx context.Context, containerID string, o httpapi.ContainerRestoreRequest) (int64, error) {
	cfg, key, targetNode := m.cfg(), o.RemotePath, o.TargetNodeID
	keys, err := cfg.Layout()
	if err != nil {
		return 0, err
	}
	prefix, err := restore.CheckContainerRequest(ctx, m.objStore(), keys, cfg.NodeID, targetNode, containerID, key)
	if err != nil {
		return 0, err
	}
	release, err := m.locks.TryAcquire(prefix, false, "restore of "+containerID)
	if err != nil {
		return 0, fmt.Errorf("%w: %v", httpapi.ErrConflict, err)
	}
	// One restore of a container at a time: a second would stop and rename the container the
	// first is replacing.
	access := restore.HostAccess{BindRoots: append(cfg.BindRoots(), o.AllowBinds...), Allow: o.AllowHostAccess}
	return m.startRestoreRun(ctx, containerRestore(m, keys, containerID, key, access), release)
}

// startRestoreRun starts a restore in the background through the Runner; release is called once
// it ended. A restore of the same kind and target already running is a conflict.
func (m *Main) startRestoreRun(ctx context.Context, run *restore.Run, release func()) (int64, error) {
	if m.closing.Load() {
		release()
		return 0, fmt.Errorf("%w: opsd is shutting down", httpapi.ErrConflict)
	}
	run.Redact = m.redactor.Redact
	return m.restores.Start(ctx, m.runCtx, run, release, func(rctx context.Context, finish func(int64, error)) error {
		return m.runner.Start(rctx, jobs.Restore{R: run}, jobs.RestoreTimeout, jobs.TriggerManual, func(o jobs.Outcome) { finish(o.Run.ID, o.Err) })
	})
}

// cancelRestore cancels a restore running in this daemon (DELETE /api/admin/restores/{id}).
func (m *Main) cancelRestore(ctx context.Context, id int64) error {
	if err := m.restores.Cancel(ctx, m.state, id); err != nil {
		return err
	}
	m.log.Warn().Int64("restore", id).Msg("restore cancelled by an admin request")
	return nil
}

// startNodeRestore starts `restore node --from NODE` in the background (POST
// /api/admin/nodes/{node}/restore); GET /api/admin/restores/{id} follows its progress.
func (m *Main) startNodeRestore(ctx context.Context, node string, o httpapi.NodeRestoreRequest) (int64, error) {
	cfg := m.cfg()
	if m.docker == nil {
		return 0, fmt.Errorf("%w: this opsd has no Docker engine", httpapi.ErrBadRequest)
	}
	keys, err := cfg.Layout()
	if err != nil {
		return 0, err
	}
	if err := restore.CheckNodeRequest(ctx, m.objStore(), keys, node, o.Parallel, o.StartParallel, o.Only, o.Exclude); err != nil {
		return 0, err
	}
	release, err := m.locks.TryAcquire(keys.Root(layout.Nightly), false, "restore of node "+node)
	if err != nil {
		return 0, fmt.Errorf("%w: %v", httpapi.ErrConflict, err)
	}
	// A node restore is resumable: cancelled (admin request, shutdown), it is run again.
	run, _ := restore.NodeRun(m.state, restore.NodeRunOptions{NodeOptions: restore.NodeOptions{Store: m.objStore(), Layout: keys, Engine: m.docker,
		FromNode: node, Parallel: o.Parallel, StartParallel: o.StartParallel, Only: o.Only, Exclude: o.Exclude,
		HostAccess: restore.HostAccess{BindRoots: append(cfg.BindRoots(), o.AllowBinds...), Allow: o.AllowHostAccess}}, Node: cfg.NodeID}, "api")
	return m.startRestoreRun(ctx, run, release)
}
