package restore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"filippo.io/age"
	"github.com/jackc/pgx/v5"

	"github.com/wopr-network/opsd/internal/artifact"
	"github.com/wopr-network/opsd/internal/layout"
	"github.com/wopr-network/opsd/internal/postgres"
	"github.com/wopr-network/opsd/internal/storage"
)

// PostgresOptions configure a PostgreSQL restore.
type PostgresOptions struct {
	Store storage.Store
	Tools postgres.Tools
	// DSN is the live database (the postgres_backup job's); its database's dumps are restored.
	DSN    postgres.DSN
	Prefix string // default layout.PostgresRoot
	// Date restores that date's dump instead of the newest.
	Date string
	// TargetDB restores side by side into this new database; the live one is not touched.
	TargetDB string
	DryRun   bool
	// Identities decrypt age-encrypted dumps.
	Identities []age.Identity
	// Jobs is pg_restore --jobs (default 2).
	Jobs int
	// Tables and Critical are checked in the restored database besides every table the dump's
	// manifest lists (Critical tables must hold rows).
	Tables, Critical []string
	// Safety encodes the safety dump as the backups are (compression, encryption).
	Safety artifact.Options
	// MaintenanceDB is the database used to create, rename and drop databases (default postgres).
	MaintenanceDB string
	Node          string
	TempDir       string
	Progress      func(string)
	OnBytes       artifact.Progress
	Now           func() time.Time
	// AfterSwap, when set, runs right after the swap, before the restored database is checked
	// under its live name (tests inject a failure here to prove the rollback).
	AfterSwap func(ctx context.Context) error
	// OnRestoreStart, when set, is called with pg_restore's command once it started (tests).
	OnRestoreStart func(*exec.Cmd)
	// Tracker times the phases and records the safety dump and the kept database before the
	// swap (nil: not tracked).
	Tracker *Tracker
}

// PostgresResult describes a PostgreSQL restore.
type PostgresResult struct {
	Set  string
	Key  string
	Plan string
	// SafetyKey is the dump of the database as it was, taken before anything changed.
	SafetyKey string
	// Restored is the database that now holds the dump (the live name, or TargetDB).
	Restored string
	// Previous is the name the replaced database was kept under.
	Previous string
	Downtime time.Duration
}

// RestorePostgres restores a database from its newest (or --date) dump: the dump is verified
// (checksum, then pg_restore --list), a safety dump of the live database goes to pre-restore/,
// the dump is restored into a new database and checked (every table of the manifest, the
// expected and critical tables), and only then are the databases swapped by renaming: new
// sessions are refused and the live database's sessions terminated, live → {db}_pre_restore_{ts},
// new → live. When anything fails after the swap, the previous database is put back.
func RestorePostgres(ctx context.Context, o PostgresOptions) (PostgresResult, error) {
	if o.Prefix == "" {
		o.Prefix = layout.PostgresRoot
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.MaintenanceDB == "" {
		o.MaintenanceDB = "postgres"
	}
	say := sayer(o.Progress)
	live := o.DSN.Database()
	set, m, err := postgres.NewestDump(ctx, o.Store, o.Prefix, live, 30, o.Date)
	if err != nil {
		return PostgresResult{}, fmt.Errorf("restore: %w", err)
	}
	now := o.Now()
	ts := layout.Stamp(now)
	stamp := strings.ToLower(strings.TrimSuffix(strings.ReplaceAll(ts, "T", "_"), "Z"))
	res := PostgresResult{Set: set, Key: m.Key}
	newDB := o.TargetDB
	if newDB == "" {
		newDB = trimName(live, "_restore_"+stamp)
	}
	prev := trimName(live, "_pre_restore_"+stamp)
	safetyKey := layout.PostgresPreRestoreKey(live, now, artifact.Suffix(o.Safety.Compression, len(o.Safety.Recipients) > 0))

	var plan strings.Builder
	fmt.Fprintf(&plan, "Restore of PostgreSQL database %s from %s (%d bytes, sha256 %s…)\n", live, m.Key, m.Size, m.SHA256[:12])
	if p := m.Postgres; p != nil {
		fmt.Fprintf(&plan, "  dumped from PostgreSQL %s by %s, %d tables\n", p.ServerVersion, p.DumpVersion, len(p.Tables))
	}
	if o.TargetDB != "" {
		fmt.Fprintf(&plan, "  restored side by side into the new database %s; %s is not touched\n", newDB, live)
	} else {
		fmt.Fprintf(&plan, "  safety dump of %s → %s\n", live, safetyKey)
		fmt.Fprintf(&plan, "  restored into %s and checked, then swapped: %s → %s, %s → %s\n", newDB, live, prev, newDB, live)
		fmt.Fprintf(&plan, "  sessions of %s are terminated only once %s is proven; any failure after the swap puts %s back\n", live, newDB, live)
	}
	res.Plan = plan.String()
	if o.DryRun {
		return res, nil
	}

	// 1. The dump, verified before anything changes.
	dir, err := os.MkdirTemp(o.TempDir, "opsd-pgrestore-")
	if err != nil {
		return res, fmt.Errorf("restore: scratch dir: %w", err)
	}
	defer os.RemoveAll(dir)
	o.Tracker.Phase("download")
	say("downloading %s", m.Key)
	dl := filepath.Join(dir, "download")
	if err := artifact.DownloadVerified(ctx, o.Store, m, dl, o.OnBytes); err != nil {
		return res, fmt.Errorf("restore: %w (nothing changed)", err)
	}
	o.Tracker.Phase("verify")
	dump := filepath.Join(dir, "dump")
	if err := artifact.DecodeFile(dl, dump, m, o.Identities); err != nil {
		return res, fmt.Errorf("restore: decode %s: %w (nothing changed)", m.Key, err)
	}
	os.Remove(dl)
	// The dump came from pg_dump's pipe: write the data offsets into its table of contents so
	// each pg_restore --jobs worker seeks to its table instead of skipping every row before it.
	// An archive this cannot read goes to pg_restore as it is (pg_restore --list judges it next).
	if _, err := postgres.SetDataOffsets(dump); err != nil {
		say("data offsets not set (pg_restore will skip through the data): %v", err)
	}
	toc, err := o.Tools.List(ctx, dump)
	if err != nil {
		return res, fmt.Errorf("restore: %s: %w (nothing changed)", m.Key, err)
	}
	say("verified: sha256 matches the manifest, pg_restore reads %d entries", len(toc))

	admin, err := o.DSN.WithDatabase(o.MaintenanceDB).Connect(ctx)
	if err != nil {
		return res, fmt.Errorf("restore: %w (nothing changed)", err)
	}
	defer admin.Close(context.WithoutCancel(ctx))
	if exists, err := postgres.DatabaseExists(ctx, admin, newDB); err != nil || exists {
		if err == nil {
			err = fmt.Errorf("database %s already exists", newDB)
		}
		return res, fmt.Errorf("restore: %w (nothing changed)", err)
	}

	// 2. The safety dump of the live database.
	if o.TargetDB == "" {
		o.Tracker.Phase("safety_copy")
		say("safety dump of %s → %s", live, safetyKey)
		if _, err := (postgres.Backup{DSN: o.DSN, Tools: o.Tools, Store: o.Store, Key: safetyKey, Options: o.Safety, Node: o.Node,
			Note: "safety dump before the restore of " + m.Key}).Run(ctx); err != nil {
			return res, fmt.Errorf("restore: safety dump: %w (nothing changed)", err)
		}
		res.SafetyKey = safetyKey
		if err := o.Tracker.Safety(ctx, safetyKey); err != nil {
			return res, fmt.Errorf("restore: %w", err)
		}
	}

	// 3. Restore into a new database and prove it.
	owner := ""
	if o.TargetDB == "" {
		if owner, err = postgres.Owner(ctx, admin, live); err != nil {
			return res, fmt.Errorf("restore: %w (nothing changed)", err)
		}
	}
	o.Tracker.Phase("import")
	// Recorded first: a restore killed from here on leaves this database behind.
	if err := o.Tracker.Safety(ctx, fmt.Sprintf("the dump is restored into the new database %s", newDB)); err != nil {
		return res, fmt.Errorf("restore: %w", err)
	}
	say("restoring into %s (pg_restore --jobs %d)", newDB, max(o.Jobs, 1))
	if err := postgres.CreateDatabase(ctx, admin, newDB, owner); err != nil {
		return res, fmt.Errorf("restore: %w (nothing changed)", err)
	}
	dropNew := func(why error) error {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		if err := postgres.DropDatabase(dctx, admin, newDB); err != nil {
			return fmt.Errorf("restore: %w (nothing changed; %s could not be dropped: %v)", why, newDB, err)
		}
		return fmt.Errorf("restore: %w (nothing changed)", why)
	}
	if err := o.Tools.Restore(ctx, o.DSN.WithDatabase(newDB), dump, postgres.RestoreOptions{Jobs: o.Jobs, OnStart: o.OnRestoreStart}); err != nil {
		return res, dropNew(err)
	}
	if err := checkRestored(ctx, o.DSN.WithDatabase(newDB), m, o.Tables, o.Critical); err != nil {
		return res, dropNew(err)
	}
	say("%s proven: every table of the dump present", newDB)
	if o.TargetDB != "" {
		res.Restored = newDB
		return res, nil
	}

	// 4. Swap by renaming, then check under the live name; put the previous one back on failure.
	o.Tracker.Phase("replace")
	if err := o.Tracker.Safety(ctx, fmt.Sprintf("the live database %s is kept as %s once swapped (new sessions to %s are refused from the swap on)", live, prev, live)); err != nil {
		return res, dropNew(err)
	}
	down := time.Now()
	say("swapping: %s → %s, %s → %s", live, prev, newDB, live)
	if err := swap(ctx, admin, live, newDB, prev); err != nil {
		res.Downtime = time.Since(down)
		var left *swapLeftError
		if errors.As(err, &left) {
			// Something changed and could not be undone: nothing is dropped, the operator is told.
			return res, &RollbackFailedError{Err: fmt.Errorf("restore: %w", left.err), Rollback: left.undo,
				Where: fmt.Sprintf("the previous database may be %s (if no database is named %s, rename it back), the restored one %s, the safety dump %s; "+
					"new sessions to the previous database are refused until ALTER DATABASE ... ALLOW_CONNECTIONS true", prev, live, newDB, safetyKey)}
		}
		return res, dropNew(err)
	}
	res.Previous = prev
	o.Tracker.Phase("probe")
	err = nil
	if o.AfterSwap != nil {
		err = o.AfterSwap(ctx)
	}
	if err == nil {
		err = checkRestored(ctx, o.DSN, m, o.Tables, o.Critical)
	}
	if err != nil {
		failed := trimName(live, "_failed_"+stamp)
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
		defer cancel()
		if rerr := swap(rctx, admin, live, prev, failed); rerr != nil {
			res.Downtime = time.Since(down)
			return res, &RollbackFailedError{Err: fmt.Errorf("restore: %w", err), Rollback: rerr, Where: fmt.Sprintf("the previous database is %s, the safety dump %s", prev, safetyKey)}
		}
		postgres.AllowConnections(rctx, admin, live, true)
		res.Downtime, res.Previous = time.Since(down), ""
		return res, &RolledBackError{Err: fmt.Errorf("restore: %w", err), What: fmt.Sprintf("%s is the previous database again (the restored one is kept as %s)", live, failed)}
	}
	res.Downtime, res.Restored = time.Since(down), live
	if err := postgres.AllowConnections(ctx, admin, prev, true); err != nil {
		say("warning: %v", err)
	}
	say("%s restored; the previous database is kept as %s", live, prev)
	return res, nil
}

// swapLeftError is a swap that failed and could not undo what it had done (the connection to
// the server was lost between its steps, say): the databases are not as they were.
type swapLeftError struct{ err, undo error }

func (e *swapLeftError) Error() string {
	return fmt.Sprintf("%v; undoing it failed: %v", e.err, e.undo)
}

// swap makes incoming live: new sessions to live are refused and its sessions terminated, then
// live → keep and incoming → live. On an error it undoes what it did; when it cannot, the error
// is a *swapLeftError.
func swap(ctx context.Context, admin *pgx.Conn, live, incoming, keep string) error {
	if err := postgres.AllowConnections(ctx, admin, live, false); err != nil {
		return err
	}
	uctx := context.WithoutCancel(ctx)
	allow := func(err error) error {
		if uerr := postgres.AllowConnections(uctx, admin, live, true); uerr != nil {
			return &swapLeftError{err: err, undo: uerr}
		}
		return err
	}
	if _, err := postgres.Terminate(ctx, admin, live); err != nil {
		return allow(err)
	}
	if err := postgres.Rename(ctx, admin, live, keep); err != nil {
		return allow(err)
	}
	if err := postgres.Rename(ctx, admin, incoming, live); err != nil {
		if uerr := postgres.Rename(uctx, admin, keep, live); uerr != nil {
			return &swapLeftError{err: err, undo: uerr}
		}
		return allow(err)
	}
	return nil
}

// checkRestored proves a restored database: every table the dump's manifest lists exists, and
// the expected and critical tables (critical ones hold rows).
func checkRestored(ctx context.Context, dsn postgres.DSN, m artifact.Manifest, tables, critical []string) error {
	c, err := dsn.Connect(ctx)
	if err != nil {
		return err
	}
	defer c.Close(context.WithoutCancel(ctx))
	want := append([]string{}, tables...)
	if m.Postgres != nil {
		for _, t := range m.Postgres.Tables {
			want = append(want, t.Schema+"."+t.Name)
		}
	}
	missing, empty, err := postgres.CheckTables(ctx, c, want, critical)
	switch {
	case err != nil:
		return fmt.Errorf("check %s: %w", dsn.Database(), err)
	case len(missing) > 0:
		return fmt.Errorf("check %s: missing tables: %s", dsn.Database(), strings.Join(missing, ", "))
	case len(empty) > 0:
		return fmt.Errorf("check %s: critical tables empty: %s", dsn.Database(), strings.Join(empty, ", "))
	}
	return nil
}

// trimName appends suffix to name within PostgreSQL's 63-byte identifier limit.
func trimName(name, suffix string) string {
	if len(name)+len(suffix) > 63 {
		name = name[:63-len(suffix)]
	}
	return name + suffix
}
