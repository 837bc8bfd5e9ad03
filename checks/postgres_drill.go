package checks

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"filippo.io/age"

	"github.com/wopr-network/opsd/internal/artifact"
	"github.com/wopr-network/opsd/internal/layout"
	"github.com/wopr-network/opsd/internal/postgres"
	"github.com/wopr-network/opsd/internal/prefixlock"
	"github.com/wopr-network/opsd/internal/storage"
	"github.com/wopr-network/opsd/jobs"
)

// PostgresDrillConfig configures a PostgresDrill.
type PostgresDrillConfig struct {
	// Server connects to the scratch server as a role that may create databases.
	Server postgres.DSN
	Tools  postgres.Tools
	// Database is whose dumps are drilled (the manifests' target).
	Database string
	Prefix   string // default layout.PostgresRoot
	// Tables must exist in the restored database; Critical tables must hold rows.
	Tables, Critical []string
	// Jobs is pg_restore --jobs.
	Jobs int
	// MaintenanceWorkMemMB is maintenance_work_mem for the restore's index builds in the scratch
	// database (postgres.ScratchSettings; default 256, -1 keeps the server's).
	MaintenanceWorkMemMB int
	Identities           []age.Identity
	// RTOTarget is the objective for the whole drill (default 15 min).
	RTOTarget       time.Duration
	FailOnRTOBreach bool
	TempDir         string
	// ReportKey is where the JSON report is uploaded; {date} is the drill's date. Empty: not uploaded.
	ReportKey string
	// Lookback is how many of the newest dates are searched for a dump.
	Lookback int
	// Date drills that date's dump instead of the newest (the CLI's --date).
	Date  string
	Node  string
	Locks *prefixlock.Locks
	Now   func() time.Time
	// OnRestoreStart, when set, is called with pg_restore's command once it started (tests).
	OnRestoreStart func(*exec.Cmd)
	// AfterRestore, when set, is called with the scratch database after pg_restore (tests).
	AfterRestore func(ctx context.Context, scratch postgres.DSN) error
}

// PostgresDrill is the `postgres_drill` kind: the newest verified dump of a database is
// downloaded (checksum first), restored with pg_restore --exit-on-error --jobs N into a scratch
// database with a unique name on the configured server (always dropped after), and checked: the
// expected tables exist and the critical ones hold rows. Every phase is timed against the RTO;
// the report has sqlite_drill's format and the Runner exports the same metrics.
type PostgresDrill struct {
	name  string
	cfg   PostgresDrillConfig
	store storage.Store
}

// NewPostgresDrill returns the drill.
func NewPostgresDrill(name string, cfg PostgresDrillConfig, store storage.Store) *PostgresDrill {
	if cfg.Prefix == "" {
		cfg.Prefix = layout.PostgresRoot
	}
	if cfg.Jobs < 1 {
		cfg.Jobs = 2
	}
	if cfg.MaintenanceWorkMemMB == 0 {
		cfg.MaintenanceWorkMemMB = 256
	}
	if cfg.RTOTarget == 0 {
		cfg.RTOTarget = 15 * time.Minute
	}
	if cfg.Lookback < 1 {
		cfg.Lookback = 14
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Locks == nil {
		cfg.Locks = prefixlock.New()
	}
	return &PostgresDrill{name: name, cfg: cfg, store: store}
}

// Name returns the job's name.
func (d *PostgresDrill) Name() string { return d.name }

// Kind returns "postgres_drill".
func (d *PostgresDrill) Kind() string { return "postgres_drill" }

// IsDrill marks a restore drill (jobs.Drill).
func (d *PostgresDrill) IsDrill() {}

// WithDate returns a copy that drills the given date's dump.
func (d *PostgresDrill) WithDate(date string) *PostgresDrill {
	c := *d
	c.cfg.Date = date
	return &c
}

// Run performs the drill.
func (d *PostgresDrill) Run(ctx context.Context) (jobs.Result, error) {
	started := time.Now()
	release, err := d.cfg.Locks.Acquire(ctx, d.cfg.Prefix, false, "drill "+d.name)
	if err != nil {
		return jobs.Result{}, err
	}
	defer release()

	report := newDBDrillReport(d.name, d.cfg.Node, started, d.cfg.RTOTarget)
	set, m, err := postgres.NewestDump(ctx, d.store, d.cfg.Prefix, d.cfg.Database, d.cfg.Lookback, d.cfg.Date)
	if err != nil {
		return jobs.Result{}, fmt.Errorf("drill %s: %w", d.name, err)
	}
	report.Set = set
	target, detail := d.drillOne(ctx, m, set)
	rto := time.Since(started)

	details := []DrillTarget{detail}
	report.writeResults("PostgreSQL restore drill", d.cfg.Prefix, details, "restored, tables present", 0, d.cfg.RTOTarget, rto)
	for _, p := range target.Phases {
		fmt.Fprintf(&report.text, "  %-9s %s\n", p.Name, p.Duration.Round(time.Millisecond))
	}
	res := report.result([]jobs.TargetResult{target}, details, rto, d.cfg.RTOTarget, d.cfg.FailOnRTOBreach)
	res.Phases = target.Phases
	res.Summary = fmt.Sprintf("set %s: %d passed, %d failed, RTO %s", set, report.PassedCount, report.FailedCount, seconds(rto))
	runErr := report.missedObjective(d.cfg.FailOnRTOBreach)
	if report.FailedCount > 0 {
		runErr = fmt.Errorf("drill %s: %s: %s", d.name, detail.Name, detail.Reason)
	}
	return res, uploadReport(ctx, d.store, d.cfg.ReportKey, d.cfg.Now(), &res, runErr)
}

func (d *PostgresDrill) drillOne(ctx context.Context, m artifact.Manifest, set string) (rt jobs.TargetResult, rdt DrillTarget) {
	start := time.Now()
	t := jobs.TargetResult{Name: d.cfg.Database, StatusKind: "drill", Key: m.Key, Bytes: m.Size}
	dt := DrillTarget{Name: d.cfg.Database, Key: m.Key, SizeBytes: m.Size, Phases: map[string]float64{}}
	var tm jobs.Timer
	finish := func(reason error) (jobs.TargetResult, DrillTarget) {
		t.Phases, t.Duration = tm.Phases(), time.Since(start)
		for _, p := range t.Phases {
			dt.Phases[p.Name] += p.Duration.Seconds()
		}
		dt.Seconds = jobs.Total(t.Phases).Seconds()
		if reason == nil {
			t.Status, dt.Status = jobs.TargetOK, "PASS"
		} else {
			t.Status, t.Err, dt.Status, dt.Reason = jobs.TargetFailed, reason, "FAIL", reason.Error()
		}
		return t, dt
	}

	scratchDir, err := os.MkdirTemp(d.cfg.TempDir, "opsd-pgdrill-")
	if err != nil {
		return finish(fmt.Errorf("scratch dir: %w", err))
	}
	defer os.RemoveAll(scratchDir)

	// Download, check and decode in one pass into the file pg_restore --jobs reads: the stored
	// bytes are hashed as they stream and the copy fails at the end when they differ from the
	// manifest, before pg_restore sees the file. (Downloading to a file and decoding it after
	// wrote and read the compressed dump once more and could not overlap the two.)
	tm.Start("download")
	if m.Size == 0 {
		return finish(errors.New("empty file"))
	}
	// A dump that does not fit is refused before it fills the disk (the drill host's, maybe
	// the live data's).
	if err := artifact.CheckRoom(scratchDir, max(m.RawSize, m.Size)); err != nil {
		return finish(fmt.Errorf("download %s: %w", m.Key, err))
	}
	dump := filepath.Join(scratchDir, "dump")
	if err := downloadDecoded(ctx, d.store, m, d.cfg.Identities, dump); err != nil {
		return finish(err)
	}
	// pg_dump wrote the archive into a pipe, so its table of contents says where no table's data
	// starts and each pg_restore worker would reach its table by skipping every data chunk
	// before it; the offsets written in, each worker seeks once. An archive this cannot read is
	// restored as it is (pg_restore judges it) and the report says why it was slower.
	if _, err := postgres.SetDataOffsets(dump); err != nil {
		w := "data offsets not set (pg_restore skips through the data): " + err.Error()
		dt.Warnings = append(dt.Warnings, w)
		t.Note = w
	}

	tm.Start("create")
	admin, err := d.cfg.Server.Connect(ctx)
	if err != nil {
		return finish(err)
	}
	defer admin.Close(context.WithoutCancel(ctx))
	// A drill killed before its drop (opsd SIGKILLed, the host lost) left its scratch database:
	// drop it now, or it would hold a copy of the platform's data on the scratch server forever.
	dropped, err := postgres.DropLeftoverScratch(ctx, admin, "opsd_drill", d.cfg.Database)
	for _, n := range dropped {
		dt.Warnings = append(dt.Warnings, "dropped scratch database "+n+" left by an earlier drill")
	}
	if err != nil {
		dt.Warnings = append(dt.Warnings, "scratch databases of earlier drills not dropped: "+err.Error())
	}
	scratch := postgres.ScratchName("opsd_drill", d.cfg.Database)
	// Held by admin's session until after the drop: another drill's cleanup leaves it alone.
	if err := postgres.HoldScratch(ctx, admin, scratch); err != nil {
		return finish(err)
	}
	if err := postgres.CreateDatabase(ctx, admin, scratch, ""); err != nil {
		return finish(err)
	}
	defer func() {
		// Always dropped, also when the run was cancelled.
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		if err := postgres.DropDatabase(dctx, admin, scratch); err != nil {
			w := "scratch database not dropped: " + err.Error()
			rdt.Warnings = append(rdt.Warnings, w)
			rt.Note = w
		}
	}()
	scratchDSN := d.cfg.Server.WithDatabase(scratch)

	tm.Start("restore")
	if err := d.cfg.Tools.Restore(ctx, scratchDSN, dump, postgres.RestoreOptions{Jobs: d.cfg.Jobs, NoOwner: true,
		Settings: postgres.ScratchSettings(max(d.cfg.MaintenanceWorkMemMB, 0)), OnStart: d.cfg.OnRestoreStart}); err != nil {
		return finish(err)
	}
	if d.cfg.AfterRestore != nil {
		if err := d.cfg.AfterRestore(ctx, scratchDSN); err != nil {
			return finish(err)
		}
	}

	tm.Start("tables")
	conn, err := scratchDSN.Connect(ctx)
	if err != nil {
		return finish(err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	missing, empty, err := postgres.CheckTables(ctx, conn, d.cfg.Tables, d.cfg.Critical)
	switch {
	case err != nil:
		return finish(err)
	case len(missing) == 1:
		return finish(fmt.Errorf("missing table: %s", missing[0]))
	case len(missing) > 1:
		return finish(fmt.Errorf("missing tables: %s", strings.Join(missing, ", ")))
	case len(empty) == 1:
		return finish(fmt.Errorf("critical table %s is empty", empty[0]))
	case len(empty) > 1:
		return finish(fmt.Errorf("critical tables %s are empty", strings.Join(empty, ", ")))
	}
	conn.Close(ctx)
	return finish(nil)
}

// downloadDecoded writes an artifact's decoded content to a new file; the copy fails (and the
// file is removed) when the stored bytes do not match the manifest's size and SHA-256.
func downloadDecoded(ctx context.Context, store storage.Store, m artifact.Manifest, ids []age.Identity, to string) error {
	rc, err := artifact.Open(ctx, store, m, ids)
	if err != nil {
		return err
	}
	defer rc.Close()
	out, err := os.Create(to)
	if err != nil {
		return fmt.Errorf("download %s: %w", m.Key, err)
	}
	_, err = io.Copy(out, rc)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(to)
		if errors.Is(err, artifact.ErrChecksum) {
			return err
		}
		return fmt.Errorf("download and decode %s (corrupt or unreadable): %w", m.Key, err)
	}
	return nil
}
