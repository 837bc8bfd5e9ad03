package main

import (
	"context"
	"fmt"

	"github.com/wopr-network/opsd/internal/httpapi"
	"github.com/wopr-network/opsd/internal/layout"
	"github.com/wopr-network/opsd/internal/restore"
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
	keys, err := keyLayout(cfg)
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
