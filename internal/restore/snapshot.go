package restore

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"filippo.io/age"

	"github.com/wopr-network/opsd/internal/artifact"
	"github.com/wopr-network/opsd/internal/storage"
)

// SnapshotOptions configure a WOPR_HOME restore.
type SnapshotOptions struct {
	Store      storage.Store
	BaseDir    string
	Instance   string
	Key        string // default: the newest snapshot under nightly/{node}/{instance}/ or on-demand/{instance}/
	Node       string
	Identities []age.Identity
	Progress   func(string)
	OnBytes    artifact.Progress
	// AfterSwap is called once the directories are swapped (tests inject failures here).
	AfterSwap func() error
	Now       func() time.Time
}

// SnapshotResult describes a WOPR_HOME restore.
type SnapshotResult struct {
	Key string `json:"key"`
	// Previous is where the directory that was replaced is kept.
	Previous string `json:"previous"`
	Files    int    `json:"files"`
}

// SnapshotKey returns the newest snapshot of an instance.
func SnapshotKey(ctx context.Context, store storage.Store, node, instance string) (string, error) {
	var keys []string
	for _, prefix := range []string{"nightly/" + node + "/" + instance + "/", "on-demand/" + instance + "/"} {
		objs, err := storage.ListAll(ctx, store, prefix)
		if err != nil {
			return "", err
		}
		have := map[string]bool{}
		for _, o := range objs {
			have[o.Key] = true
		}
		for _, o := range objs {
			if !artifact.IsManifest(o.Key) && have[artifact.ManifestKey(o.Key)] {
				keys = append(keys, o.Key)
			}
		}
	}
	if len(keys) == 0 {
		return "", fmt.Errorf("no snapshot of %s", instance)
	}
	sort.Strings(keys)
	return keys[len(keys)-1], nil
}

// RestoreSnapshot extracts a snapshot beside the instance directory, swaps the two directories,
// keeps the previous one (INSTANCE.pre-restore-{ts}), and swaps back on any error.
func RestoreSnapshot(ctx context.Context, o SnapshotOptions) (SnapshotResult, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	say := sayer(o.Progress)
	res := SnapshotResult{Key: o.Key}
	if o.Instance == "" || strings.ContainsAny(o.Instance, `/\`) || o.Instance == "." || o.Instance == ".." {
		return res, fmt.Errorf("restore: invalid instance %q", o.Instance)
	}
	m, err := artifact.ReadManifest(ctx, o.Store, o.Key)
	if err != nil {
		return res, fmt.Errorf("restore %s: %w", o.Instance, err)
	}
	ts := o.Now().UTC().Format("20060102T150405Z")
	staging := filepath.Join(o.BaseDir, ".opsd-restore-"+o.Instance+"-"+ts)
	if err := os.MkdirAll(staging, 0o750); err != nil {
		return res, err
	}
	defer os.RemoveAll(staging)
	dl := filepath.Join(staging, "download")
	say("downloading %s", o.Key)
	if err := artifact.DownloadVerified(ctx, o.Store, m, dl, o.OnBytes); err != nil {
		return res, fmt.Errorf("restore %s: %w (nothing was changed)", o.Instance, err)
	}
	f, err := os.Open(dl)
	if err != nil {
		return res, err
	}
	rc, err := artifact.Decode(f, m, o.Identities, f)
	if err != nil {
		return res, fmt.Errorf("restore %s: %w (nothing was changed)", o.Instance, err)
	}
	n, err := extract(rc, filepath.Join(staging, "tree"), o.Instance)
	rc.Close()
	if err != nil {
		return res, fmt.Errorf("restore %s: %w (nothing was changed)", o.Instance, err)
	}
	res.Files = n
	fresh := filepath.Join(staging, "tree", o.Instance)
	if _, err := os.Stat(fresh); err != nil {
		return res, fmt.Errorf("restore %s: the snapshot holds no %s/ directory (nothing was changed)", o.Instance, o.Instance)
	}
	live := filepath.Join(o.BaseDir, o.Instance)
	prev := live + ".pre-restore-" + ts
	hadLive := true
	if err := os.Rename(live, prev); errors.Is(err, os.ErrNotExist) {
		hadLive = false
	} else if err != nil {
		return res, fmt.Errorf("restore %s: %w (nothing was changed)", o.Instance, err)
	}
	if err := os.Rename(fresh, live); err != nil {
		if hadLive {
			os.Rename(prev, live)
		}
		return res, fmt.Errorf("restore %s: %w (rolled back)", o.Instance, err)
	}
	if o.AfterSwap != nil {
		if err := o.AfterSwap(); err != nil {
			os.RemoveAll(live)
			if hadLive {
				os.Rename(prev, live)
			}
			return res, fmt.Errorf("restore %s: %w (rolled back: the directory is as it was)", o.Instance, err)
		}
	}
	if hadLive {
		res.Previous = prev
	}
	say("restored %s (%d entries); the previous directory is kept at %s", o.Instance, n, prev)
	return res, nil
}

// within reports whether the cleaned relative path p is top or lies under it.
func within(p, top string) bool {
	return p == top || strings.HasPrefix(p, top+"/")
}

// extract unpacks a tar into dir. Every entry must lie under top/; absolute paths, "..",
// and links pointing outside the tree are refused.
func extract(r io.Reader, dir, top string) (int, error) {
	tr := tar.NewReader(r)
	n := 0
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, fmt.Errorf("read snapshot: %w", err)
		}
		name := filepath.Clean(h.Name)
		if filepath.IsAbs(name) || !within(name, top) {
			return n, fmt.Errorf("snapshot entry %q is outside %s/", h.Name, top)
		}
		target := filepath.Join(dir, name)
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(target, os.FileMode(h.Mode)&0o7777|0o700); err != nil {
				return n, err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(target), 0o750); err != nil {
				return n, err
			}
			f, err := os.OpenFile(target, os.O_CREATE|os.O_EXCL|os.O_WRONLY, os.FileMode(h.Mode)&0o777)
			if err != nil {
				return n, err
			}
			if _, err := io.Copy(f, tr); err != nil {
				f.Close()
				return n, err
			}
			if err := f.Close(); err != nil {
				return n, err
			}
			os.Chtimes(target, h.ModTime, h.ModTime)
		case tar.TypeSymlink:
			// Compare cleaned paths by whole components: "bot-10/x" is not inside "bot-1".
			resolved := filepath.Clean(filepath.Join(filepath.Dir(name), h.Linkname))
			if filepath.IsAbs(h.Linkname) || !within(resolved, top) {
				return n, fmt.Errorf("snapshot link %q points outside %s/", h.Name, top)
			}
			if err := os.MkdirAll(filepath.Dir(target), 0o750); err != nil {
				return n, err
			}
			if err := os.Symlink(h.Linkname, target); err != nil {
				return n, err
			}
		default:
			continue // devices, fifos: not part of a WOPR_HOME
		}
		n++
	}
}
