package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/wopr-network/opsd/internal/httpapi"
	"github.com/wopr-network/opsd/internal/layout"
	"github.com/wopr-network/opsd/internal/restore"
	"github.com/wopr-network/opsd/internal/state"
)

// startNodeRestore starts `restore node --from NODE` in the background (POST
// /api/admin/nodes/{node}/restore); GET /api/admin/restores/{id} follows its progress.
func (m *Main) startNodeRestore(ctx context.Context, node string, o httpapi.NodeRestoreRequest) (int64, error) {
	cfg := m.cfg()
	if m.docker == nil {
		return 0, fmt.Errorf("%w: this opsd has no Docker engine", httpapi.ErrBadRequest)
	}
	if o.Parallel < 0 || o.Parallel > 64 {
		return 0, fmt.Errorf("%w: parallel must be 1 to 64", httpapi.ErrBadRequest)
	}
	keys, err := keyLayout(cfg)
	if err != nil {
		return 0, err
	}
	cands, err := restore.NodeCandidates(ctx, m.objStore(), keys, node)
	if err != nil {
		return 0, err
	}
	if len(cands) == 0 {
		return 0, fmt.Errorf("%w: no container backups of node %s", httpapi.ErrNotFound, node)
	}
	release, err := m.locks.TryAcquire(keys.Root(layout.Nightly), false, "restore of node "+node)
	if err != nil {
		return 0, fmt.Errorf("%w: %v", httpapi.ErrConflict, err)
	}
	id, err := m.state.StartRestore(ctx, state.Restore{Kind: "node", Target: node, Key: keys.Root(layout.Nightly) + " (node " + node + ")", RequestedBy: "api",
		StartedAt: time.Now(), Progress: fmt.Sprintf("0 of %d containers", len(cands))})
	if err != nil {
		release()
		return 0, err
	}
	m.bg.Add(1)
	go func() {
		defer m.bg.Done()
		defer release()
		rctx := m.runCtx // cancelled at shutdown: a node restore is resumable, so it stops with opsd
		done := 0
		var lines []string
		rep, err := restore.RestoreNode(rctx, restore.NodeOptions{Store: m.objStore(), Layout: keys, Engine: m.docker, FromNode: node, Parallel: o.Parallel,
			Only: o.Only, Exclude: o.Exclude, Progress: func(c restore.RecreateResult) {
				done++
				line := fmt.Sprintf("%s %s", c.Outcome, c.Name)
				if c.Error != "" {
					line += ": " + m.redactor.Redact(c.Error)
				}
				lines = append(lines, line)
				m.state.RestoreProgress(context.WithoutCancel(rctx), id, fmt.Sprintf("%d of %d containers; %s", done, len(cands), strings.Join(lines, "; ")))
			}})
		fin := time.Now()
		rec := state.Restore{ID: id, FinishedAt: &fin, Outcome: "success",
			Progress: fmt.Sprintf("%d restored, %d skipped, %d failed in %.1fs; %s", rep.Restored, rep.Skipped, rep.Failed, rep.RTOSeconds, strings.Join(lines, "; "))}
		if err != nil {
			rec.Outcome, rec.Error = "failure", m.redactor.Redact(err.Error())
			m.log.Error().Err(err).Str("target", node).Msg("node restore failed")
		} else {
			m.log.Info().Str("target", node).Int("restored", rep.Restored).Int("skipped", rep.Skipped).Msg("node restore succeeded")
		}
		m.state.FinishRestore(context.WithoutCancel(rctx), rec)
	}()
	return id, nil
}
