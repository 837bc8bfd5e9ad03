package main

import (
	"context"
	"fmt"

	"github.com/wopr-network/opsd/internal/httpapi"
	"github.com/wopr-network/opsd/internal/layout"
	"github.com/wopr-network/opsd/internal/restore"
)

// startNodeRestore starts `restore node --from NODE` in the background (POST
// /api/admin/nodes/{node}/restore); GET /api/admin/restores/{id} follows its progress.
func (m *Main) startNodeRestore(ctx context.Context, node string, o httpapi.NodeRestoreRequest) (int64, error) {
	cfg := m.cfg()
	if m.docker == nil {
		return 0, fmt.Errorf("%w: this opsd has no Docker engine", httpapi.ErrBadRequest)
	}
	keys, err := keyLayout(cfg)
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
