// Package restore puts backups back, safely enough to run at 3 a.m.: every artifact is verified
// against its manifest before a byte is trusted, a safety copy of what is replaced is taken
// first, replacement is atomic, and any failure rolls back to what was there.
package restore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"filippo.io/age"

	"github.com/wopr-network/opsd/internal/artifact"
	"github.com/wopr-network/opsd/internal/docker"
	"github.com/wopr-network/opsd/internal/layout"
	"github.com/wopr-network/opsd/internal/scratch"
	"github.com/wopr-network/opsd/internal/sqlite"
	"github.com/wopr-network/opsd/internal/storage"
)

// Stopper stops and starts the container that uses the databases (the platform API).
type Stopper interface {
	Stop(ctx context.Context, id string, timeout time.Duration) error
	Start(ctx context.Context, id string) error
}

// Database is one database that can be restored.
type Database struct {
	Name string
	Path string
	// Tables must all exist in a backup for it to be accepted (REFERENCE.md's table per database).
	Tables []string
}

// DBOptions configure a database restore.
type DBOptions struct {
	Store storage.Store
	// Layout finds the sets (nil: the default layout).
	Layout     *layout.Layout
	Databases  []Database
	Only       []string
	Date       string // YYYYMMDD; empty: the newest complete set
	Identities []age.Identity
	// DryRun runs every verification step (download, SHA-256, decode, integrity_check, target,
	// tables) and changes nothing: it fails exactly when the real restore would fail before the swap.
	DryRun bool
	// PlanOnly returns the plan without downloading anything.
	PlanOnly bool
	// Live allows swapping the files without stopping a container (nothing uses them, or the
	// operator accepts the risk). Without it, StopContainer is required.
	Live bool
	// RemoveSafetyCopies removes the local NAME.db.pre-restore-{ts} copies after a successful
	// restore (the copies in the store stay). By default they are kept.
	RemoveSafetyCopies bool
	// StopContainer is stopped before the swap and started after it (and after a rollback).
	StopContainer string
	Docker        Stopper
	// StopTimeout is how long the container gets to stop before it is killed (default 30s).
	StopTimeout time.Duration
	// HealthURL is polled after the swap until it answers HTTP 200 with status "ok" or
	// "degraded" (the runbook's definition of up), or HealthTimeout ends.
	HealthURL     string
	HealthTimeout time.Duration
	Node          string
	// Progress receives one line per step; OnBytes follows downloads.
	Progress func(string)
	OnBytes  artifact.Progress
	// AfterReplace is called after each database is swapped in (tests inject failures here).
	AfterReplace func(db string) error
	Now          func() time.Time
	// Tracker times the phases and records the safety copies before the swap (nil: not tracked).
	Tracker *Tracker
}

// DBResult describes a database restore.
type DBResult struct {
	Set       string
	Plan      string
	Databases []DBRestored
	Downtime  time.Duration
}

// DBRestored is one restored database.
type DBRestored struct {
	Name      string `json:"name"`
	Path      string `json:"path"`
	Key       string `json:"key"`
	SafetyKey string `json:"safetyKey,omitempty"`
	// SafetyPath is the local copy of the database as it was (NAME.db.pre-restore-{ts}).
	SafetyPath string `json:"safetyPath,omitempty"`
}

// RestoreDB restores platform databases from one set (runbook Procedure 1).
func RestoreDB(ctx context.Context, o DBOptions) (DBResult, error) {
	if o.Layout == nil {
		o.Layout = layout.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.HealthTimeout == 0 {
		o.HealthTimeout = 2 * time.Minute
	}
	if o.StopTimeout == 0 {
		o.StopTimeout = 30 * time.Second
	}
	say := sayer(o.Progress)
	dbs := o.Databases
	if len(o.Only) > 0 {
		byName := map[string]Database{}
		for _, d := range o.Databases {
			byName[d.Name] = d
		}
		dbs = nil
		for _, n := range o.Only {
			d, ok := byName[n]
			if !ok {
				return DBResult{}, fmt.Errorf("restore: no database named %q", n)
			}
			dbs = append(dbs, d)
		}
	}
	names := make([]string, len(dbs))
	for i, d := range dbs {
		names[i] = d.Name
	}
	set, manifests, notes, err := o.Layout.ChooseSet(ctx, o.Store, names, 30, o.Date, true)
	for _, n := range notes {
		say("note: %s", n)
	}
	if err != nil {
		return DBResult{}, fmt.Errorf("restore: %w", err)
	}
	res := DBResult{Set: set}
	now := o.Now()
	ts := layout.Stamp(now)
	var plan strings.Builder
	fmt.Fprintf(&plan, "Restore of set %s (%s):\n", set, o.Layout.SetPrefix(set))
	for _, d := range dbs {
		m := manifests[d.Name]
		fmt.Fprintf(&plan, "  %-12s %s (%d bytes, sha256 %s…) → %s\n", d.Name, m.Key, m.Size, m.SHA256[:12], d.Path)
		fmt.Fprintf(&plan, "  %-12s safety copy %s.pre-restore-%s and %s\n", "", d.Path, ts, o.Layout.PreRestoreKey(o.Node, d.Name, now, ".db"))
	}
	if o.StopContainer != "" {
		fmt.Fprintf(&plan, "  stop container %s before the swap, start it after\n", o.StopContainer)
	}
	if o.HealthURL != "" {
		fmt.Fprintf(&plan, "  wait for %s to answer 200 with status ok or degraded\n", o.HealthURL)
	}
	res.Plan = plan.String()
	if o.PlanOnly {
		return res, nil
	}
	if !o.DryRun && o.StopContainer == "" && !o.Live {
		return res, errors.New("restore: refusing to replace database files under a running API: pass --stop-container NAME (stop it during the swap) or --live (nothing uses these files) (nothing was changed)")
	}
	if o.StopContainer != "" && o.Docker == nil {
		return res, fmt.Errorf("restore: --stop-container %s needs a Docker engine (nothing was changed)", o.StopContainer)
	}
	// The container to stop must exist (the dry run finds out too, not only the real restore).
	if in, ok := o.Docker.(interface {
		Inspect(ctx context.Context, id string, size bool) (docker.Details, error)
	}); ok && o.StopContainer != "" {
		if _, err := in.Inspect(ctx, o.StopContainer, false); err != nil {
			return res, fmt.Errorf("restore: the container to stop: %w (nothing was changed)", err)
		}
	}

	// 1. Prepare every new file beside its target and prove it, before touching anything.
	type prepared struct {
		db   Database
		m    artifact.Manifest
		temp string
	}
	var ready []prepared
	cleanup := func() {
		for _, p := range ready {
			sqlite.RemoveDB(p.temp)
		}
	}
	for _, d := range dbs {
		m := manifests[d.Name]
		if m.Target != d.Name {
			cleanup()
			return res, fmt.Errorf("restore %s: the backup %s is of %q, not %q (nothing was changed)", d.Name, m.Key, m.Target, d.Name)
		}
		if m.Size == 0 {
			cleanup()
			return res, fmt.Errorf("restore %s: the backup %s is empty (0 bytes) (nothing was changed)", d.Name, m.Key)
		}
		dir := filepath.Dir(d.Path)
		if err := os.MkdirAll(dir, 0o750); err != nil {
			cleanup()
			return res, fmt.Errorf("restore %s: %w", d.Name, err)
		}
		dl := filepath.Join(dir, scratch.Name("restore-"+d.Name, ".download"))
		o.Tracker.Phase("download")
		say("%s: downloading %s", d.Name, m.Key)
		if err := artifact.DownloadVerified(ctx, o.Store, m, dl, o.OnBytes); err != nil {
			cleanup()
			return res, fmt.Errorf("restore %s: %w (nothing was changed)", d.Name, err)
		}
		temp := filepath.Join(dir, scratch.Name("restore-"+d.Name, ".db"))
		o.Tracker.Phase("verify")
		if err := artifact.DecodeFile(dl, temp, m, o.Identities); err != nil {
			os.Remove(dl)
			cleanup()
			return res, fmt.Errorf("restore %s: %w (nothing was changed)", d.Name, err)
		}
		os.Remove(dl)
		ready = append(ready, prepared{d, m, temp})
		if _, err := sqlite.VerifyCopy(ctx, temp, d.Tables); err != nil {
			cleanup()
			return res, fmt.Errorf("restore %s: the backup %s: %w (nothing was changed)", d.Name, m.Key, err)
		}
		if err := matchOwner(temp, d.Path); err != nil {
			cleanup()
			return res, fmt.Errorf("restore %s: %w (nothing was changed)", d.Name, err)
		}
		say("%s: verified (sha256, integrity_check ok, target %s, tables present)", d.Name, m.Target)
	}
	if o.DryRun {
		cleanup()
		say("dry run: every backup verified; nothing was changed")
		return res, nil
	}

	// 2. Safety copies of what is there now: local and in the store.
	o.Tracker.Phase("safety_copy")
	restored := make([]DBRestored, len(ready))
	for i, p := range ready {
		restored[i] = DBRestored{Name: p.db.Name, Path: p.db.Path, Key: p.m.Key}
		if _, err := os.Stat(p.db.Path); errors.Is(err, os.ErrNotExist) {
			say("%s: no current database at %s; nothing to keep", p.db.Name, p.db.Path)
			continue
		}
		safety := p.db.Path + ".pre-restore-" + ts
		if err := sqlite.Backup(ctx, p.db.Path, safety); err != nil {
			cleanup()
			return res, fmt.Errorf("restore %s: safety copy: %w (nothing was changed)", p.db.Name, err)
		}
		f, err := os.Open(safety)
		if err != nil {
			cleanup()
			return res, err
		}
		key := o.Layout.PreRestoreKey(o.Node, p.db.Name, now, ".db")
		_, err = artifact.Store(ctx, o.Store, f, artifact.Options{Compression: artifact.None}, artifact.Manifest{Key: key, Kind: "sqlite", Target: p.db.Name, Source: p.db.Path, Node: o.Node,
			Note: "safety copy taken before restoring " + p.m.Key})
		f.Close()
		if err != nil {
			cleanup()
			return res, fmt.Errorf("restore %s: upload safety copy: %w (nothing was changed)", p.db.Name, err)
		}
		restored[i].SafetyPath, restored[i].SafetyKey = safety, key
		if err := o.Tracker.Safety(ctx, safety+" (store: "+key+")"); err != nil {
			cleanup()
			return res, fmt.Errorf("restore %s: %w", p.db.Name, err)
		}
		say("%s: safety copy %s and %s", p.db.Name, safety, key)
	}
	res.Databases = restored

	// 3. Stop, swap, start, check; roll back on any failure.
	stopped := false
	var downStart time.Time
	start := func() error {
		if !stopped {
			return nil
		}
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		if err := o.Docker.Start(sctx, o.StopContainer); err != nil {
			return err
		}
		stopped = false
		res.Downtime = time.Since(downStart)
		return nil
	}
	var swapped []int
	rollback := func(cause error) error {
		var errs []error
		for _, i := range swapped {
			r := restored[i]
			if r.SafetyPath == "" {
				errs = append(errs, removeDB(r.Path))
				continue
			}
			errs = append(errs, putBack(r.SafetyPath, r.Path))
		}
		errs = append(errs, start())
		cleanup()
		if err := errors.Join(errs...); err != nil {
			return &RollbackFailedError{Err: cause, Rollback: err, Where: "safety copies: " + safetyList(restored)}
		}
		say("rolled back: every database is as it was")
		return &RolledBackError{Err: cause, What: "every database is as it was"}
	}
	if o.StopContainer != "" {
		o.Tracker.Phase("stop")
		say("stopping container %s", o.StopContainer)
		if err := o.Docker.Stop(ctx, o.StopContainer, o.StopTimeout); err != nil {
			cleanup()
			return res, fmt.Errorf("restore: stop %s: %w (nothing was changed)", o.StopContainer, err)
		}
		stopped, downStart = true, time.Now()
	}
	o.Tracker.Phase("replace")
	for i, p := range ready {
		if err := swapIn(p.temp, p.db.Path); err != nil {
			return res, rollback(fmt.Errorf("restore %s: %w", p.db.Name, err))
		}
		swapped = append(swapped, i)
		say("%s: replaced %s", p.db.Name, p.db.Path)
		if o.AfterReplace != nil {
			if err := o.AfterReplace(p.db.Name); err != nil {
				return res, rollback(fmt.Errorf("restore %s: %w", p.db.Name, err))
			}
		}
	}
	o.Tracker.Phase("start")
	if err := start(); err != nil {
		return res, rollback(fmt.Errorf("restore: start %s: %w", o.StopContainer, err))
	}
	if o.HealthURL != "" {
		o.Tracker.Phase("probe")
		say("waiting for %s", o.HealthURL)
		if err := waitHealthy(ctx, o.HealthURL, o.HealthTimeout); err != nil {
			if o.StopContainer != "" {
				sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
				o.Docker.Stop(sctx, o.StopContainer, o.StopTimeout)
				cancel()
				stopped = true
			}
			return res, rollback(fmt.Errorf("restore: %w", err))
		}
	}
	if o.RemoveSafetyCopies {
		for _, r := range restored {
			if r.SafetyPath != "" {
				sqlite.RemoveDB(r.SafetyPath)
				say("%s: removed local safety copy %s (the copy in the store stays: %s)", r.Name, r.SafetyPath, r.SafetyKey)
			}
		}
	}
	say("restored set %s", set)
	return res, nil
}

// matchOwner gives the new file the owner, group and mode of the file it replaces (a database
// restored as root must stay readable by the service that owns it). Without a current file,
// nothing changes.
func matchOwner(newFile, current string) error {
	st, err := os.Stat(current)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("stat %s: %w", current, err)
	}
	if err := os.Chmod(newFile, st.Mode().Perm()); err != nil {
		return fmt.Errorf("keep mode of %s: %w", current, err)
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		if err := os.Lchown(newFile, int(sys.Uid), int(sys.Gid)); err != nil {
			return fmt.Errorf("keep owner of %s (uid %d, gid %d): %w", current, sys.Uid, sys.Gid, err)
		}
	}
	return nil
}

func safetyList(rs []DBRestored) string {
	var out []string
	for _, r := range rs {
		if r.SafetyPath != "" {
			out = append(out, r.SafetyPath)
		}
	}
	return strings.Join(out, ", ")
}

// swapIn replaces target with the prepared file: the old -wal and -shm belong to the old
// database and would corrupt the new one, so they go first; the rename is atomic.
func swapIn(temp, target string) error {
	for _, s := range []string{"-wal", "-shm", "-journal"} {
		if err := os.Remove(target + s); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	if err := os.Rename(temp, target); err != nil {
		return err
	}
	syncDir(filepath.Dir(target))
	return nil
}

// putBack restores the safety copy over target (through a temp copy, so the safety copy stays).
func putBack(safety, target string) error {
	tmp := target + ".opsd-rollback"
	if err := copyFile(safety, tmp); err != nil {
		return err
	}
	if err := matchOwner(tmp, target); err != nil {
		os.Remove(tmp)
		return err
	}
	return swapIn(tmp, target)
}

func removeDB(path string) error {
	sqlite.RemoveDB(path)
	return nil
}

func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(to)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}

// waitHealthy polls url until it answers 200 with status "ok" or "degraded": degraded means the
// API is up and serving (the runbook's definition), so a good restore is not rolled back for it.
func waitHealthy(ctx context.Context, url string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	last := "no answer"
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			var body struct {
				Status string `json:"status"`
			}
			json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && (body.Status == "ok" || body.Status == "degraded") {
				return nil
			}
			last = fmt.Sprintf("status %d, %q", resp.StatusCode, body.Status)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("health check %s did not say ok or degraded within %s (last: %s)", url, timeout, last)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// sayer formats progress lines for an optional progress callback.
func sayer(progress func(string)) func(format string, args ...any) {
	return func(format string, args ...any) {
		if progress != nil {
			progress(fmt.Sprintf(format, args...))
		}
	}
}
