package jobs

import (
	"context"
	"time"

	"github.com/wopr-network/opsd/internal/artifact"
	"github.com/wopr-network/opsd/internal/layout"
	"github.com/wopr-network/opsd/internal/storage"
)

// A writer killed after publishing an artifact and before writing its manifest leaves the key
// holding the new, verified object under the old manifest (or none): readers reject it on its
// checksum, and the previous backup is gone. The staged manifest beside it finishes the job
// (artifact.Recover). Prune does that once its grace time passed (6h by default); the daemon's
// start does it at once for the writers whose run it did not survive (Runner.RecoverInterrupted).

// uploadRecoverer is a writer that can finish the uploads a killed run of it left published
// without their manifest.
type uploadRecoverer interface {
	RecoverUploads(ctx context.Context) ([]artifact.Recovered, error)
}

// recoverUploads finishes the uploads under the fixed part of a writer's key template. Every
// staged manifest is considered, however young: Recover holds the key's lock (no writer of this
// host is between its publish and its manifest meanwhile) and writes a manifest only when the
// key holds the very object it describes (its upload marker and size), so a live upload
// elsewhere is never mistaken for a dead one.
func recoverUploads(ctx context.Context, store storage.Store, tpl layout.Template, f layout.Fields) ([]artifact.Recovered, error) {
	return artifact.Recover(ctx, store, tpl.Prefix(f), time.Now().Add(time.Hour), false)
}

// RecoverUploads finishes the database backups a killed run left published without their
// manifest.
func (b *SQLiteBackup) RecoverUploads(ctx context.Context) ([]artifact.Recovered, error) {
	if b.err != nil {
		return nil, nil
	}
	return recoverUploads(ctx, b.store, b.tpl, layout.Fields{Node: b.cfg.Node})
}

// RecoverUploads finishes the exports a killed run left published without their manifest.
func (c *ContainerExport) RecoverUploads(ctx context.Context) ([]artifact.Recovered, error) {
	if c.err != nil {
		return nil, nil
	}
	return recoverUploads(ctx, c.store, c.tpl, layout.Fields{Node: c.cfg.Node})
}

// RecoverUploads finishes the snapshots a killed run left published without their manifest.
func (d *DirSnapshot) RecoverUploads(ctx context.Context) ([]artifact.Recovered, error) {
	if d.err != nil {
		return nil, nil
	}
	return recoverUploads(ctx, d.store, d.tpl, layout.Fields{Node: d.cfg.Node})
}

// RecoverUploads finishes the dumps a killed run left published without their manifest.
func (b *PostgresBackup) RecoverUploads(ctx context.Context) ([]artifact.Recovered, error) {
	return recoverUploads(ctx, b.store, b.tpl, layout.Fields{Node: b.cfg.Node, Target: b.cfg.DSN.Database()})
}
