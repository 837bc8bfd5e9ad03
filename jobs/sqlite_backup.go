package jobs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"filippo.io/age"

	"github.com/wopr-network/opsd/internal/artifact"
	"github.com/wopr-network/opsd/internal/layout"
	"github.com/wopr-network/opsd/internal/sqlite"
	"github.com/wopr-network/opsd/internal/storage"
)

// SQLiteDatabase is one database a SQLiteBackup copies.
type SQLiteDatabase struct {
	Name     string
	Path     string
	Optional bool
	// Tables must exist in the copy (REFERENCE.md's table); a copy without them is not uploaded.
	Tables []string
}

// SQLiteBackupConfig configures a SQLiteBackup.
type SQLiteBackupConfig struct {
	Databases []SQLiteDatabase
	// KeyTemplate names the object: {date} (YYYYMMDD, UTC like every key), {db}, {node}. The
	// format's suffix (.zst, .age) is appended. Default: layout.DefaultSQLite.
	KeyTemplate string
	Compression string
	Recipients  []age.Recipient
	CopyTimeout time.Duration
	TempDir     string
	Parallel    int
	Node        string
	// Now is the clock (tests); nil means time.Now.
	Now func() time.Time
}

// SQLiteBackup is the `sqlite_backup` kind: for each database, independently, a consistent online
// copy into a temp file, PRAGMA integrity_check on the copy (a corrupt copy is never uploaded),
// then a streaming upload with its manifest.
type SQLiteBackup struct {
	name  string
	cfg   SQLiteBackupConfig
	store storage.Store
	tpl   layout.Template
	err   error // a bad key template, reported by Run
	// only: restricted to some databases (Only); such a run retires nothing.
	only bool
}

// NewSQLiteBackup returns the job.
func NewSQLiteBackup(name string, cfg SQLiteBackupConfig, store storage.Store) *SQLiteBackup {
	if cfg.Parallel < 1 {
		cfg.Parallel = 1
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.CopyTimeout == 0 {
		cfg.CopyTimeout = 10 * time.Minute
	}
	if cfg.KeyTemplate == "" {
		cfg.KeyTemplate = layout.DefaultSQLite
	}
	tpl, err := layout.Parse(cfg.KeyTemplate)
	return &SQLiteBackup{name: name, cfg: cfg, store: store, tpl: tpl, err: err}
}

// Name returns the job's name.
func (b *SQLiteBackup) Name() string { return b.name }

// Kind returns "sqlite_backup".
func (b *SQLiteBackup) Kind() string { return "sqlite_backup" }

// TrackedTargets returns the databases whose status the job records (optional ones are only
// tracked once they exist).
func (b *SQLiteBackup) TrackedTargets() []TrackedTarget {
	var out []TrackedTarget
	for _, d := range b.cfg.Databases {
		if !d.Optional {
			out = append(out, TrackedTarget{Name: d.Name, StatusKind: "sqlite"})
		}
	}
	return out
}

// Only returns a copy of the job restricted to the named databases (the CLI's --db).
func (b *SQLiteBackup) Only(names []string) (*SQLiteBackup, error) {
	if len(names) == 0 {
		return b, nil
	}
	byName := map[string]SQLiteDatabase{}
	for _, d := range b.cfg.Databases {
		byName[d.Name] = d
	}
	cfg := b.cfg
	cfg.Databases = nil
	for _, n := range names {
		d, ok := byName[n]
		if !ok {
			return nil, fmt.Errorf("no database named %q in job %s", n, b.name)
		}
		cfg.Databases = append(cfg.Databases, d)
	}
	return &SQLiteBackup{name: b.name, cfg: cfg, store: b.store, tpl: b.tpl, err: b.err, only: true}, nil
}

// Key returns the object key of a database's backup on the given day.
func (b *SQLiteBackup) Key(db string, at time.Time) string {
	return b.tpl.Key(layout.Fields{Node: b.cfg.Node, Target: db, Date: layout.Date(at)}) + artifact.Suffix(b.cfg.Compression, len(b.cfg.Recipients) > 0)
}

// Run backs up every database; one failing does not stop the others.
func (b *SQLiteBackup) Run(ctx context.Context) (Result, error) {
	if b.err != nil {
		return Result{}, fmt.Errorf("sqlite backup %s: %w", b.name, b.err)
	}
	now := b.cfg.Now()
	dbs := b.cfg.Databases
	results := make([]TargetResult, len(dbs))
	ForEach(ctx, len(dbs), b.cfg.Parallel, func(i int) { results[i] = b.backupOne(ctx, dbs[i], now) }, func(i int) {
		results[i] = TargetResult{Name: dbs[i].Name, Status: TargetFailed, Tracked: true, StatusKind: "sqlite", Err: ctx.Err()}
	})
	var res Result
	ok := 0
	for _, t := range results {
		res.Targets = append(res.Targets, t)
		res.Bytes += t.Bytes
		if t.Status == TargetOK {
			ok++
			res.Artifacts = append(res.Artifacts, t.Key, artifact.ManifestKey(t.Key))
		}
	}
	res.Summary = fmt.Sprintf("%d of %d databases backed up", ok, len(results))
	if !b.only && ctx.Err() == nil {
		// Databases removed from the job stop being tracked (and stale).
		present := make([]string, len(dbs))
		for i, d := range dbs {
			present[i] = d.Name
		}
		res.Retire = &Retire{Kind: "sqlite", Present: present}
	}
	return res, res.TargetsError("databases")
}

func (b *SQLiteBackup) backupOne(ctx context.Context, db SQLiteDatabase, now time.Time) TargetResult {
	start := time.Now()
	t := TargetResult{Name: db.Name, Tracked: true, StatusKind: "sqlite", Key: b.Key(db.Name, now)}
	var tm Timer
	fail := func(err error) TargetResult {
		t.Status, t.Err, t.Phases, t.Duration = TargetFailed, err, tm.Phases(), time.Since(start)
		return t
	}

	tm.Start("copy")
	if _, err := os.Stat(db.Path); errors.Is(err, os.ErrNotExist) {
		if db.Optional {
			t.Status, t.Note, t.Duration = TargetSkipped, "optional database not found: "+db.Path, time.Since(start)
			return t
		}
		return fail(fmt.Errorf("database file not found: %s", db.Path))
	}
	// SQLite treats a 0-byte file as a new empty database: without this gate an empty or
	// truncated source would be "backed up" as OK and later restored over the real one.
	if err := sqlite.CheckFile(ctx, db.Path); err != nil {
		return fail(fmt.Errorf("source %w (nothing uploaded)", err))
	}
	dir := b.cfg.TempDir
	if dir == "" {
		dir = os.TempDir()
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fail(fmt.Errorf("temp dir: %w", err))
	}
	tmp := sqlite.TempPath(dir, db.Name)
	defer sqlite.RemoveDB(tmp)
	copyCtx, cancel := context.WithTimeout(ctx, b.cfg.CopyTimeout)
	err := sqlite.BackupScratch(copyCtx, db.Path, tmp)
	cancel()
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			return fail(fmt.Errorf("copy did not finish within %s: %w", b.cfg.CopyTimeout, err))
		}
		return fail(err)
	}

	tm.Start("check")
	info, err := sqlite.VerifyCopy(ctx, tmp, db.Tables)
	if err != nil {
		return fail(fmt.Errorf("copy of %s: %w (nothing uploaded)", db.Path, err))
	}

	tm.Start("upload")
	f, err := os.Open(tmp)
	if err != nil {
		return fail(fmt.Errorf("open copy: %w", err))
	}
	defer f.Close()
	m, err := artifact.Store(ctx, b.store, f, artifact.Options{Compression: b.cfg.Compression, Recipients: b.cfg.Recipients}, artifact.Manifest{
		Key: t.Key, Kind: "sqlite", Target: db.Name, Source: db.Path, Node: b.cfg.Node, CreatedAt: now.UTC(),
		SQLite: &artifact.SQLiteInfo{PageCount: info.PageCount, PageSize: info.PageSize, Tables: info.Tables},
	})
	if err != nil {
		return fail(err)
	}
	t.Status, t.Bytes, t.Phases, t.Duration = TargetOK, m.Size, tm.Phases(), time.Since(start)
	return t
}
