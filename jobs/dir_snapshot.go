package jobs

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"filippo.io/age"

	"github.com/wopr-network/opsd/internal/artifact"
	"github.com/wopr-network/opsd/internal/layout"
	"github.com/wopr-network/opsd/internal/storage"
)

// DirSnapshotConfig configures a DirSnapshot.
type DirSnapshotConfig struct {
	// BaseDir holds one directory per instance (WOPR_HOME: /data/instances/{instanceId}).
	BaseDir string
	// KeyTemplate: {node}, {instance}, {date} (UTC YYYYMMDD), {time} (UTC HHMMSS). Default:
	// layout.DefaultSnapshot.
	KeyTemplate string
	Compression string
	Recipients  []age.Recipient
	Tier        string
	Parallel    int
	Node        string
	Only        []string
	Now         func() time.Time

	// Tiers is where each instance's tier comes from (default: Tier for every instance).
	Tiers *TierSource
}

// DirSnapshot is the `dir_snapshot` kind: each instance directory → tar.gz (top directory = the
// instance) → the store, with a manifest. Files that change or vanish while being read are
// reported without failing the snapshot.
type DirSnapshot struct {
	name  string
	cfg   DirSnapshotConfig
	store storage.Store
	tpl   layout.Template
	err   error    // a bad key template, reported by Run
	tiers runTiers // this run's tier lookup
}

// NewDirSnapshot returns the job.
func NewDirSnapshot(name string, cfg DirSnapshotConfig, store storage.Store) *DirSnapshot {
	if cfg.KeyTemplate == "" {
		cfg.KeyTemplate = layout.DefaultSnapshot
	}
	if cfg.Compression == "" {
		cfg.Compression = artifact.Gzip
	}
	if cfg.Parallel < 1 {
		cfg.Parallel = 2
	}
	if cfg.Tier == "" {
		cfg.Tier = "free"
	}
	if cfg.Tiers == nil {
		cfg.Tiers = FixedTier(cfg.Tier)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	tpl, err := layout.Parse(cfg.KeyTemplate)
	return &DirSnapshot{name: name, cfg: cfg, store: store, tpl: tpl, err: err}
}

// Name returns the job's name.
func (d *DirSnapshot) Name() string { return d.name }

// Kind returns "dir_snapshot".
func (d *DirSnapshot) Kind() string { return "dir_snapshot" }

// WithOnly returns a copy restricted to the named instances.
func (d *DirSnapshot) WithOnly(names []string) *DirSnapshot {
	c := *d
	c.cfg.Only = names
	return &c
}

// Run snapshots every instance directory.
func (d *DirSnapshot) Run(ctx context.Context) (Result, error) {
	if d.err != nil {
		return Result{}, fmt.Errorf("dir snapshot %s: %w", d.name, d.err)
	}
	entries, err := os.ReadDir(d.cfg.BaseDir)
	if err != nil {
		return Result{}, fmt.Errorf("read instances: %w", err)
	}
	only := map[string]bool{}
	for _, n := range d.cfg.Only {
		only[n] = true
	}
	var names []string
	for _, e := range entries {
		if e.IsDir() && !strings.HasPrefix(e.Name(), ".") && (len(only) == 0 || only[e.Name()]) {
			names = append(names, e.Name())
		}
	}
	now := d.cfg.Now()
	run := *d
	run.tiers = loadRunTiers(ctx, d.cfg.Tiers)
	results := make([]TargetResult, len(names))
	ForEach(ctx, len(names), d.cfg.Parallel, func(i int) { results[i] = run.snapshotOne(ctx, names[i], now) }, func(i int) {
		results[i] = TargetResult{Name: names[i], Status: TargetFailed, Tracked: true, StatusKind: "snapshot", Err: ctx.Err()}
	})
	res := Result{Targets: results}
	ok := 0
	for _, t := range results {
		res.Bytes += t.Bytes
		if t.Status == TargetOK {
			ok++
			res.Artifacts = append(res.Artifacts, t.Key)
		}
	}
	if len(only) == 0 {
		res.Retire = &Retire{Kind: "snapshot", Present: names}
	}
	res.Summary = fmt.Sprintf("%d of %d instances snapshotted", ok, len(results))
	return res, res.TargetsError("instances")
}

func (d *DirSnapshot) snapshotOne(ctx context.Context, instance string, now time.Time) TargetResult {
	start := time.Now()
	key := d.tpl.Key(layout.Fields{Node: d.cfg.Node, Target: instance, Date: layout.Date(now), Time: now.UTC().Format(layout.TimeFormat)})
	t := TargetResult{Name: instance, Tracked: true, StatusKind: "snapshot", Key: key + artifact.Suffix(d.cfg.Compression, len(d.cfg.Recipients) > 0)}
	var tm Timer
	tm.Start("archive")
	pr, pw := io.Pipe()
	var warnings []string
	go func() {
		var err error
		defer func() {
			if p := recover(); p != nil {
				err = artifact.PanicError(p) // a bug: this snapshot fails, opsd keeps running
			}
			pw.CloseWithError(err)
		}()
		warnings, err = writeTree(ctx, pw, d.cfg.BaseDir, instance)
	}()
	tier, tierErr := d.tiers.resolve(instance, nil)
	m, err := artifact.Store(ctx, d.store, pr, artifact.Options{Compression: d.cfg.Compression, Recipients: d.cfg.Recipients}, artifact.Manifest{
		Key: t.Key, Kind: "snapshot", Target: instance, Source: filepath.Join(d.cfg.BaseDir, instance), Node: d.cfg.Node, CreatedAt: now.UTC(),
		Tier: tier.Tier, Tenant: tier.Tenant, TierSource: tier.Source,
	})
	pr.Close()
	t.Phases, t.Duration = tm.Phases(), time.Since(start)
	if err != nil {
		t.Status, t.Err = TargetFailed, err
		return t
	}
	t.Status, t.Bytes = TargetOK, m.Size
	if tierErr != nil {
		t.Status, t.Err = TargetFailed, tierError(t.Key, tierErr)
	}
	if len(warnings) > 0 {
		sort.Strings(warnings)
		t.Note = fmt.Sprintf("%d files changed while read: %s", len(warnings), strings.Join(warnings, "; "))
	}
	return t
}

// snapshotHook, when set (tests), runs with the instance's directory before its walk and with
// each regular file's path before the file is opened (see setSnapshotHook).
var snapshotHook atomic.Pointer[func(path string)]

// setSnapshotHook installs f as the snapshot hook and returns a function that removes it: tests
// change the tree under the walk at a chosen point instead of by timing.
func setSnapshotHook(f func(path string)) (remove func()) {
	snapshotHook.Store(&f)
	return func() { snapshotHook.Store(nil) }
}

func atSnapshotHook(path string) {
	if f := snapshotHook.Load(); f != nil {
		(*f)(path)
	}
}

// writeTree writes base/instance as a tar whose top directory is the instance. Files that vanish
// or change size while being read are recorded as warnings; the archive stays well-formed. The
// instance's directory vanishing or being replaced fails the snapshot.
//
// Every path below the instance's directory is resolved inside it (os.Root: openat from the
// directory, never through a symbolic link that leads out of it): the tenant owns the tree and
// may swap a directory or a file for a link to the host's under the walk, which must not land in
// its backup (a restore would hand it over). What such a swap hides is skipped and reported.
func writeTree(ctx context.Context, w io.Writer, base, instance string) ([]string, error) {
	tw := tar.NewWriter(w)
	var warnings []string
	root := filepath.Join(base, instance)
	atSnapshotHook(root)
	// The instance's directory itself must stay the same directory from the walk's start to its
	// end: one that vanishes (the tenant deleted, its volume unmounted) or is replaced (a volume
	// remounted) would otherwise be "backed up" as the few files read before, down to an empty
	// archive, over the day's good backup.
	rootInfo, err := os.Lstat(root)
	if err != nil {
		return nil, fmt.Errorf("instance directory %s vanished before its snapshot (nothing stored): %w", root, err)
	}
	if !rootInfo.IsDir() {
		return nil, fmt.Errorf("instance directory %s is no longer a directory (nothing stored)", root)
	}
	dir, err := os.OpenRoot(root)
	if err != nil {
		return nil, fmt.Errorf("instance directory %s vanished before its snapshot (nothing stored): %w", root, err)
	}
	defer dir.Close()
	if st, err := dir.Stat("."); err != nil || !os.SameFile(rootInfo, st) {
		return nil, fmt.Errorf("instance directory %s was replaced as its snapshot began (nothing stored)", root)
	}
	err = fs.WalkDir(dir.FS(), ".", func(p string, de fs.DirEntry, err error) error {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		name := instance
		if p != "." {
			name += "/" + p
		}
		if err != nil && p == "." {
			return fmt.Errorf("instance directory %s vanished during its snapshot (nothing stored): %w", root, err)
		}
		if err != nil {
			switch {
			case errors.Is(err, fs.ErrNotExist):
				warnings = append(warnings, name+": vanished")
				return nil
			case escapes(err):
				warnings = append(warnings, name+": replaced by a link out of the instance directory while read")
				return nil
			}
			return err
		}
		if p != "." && de.IsDir() {
			atSnapshotHook(filepath.Join(root, filepath.FromSlash(p)))
		}
		info, err := de.Info()
		if err != nil {
			warnings = append(warnings, name+": vanished")
			return nil
		}
		link := ""
		if info.Mode()&fs.ModeSymlink != 0 {
			link, _ = dir.Readlink(p)
		}
		if !info.Mode().IsRegular() && !info.IsDir() && link == "" {
			return nil // sockets, devices, pipes
		}
		var f *os.File
		if info.Mode().IsRegular() {
			atSnapshotHook(filepath.Join(root, filepath.FromSlash(p)))
			var skipped string
			if f, info, skipped = openRegular(dir, p); f == nil {
				warnings = append(warnings, name+": "+skipped)
				return nil
			}
			defer f.Close()
		}
		h, err := tar.FileInfoHeader(info, link)
		if err != nil {
			return err
		}
		h.Name = name
		if info.IsDir() {
			h.Name += "/"
		}
		if !info.Mode().IsRegular() {
			return tw.WriteHeader(h)
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		n, err := io.CopyN(tw, f, h.Size)
		if err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		if n < h.Size {
			// It shrank while read: pad to the size the header promised.
			warnings = append(warnings, name+": shrank while read")
			if _, err := io.CopyN(tw, zeros{}, h.Size-n); err != nil {
				return err
			}
		} else if st, err := f.Stat(); err == nil && (st.Size() != h.Size || !st.ModTime().Equal(info.ModTime())) {
			warnings = append(warnings, name+": changed while read")
		}
		return nil
	})
	if err != nil {
		return warnings, err
	}
	if end, err := os.Lstat(root); err != nil || !os.SameFile(rootInfo, end) {
		return warnings, fmt.Errorf("instance directory %s vanished or was replaced during its snapshot (nothing stored)", root)
	}
	return warnings, tw.Close()
}

// escapes reports whether err is os.Root refusing a path that leads out of its directory (a
// symbolic link to elsewhere; the os package exports no value for it).
func escapes(err error) bool {
	return err != nil && strings.Contains(err.Error(), "path escapes from parent")
}

// openRegular opens p (below dir), which the walk saw as a regular file, without blocking and
// without leaving dir, and returns it with its information now (a file replaced by a rename
// since the walk saw it is read as it is now). The tenant may swap the file meanwhile: for a
// link to a host file, which must not land in the tenant's backup, or for a FIFO, whose open
// would block until a writer comes, past the run's timeout. Anything but a regular file inside
// dir is skipped: f is nil and skipped says why.
func openRegular(dir *os.Root, p string) (f *os.File, info fs.FileInfo, skipped string) {
	f, err := dir.OpenFile(p, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	switch {
	case escapes(err):
		return nil, nil, "replaced by a link out of the instance directory while read"
	case errors.Is(err, fs.ErrNotExist):
		return nil, nil, "vanished"
	case err != nil:
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, nil, "not read: " + err.Error()
	}
	info, err = f.Stat()
	if err != nil || !info.Mode().IsRegular() {
		f.Close()
		return nil, nil, "replaced by a file that is not a regular file while read"
	}
	return f, info, ""
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}
