package checks

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"filippo.io/age"

	"github.com/wopr-network/opsd/internal/artifact"
	"github.com/wopr-network/opsd/internal/layout"
	"github.com/wopr-network/opsd/internal/prefixlock"
	"github.com/wopr-network/opsd/internal/scratch"
	"github.com/wopr-network/opsd/internal/sqlite"
	"github.com/wopr-network/opsd/internal/storage"
	"github.com/wopr-network/opsd/jobs"
)

// DrillDatabase is one database the platform drill restores.
type DrillDatabase struct {
	Name     string
	Tables   []string
	Critical []string
	Optional bool
}

// DefaultDrillParallel is how many databases a platform drill restores at once unless configured:
// on 2 cores, 2 at once beat 1, 3 and 4 (opsd-bench drill, fast and slow disk; README Performance).
const DefaultDrillParallel = 2

// PlatformDrillConfig configures a PlatformDrill.
type PlatformDrillConfig struct {
	// Layout finds the sets (nil: the default layout); Prefix is what the drill locks against
	// prune (default: the folder of the layout's database keys).
	Layout     *layout.Layout
	Prefix     string
	Databases  []DrillDatabase
	Identities []age.Identity
	Parallel   int
	// RTOTargetDB and RTOTargetTotal are the objectives (defaults 5 min and 15 min).
	RTOTargetDB, RTOTargetTotal time.Duration
	// FailOnRTOBreach fails the drill when an objective is missed; otherwise it warns.
	FailOnRTOBreach bool
	TempDir         string
	// ReportKey is where the JSON report is uploaded; {date} is the drill's date. Empty: not uploaded.
	ReportKey string
	// Lookback is how many of the newest dates are searched for a complete set.
	Lookback int
	// Date drills one date instead of the newest complete one (the CLI's --date).
	Date  string
	Node  string
	Locks *prefixlock.Locks
	Now   func() time.Time
}

// PlatformDrill is the `sqlite_drill` kind: it restores the newest complete set of platform
// database backups into scratch files and proves each one usable, timing every phase.
type PlatformDrill struct {
	name  string
	cfg   PlatformDrillConfig
	store storage.Store
}

// NewPlatformDrill returns the drill.
func NewPlatformDrill(name string, cfg PlatformDrillConfig, store storage.Store) *PlatformDrill {
	if cfg.Layout == nil {
		cfg.Layout = layout.Default()
	}
	if cfg.Prefix == "" {
		cfg.Prefix = cfg.Layout.Root(layout.SQLite)
	}
	if cfg.Parallel < 1 {
		cfg.Parallel = DefaultDrillParallel
	}
	if cfg.RTOTargetDB == 0 {
		cfg.RTOTargetDB = 5 * time.Minute
	}
	if cfg.RTOTargetTotal == 0 {
		cfg.RTOTargetTotal = 15 * time.Minute
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
	return &PlatformDrill{name: name, cfg: cfg, store: store}
}

// Name returns the job's name.
func (d *PlatformDrill) Name() string { return d.name }

// Kind returns "sqlite_drill".
func (d *PlatformDrill) Kind() string { return "sqlite_drill" }

// IsDrill marks a restore drill (jobs.Drill).
func (d *PlatformDrill) IsDrill() {}

// WithDate returns a copy that drills the given date.
func (d *PlatformDrill) WithDate(date string) *PlatformDrill {
	c := *d
	c.cfg.Date = date
	return &c
}

// DrillReport is the JSON report stored and uploaded after every platform drill.
type DrillReport struct {
	Drill            string        `json:"drill"`
	Node             string        `json:"node"`
	Set              string        `json:"set"`
	StartedAt        time.Time     `json:"startedAt"`
	RTOSeconds       float64       `json:"rtoSeconds"`
	RTOTargetSeconds float64       `json:"rtoTargetSeconds"`
	Passed           bool          `json:"passed"`
	PassedCount      int           `json:"passedCount"`
	FailedCount      int           `json:"failedCount"`
	SkippedCount     int           `json:"skippedCount"`
	Notes            []string      `json:"notes"`
	Databases        []DrillTarget `json:"databases"`
}

// DrillTarget is one database's drill outcome.
type DrillTarget struct {
	Name      string             `json:"name"`
	Status    string             `json:"status"` // PASS, FAIL, SKIP
	Reason    string             `json:"reason,omitempty"`
	Warnings  []string           `json:"warnings,omitempty"`
	Key       string             `json:"key,omitempty"`
	SizeBytes int64              `json:"sizeBytes"`
	Seconds   float64            `json:"seconds"`
	Phases    map[string]float64 `json:"phases"`
}

// Run performs the drill.
func (d *PlatformDrill) Run(ctx context.Context) (jobs.Result, error) {
	started := time.Now()
	release, err := d.cfg.Locks.Acquire(ctx, d.cfg.Prefix, false, "drill "+d.name)
	if err != nil {
		return jobs.Result{}, err
	}
	defer release()

	report := newDBDrillReport(d.name, d.cfg.Node, started, d.cfg.RTOTargetTotal)
	set, manifests, notes, err := d.chooseSet(ctx)
	report.Notes = append(report.Notes, notes...)
	if err != nil {
		return jobs.Result{}, fmt.Errorf("drill %s: %w", d.name, err)
	}
	report.Set = set

	scratch, err := os.MkdirTemp(d.cfg.TempDir, scratch.Pattern("drill"))
	if err != nil {
		return jobs.Result{}, fmt.Errorf("drill %s: scratch dir: %w", d.name, err)
	}
	defer os.RemoveAll(scratch)

	targets := make([]jobs.TargetResult, len(d.cfg.Databases))
	detail := make([]DrillTarget, len(d.cfg.Databases))
	jobs.ForEach(ctx, len(d.cfg.Databases), d.cfg.Parallel, func(i int) {
		db := d.cfg.Databases[i]
		m, ok := manifests[db.Name]
		targets[i], detail[i] = d.drillOne(ctx, db, m, ok, set, scratch)
	}, func(i int) {
		targets[i] = jobs.TargetResult{Name: d.cfg.Databases[i].Name, Status: jobs.TargetFailed, Err: ctx.Err()}
		detail[i] = DrillTarget{Name: d.cfg.Databases[i].Name, Status: "FAIL", Reason: ctx.Err().Error(), Phases: map[string]float64{}}
	})
	rto := time.Since(started)

	report.writeResults("Platform restore drill", d.cfg.Prefix, detail, "integrity ok, tables present", d.cfg.RTOTargetDB, d.cfg.RTOTargetTotal, rto)
	res := report.result(targets, detail, rto, d.cfg.RTOTargetTotal, d.cfg.FailOnRTOBreach)
	res.Summary = fmt.Sprintf("set %s: %d passed, %d failed, %d skipped, RTO %s", set, report.PassedCount, report.FailedCount, report.SkippedCount, seconds(rto))
	runErr := report.missedObjective(d.cfg.FailOnRTOBreach)
	if report.FailedCount > 0 {
		runErr = res.TargetsError("databases")
	}
	return res, uploadReport(ctx, d.store, d.cfg.ReportKey, d.cfg.Now(), &res, runErr)
}

// chooseSet finds the newest date whose set holds every required database with a manifest.
func (d *PlatformDrill) chooseSet(ctx context.Context) (string, map[string]artifact.Manifest, []string, error) {
	var required []string
	for _, db := range d.cfg.Databases {
		if !db.Optional {
			required = append(required, db.Name)
		}
	}
	return d.cfg.Layout.ChooseSet(ctx, d.store, required, d.cfg.Lookback, d.cfg.Date, false)
}

func (d *PlatformDrill) drillOne(ctx context.Context, db DrillDatabase, m artifact.Manifest, found bool, set, scratch string) (jobs.TargetResult, DrillTarget) {
	start := time.Now()
	t := jobs.TargetResult{Name: db.Name, StatusKind: "drill"}
	dt := DrillTarget{Name: db.Name, Phases: map[string]float64{}}
	var tm jobs.Timer
	finish := func(status string, reason error) (jobs.TargetResult, DrillTarget) {
		t.Phases, t.Duration = tm.Phases(), time.Since(start)
		for _, p := range t.Phases {
			dt.Phases[p.Name] += p.Duration.Seconds()
		}
		dt.Seconds = jobs.Total(t.Phases).Seconds()
		dt.Status = status
		switch status {
		case "PASS":
			t.Status = jobs.TargetOK
		case "SKIP":
			t.Status, t.Note = jobs.TargetSkipped, "optional database not in set "+set
		default:
			t.Status, t.Err, dt.Reason = jobs.TargetFailed, reason, reason.Error()
		}
		if len(dt.Warnings) > 0 {
			t.Note = strings.Join(dt.Warnings, "; ")
		}
		return t, dt
	}
	if !found {
		if db.Optional {
			return finish("SKIP", nil)
		}
		return finish("FAIL", fmt.Errorf("no backup with a manifest in set %s", set))
	}
	t.Key, dt.Key, dt.SizeBytes, t.Bytes = m.Key, m.Key, m.Size, m.Size

	// Download, SHA-256 and decode in one pass into the scratch database: the stored bytes are
	// never written to disk and read back. Nothing opens the file as a database before the
	// whole object matched its manifest. The file goes as soon as this database is done, so its
	// pages are freed (often before the kernel ever writes them back) while others still run.
	tm.Start("download")
	dbPath := filepath.Join(scratch, db.Name+".db")
	defer sqlite.RemoveDB(dbPath)
	got, err := fetchDecoded(ctx, d.store, m, d.cfg.Identities, dbPath)
	defer got.close()
	tm.Start("verify")
	switch {
	case got.n == 0 && err == nil:
		return finish("FAIL", errors.New("empty file"))
	case got.n != m.Size && got.complete:
		return finish("FAIL", fmt.Errorf("size mismatch: object has %d bytes, manifest says %d", got.n, m.Size))
	case got.sum != m.SHA256 && got.complete:
		return finish("FAIL", fmt.Errorf("sha256 mismatch: object has %s, manifest says %s", got.sum, m.SHA256))
	case err != nil:
		return finish("FAIL", err)
	}
	tm.Start("decode")
	if err := got.close(); err != nil {
		return finish("FAIL", fmt.Errorf("decode %s: %w", m.Key, err))
	}
	tm.Start("integrity")
	if err := sqlite.Check(ctx, dbPath); err != nil {
		return finish("FAIL", err)
	}
	tm.Start("tables")
	info, err := sqlite.Inspect(ctx, dbPath)
	if err != nil {
		return finish("FAIL", err)
	}
	have := map[string]bool{}
	for _, tb := range info.Tables {
		have[tb] = true
	}
	var missing []string
	for _, tb := range db.Tables {
		if !have[tb] {
			missing = append(missing, tb)
		}
	}
	switch len(missing) {
	case 0:
	case 1:
		return finish("FAIL", fmt.Errorf("missing table: %s", missing[0]))
	default:
		return finish("FAIL", fmt.Errorf("missing tables: %s", strings.Join(missing, ", ")))
	}
	for _, tb := range db.Critical {
		if n, err := sqlite.CountRows(ctx, dbPath, tb); err == nil && n == 0 {
			dt.Warnings = append(dt.Warnings, fmt.Sprintf("critical table %s is empty", tb))
		}
	}
	return finish("PASS", nil)
}

// fetched is what fetchDecoded read: the stored object's size and SHA-256 (complete: the whole
// object was read, so they are its real size and sum), and the decoded file, still open.
type fetched struct {
	n        int64
	sum      string
	complete bool
	out      *os.File
}

// close closes the decoded file (again: a no-op).
func (f *fetched) close() error {
	if f.out == nil {
		return nil
	}
	err := f.out.Close()
	f.out = nil
	return err
}

// drillCopyBuf is the copy buffer of a drill download (few large writes).
const drillCopyBuf = 1 << 20

// fetchDecoded streams the object of m from the store through SHA-256 and the manifest's
// decryption and decompression into a new file at to. When decoding fails (a corrupt object),
// the rest of the object is still read so the caller can report the checksum mismatch that
// caused it rather than a decompressor's complaint.
func fetchDecoded(ctx context.Context, store storage.Store, m artifact.Manifest, ids []age.Identity, to string) (fetched, error) {
	var f fetched
	rc, _, err := store.Get(ctx, m.Key)
	if err != nil {
		return f, fmt.Errorf("download: %w", err)
	}
	defer rc.Close()
	h := sha256.New()
	cr := &countingReader{r: rc}
	stored := io.TeeReader(cr, h)
	out, err := os.Create(to)
	if err != nil {
		return f, fmt.Errorf("download: %w", err)
	}
	f.out = out
	buf := make([]byte, drillCopyBuf)
	var copyErr, setupErr error
	if m.Compression == artifact.None && m.Encryption == "" {
		_, copyErr = io.CopyBuffer(out, stored, buf)
	} else {
		dec, err := artifact.Decode(stored, m, ids, io.NopCloser(nil))
		if err != nil {
			copyErr, setupErr = err, err // names the key already
		} else {
			_, copyErr = io.CopyBuffer(out, dec, buf)
			dec.Close()
		}
	}
	if copyErr != nil && ctx.Err() == nil {
		// Read what is left (bounded by the object's size) to learn the checksum.
		if _, err := io.CopyBuffer(io.Discard, stored, buf); err == nil {
			f.complete = true
		}
	} else if copyErr == nil {
		// A decoder may stop before the end of what was stored: the sum covers every byte.
		if _, err := io.CopyBuffer(io.Discard, stored, buf); err != nil {
			copyErr = err
		} else {
			f.complete = true
		}
	}
	f.n, f.sum = cr.n, hex.EncodeToString(h.Sum(nil))
	if copyErr != nil {
		f.close()
		switch {
		case setupErr != nil:
			return f, setupErr
		case cr.err != nil:
			return f, fmt.Errorf("download %s: %w", m.Key, copyErr)
		}
		return f, fmt.Errorf("decode %s: %w", m.Key, copyErr)
	}
	return f, nil
}

// countingReader counts the bytes read through it and keeps its read error.
type countingReader struct {
	r   io.Reader
	n   int64
	err error
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	if err != nil && err != io.EOF {
		c.err = err
	}
	return n, err
}
