package jobs

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"time"

	"filippo.io/age"

	"github.com/wopr-network/opsd/internal/artifact"
	"github.com/wopr-network/opsd/internal/layout"
	"github.com/wopr-network/opsd/internal/postgres"
	"github.com/wopr-network/opsd/internal/storage"
)

// PostgresBackupConfig configures a PostgresBackup.
type PostgresBackupConfig struct {
	DSN   postgres.DSN
	Tools postgres.Tools
	// KeyTemplate names the object: {date} (YYYYMMDD in Location), {database}, {node}. The
	// format's suffix (.zst, .age) is appended. Default: layout.DefaultPostgres.
	KeyTemplate string
	Compression string
	Recipients  []age.Recipient
	Node        string
	Location    *time.Location
	Now         func() time.Time
	// AtSnapshot, when set, is called with the exported snapshot pg_dump is about to use, before
	// pg_dump starts (tests read the rows the dump must hold in the same snapshot).
	AtSnapshot func(ctx context.Context, snapshot string) error
	// OnDumpStart, when set, gets pg_dump's command once it started (tests inspect its argv).
	OnDumpStart func(*exec.Cmd)
}

// PostgresBackup is the `postgres_backup` kind: pg_dump --format=custom of one database, in the
// snapshot opsd exported (so the manifest's table list is the dump's), streamed through the
// artifact pipeline (SHA-256, optional zstd and age, multipart) with no temp file. The stream
// ends cleanly only when pg_dump exited 0 and pg_restore --list read the archive as it passed;
// otherwise the upload fails and no manifest is written, so the object never counts as a backup.
type PostgresBackup struct {
	name  string
	cfg   PostgresBackupConfig
	tpl   layout.Template
	store storage.Store
}

// NewPostgresBackup returns the job; a bad key template (config validation rejects those) is
// replaced by the default.
func NewPostgresBackup(name string, cfg PostgresBackupConfig, store storage.Store) *PostgresBackup {
	if cfg.KeyTemplate == "" {
		cfg.KeyTemplate = layout.DefaultPostgres
	}
	tpl, err := layout.Parse(cfg.KeyTemplate)
	if err != nil {
		cfg.KeyTemplate, tpl = layout.DefaultPostgres, layout.MustParse(layout.DefaultPostgres)
	}
	if cfg.Location == nil {
		cfg.Location = time.UTC
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &PostgresBackup{name: name, cfg: cfg, tpl: tpl, store: store}
}

// Name returns the job's name.
func (b *PostgresBackup) Name() string { return b.name }

// Kind returns "postgres_backup".
func (b *PostgresBackup) Kind() string { return "postgres_backup" }

// Database is the database the job dumps.
func (b *PostgresBackup) Database() string { return b.cfg.DSN.Database() }

// TrackedTargets returns the database whose status the job records: a run opsd did not survive
// marks it failed (RecordInterrupted), as sqlite_backup's databases are.
func (b *PostgresBackup) TrackedTargets() []TrackedTarget {
	return []TrackedTarget{{Name: b.cfg.DSN.Database(), StatusKind: "postgres"}}
}

// Key returns the object key of the dump taken at the given time.
func (b *PostgresBackup) Key(at time.Time) string {
	f := layout.Fields{Node: b.cfg.Node, Target: b.cfg.DSN.Database(), Date: at.In(b.cfg.Location).Format(layout.DateFormat)}
	return b.tpl.Key(f) + artifact.Suffix(b.cfg.Compression, len(b.cfg.Recipients) > 0)
}

// CheckVersion connects to the server and fails when pg_dump is older than it. It returns
// ErrServerUnreachable (wrapped) when the server cannot be reached, so a caller at config time
// can leave the check to the first run.
func (b *PostgresBackup) CheckVersion(ctx context.Context) error {
	conn, err := b.cfg.DSN.Connect(ctx)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrServerUnreachable, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	_, major, _, err := postgres.ServerVersion(ctx, conn)
	if err != nil {
		return err
	}
	_, err = b.cfg.Tools.CheckDumpVersion(ctx, major)
	return err
}

// ErrServerUnreachable marks a version check that could not reach the server.
var ErrServerUnreachable = errors.New("postgres server unreachable")

// Run dumps the database once.
func (b *PostgresBackup) Run(ctx context.Context) (Result, error) {
	t := b.dump(ctx)
	res := Result{Targets: []TargetResult{t}, Bytes: t.Bytes, Phases: t.Phases}
	if t.Status == TargetOK {
		res.Artifacts = []string{t.Key, artifact.ManifestKey(t.Key)}
		res.Summary = fmt.Sprintf("%s dumped to %s (%d bytes)", t.Name, t.Key, t.Bytes)
		return res, nil
	}
	res.Summary = fmt.Sprintf("%s: %v", t.Name, t.Err)
	return res, t.Err
}

func (b *PostgresBackup) dump(ctx context.Context) TargetResult {
	start := time.Now()
	now := b.cfg.Now()
	t := TargetResult{Name: b.cfg.DSN.Database(), Tracked: true, StatusKind: "postgres", Key: b.Key(now)}
	var tm Timer
	fail := func(err error) TargetResult {
		t.Status, t.Err, t.Phases, t.Duration = TargetFailed, err, tm.Phases(), time.Since(start)
		return t
	}

	m, err := postgres.Backup{DSN: b.cfg.DSN, Tools: b.cfg.Tools, Store: b.store, Key: t.Key,
		Options: artifact.Options{Compression: b.cfg.Compression, Recipients: b.cfg.Recipients}, Node: b.cfg.Node, CreatedAt: now,
		AtSnapshot: b.cfg.AtSnapshot, OnStart: b.cfg.OnDumpStart, Phase: tm.Start}.Run(ctx)
	if err != nil {
		return fail(err)
	}
	t.Status, t.Bytes, t.Phases, t.Duration = TargetOK, m.Size, tm.Phases(), time.Since(start)
	return t
}
