package restore

import (
	"archive/tar"
	"context"
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
	"github.com/wopr-network/opsd/internal/storage"
)

// SnapshotOptions configure a WOPR_HOME restore.
type SnapshotOptions struct {
	Store      storage.Store
	BaseDir    string
	Instance   string
	Key        string // default: SnapshotKey, the newest nightly or on-demand snapshot
	Node       string
	Identities []age.Identity
	Progress   func(string)
	OnBytes    artifact.Progress
	// AfterSwap is called once the directories are swapped (tests inject failures here).
	AfterSwap func() error
	Now       func() time.Time
	// Tracker times the phases and records where the previous directory is kept before the
	// swap (nil: not tracked).
	Tracker *Tracker
}

// SnapshotResult describes a WOPR_HOME restore.
type SnapshotResult struct {
	Key string `json:"key"`
	// Previous is where the directory that was replaced is kept.
	Previous string `json:"previous"`
	Files    int    `json:"files"`
}

// SnapshotKey returns the newest snapshot of an instance (nightly or on-demand) with a manifest.
// l nil means the default layout.
func SnapshotKey(ctx context.Context, store storage.Store, l *layout.Layout, node, instance string) (string, error) {
	if l == nil {
		l = layout.Default()
	}
	a, ok, err := l.Newest(ctx, store, layout.Fields{Node: node, Target: instance}, layout.Snapshot, layout.OnDemand)
	if err != nil {
		return "", err
	}
	if !ok {
		return "", fmt.Errorf("no snapshot of %s", instance)
	}
	return a.Key, nil
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
	ts := layout.Stamp(o.Now())
	staging := filepath.Join(o.BaseDir, ".opsd-restore-"+o.Instance+"-"+ts)
	if err := os.MkdirAll(staging, 0o750); err != nil {
		return res, err
	}
	defer os.RemoveAll(staging)
	dl := filepath.Join(staging, "download")
	o.Tracker.Phase("download")
	say("downloading %s", o.Key)
	if err := artifact.DownloadVerified(ctx, o.Store, m, dl, o.OnBytes); err != nil {
		return res, fmt.Errorf("restore %s: %w (nothing was changed)", o.Instance, err)
	}
	o.Tracker.Phase("extract")
	if err := artifact.CheckRoom(staging, m.RawSize); err != nil {
		return res, fmt.Errorf("restore %s: extract %s: %w (nothing was changed)", o.Instance, o.Key, err)
	}
	f, err := os.Open(dl)
	if err != nil {
		return res, err
	}
	rc, err := artifact.Decode(f, m, o.Identities, f)
	if err != nil {
		return res, fmt.Errorf("restore %s: %w (nothing was changed)", o.Instance, err)
	}
	n, err := extract(rc, filepath.Join(staging, "tree"), o.Instance, m.RawSize)
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
	o.Tracker.Phase("replace")
	if _, err := os.Lstat(live); err == nil {
		if err := o.Tracker.Safety(ctx, "the previous directory is kept at "+prev); err != nil {
			return res, fmt.Errorf("restore %s: %w", o.Instance, err)
		}
	}
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
		return res, &RolledBackError{Err: fmt.Errorf("restore %s: %w", o.Instance, err), What: "the directory is as it was"}
	}
	if o.AfterSwap != nil {
		if err := o.AfterSwap(); err != nil {
			os.RemoveAll(live)
			if hadLive {
				os.Rename(prev, live)
			}
			return res, &RolledBackError{Err: fmt.Errorf("restore %s: %w", o.Instance, err), What: "the directory is as it was"}
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

// extract unpacks a tar into dir, keeping each entry's mode, owner (uid/gid, when run as root)
// and modification time. Every entry must lie under top/; absolute paths, "..", and links
// pointing outside the tree are refused. Every file operation goes through an os.Root at dir, so
// a chain of links that each point inside on paper ("b" -> ".", "a" -> "b/..") cannot carry a
// later entry out of dir. The files' sizes may add up to at most limit (the archive's content
// size, when known): a sparse or forged entry cannot expand a small archive to fill the disk.
func extract(r io.Reader, dir, top string, limit int64) (int, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return 0, err
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return 0, err
	}
	defer root.Close()
	tr := tar.NewReader(r)
	n, total := 0, int64(0)
	var dirs []*tar.Header // given their mode and owner last: a read-only directory still gets its files
	for {
		h, err := tr.Next()
		if err == io.EOF {
			for i := len(dirs) - 1; i >= 0; i-- {
				if err := keepAttrs(root, filepath.Clean(dirs[i].Name), dirs[i]); err != nil {
					return n, err
				}
			}
			return n, nil
		}
		if err != nil {
			return n, fmt.Errorf("read snapshot: %w", err)
		}
		name := filepath.Clean(h.Name)
		if filepath.IsAbs(name) || !within(name, top) {
			return n, fmt.Errorf("snapshot entry %q is outside %s/", h.Name, top)
		}
		switch h.Typeflag {
		case tar.TypeDir:
			if err := root.MkdirAll(name, 0o700); err != nil {
				return n, fmt.Errorf("snapshot entry %q: %w", h.Name, err)
			}
			dirs = append(dirs, h)
		case tar.TypeReg:
			if total += h.Size; limit > 0 && total > limit {
				return n, fmt.Errorf("snapshot entry %q: %d bytes, beyond the archive's %d bytes of content (a sparse or forged entry)", h.Name, h.Size, limit)
			}
			if err := root.MkdirAll(filepath.Dir(name), 0o750); err != nil {
				return n, fmt.Errorf("snapshot entry %q: %w", h.Name, err)
			}
			f, err := root.OpenFile(name, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
			if err != nil {
				return n, fmt.Errorf("snapshot entry %q: %w", h.Name, err)
			}
			if _, err := io.Copy(f, tr); err != nil {
				f.Close()
				return n, err
			}
			if err := f.Close(); err != nil {
				return n, err
			}
			if err := keepAttrs(root, name, h); err != nil {
				return n, err
			}
		case tar.TypeSymlink:
			// Compare cleaned paths by whole components: "bot-10/x" is not inside "bot-1".
			resolved := filepath.Clean(filepath.Join(filepath.Dir(name), h.Linkname))
			if filepath.IsAbs(h.Linkname) || !within(resolved, top) {
				return n, fmt.Errorf("snapshot link %q points outside %s/", h.Name, top)
			}
			if err := root.MkdirAll(filepath.Dir(name), 0o750); err != nil {
				return n, fmt.Errorf("snapshot entry %q: %w", h.Name, err)
			}
			if err := root.Symlink(h.Linkname, name); err != nil {
				return n, fmt.Errorf("snapshot entry %q: %w", h.Name, err)
			}
			if err := chown(root, name, h); err != nil {
				return n, err
			}
		default:
			continue // devices, fifos: not part of a WOPR_HOME
		}
		n++
	}
}

// keepAttrs gives a restored file or directory (name, under root) its entry's owner, then its
// mode (after the owner: chown clears set-id bits), then its modification time.
func keepAttrs(root *os.Root, name string, h *tar.Header) error {
	if err := chown(root, name, h); err != nil {
		return err
	}
	if err := root.Chmod(name, os.FileMode(h.Mode&0o777)|modeBits(h.Mode)); err != nil {
		return fmt.Errorf("restore mode of %s: %w", h.Name, err)
	}
	if err := root.Chtimes(name, h.ModTime, h.ModTime); err != nil {
		return fmt.Errorf("restore time of %s: %w", h.Name, err)
	}
	return nil
}

// modeBits converts the tar set-id and sticky bits to Go's.
func modeBits(m int64) os.FileMode {
	var out os.FileMode
	if m&0o4000 != 0 {
		out |= os.ModeSetuid
	}
	if m&0o2000 != 0 {
		out |= os.ModeSetgid
	}
	if m&0o1000 != 0 {
		out |= os.ModeSticky
	}
	return out
}

// chown gives name (under root) the entry's uid and gid. Only root can; as anyone else the
// restored files belong to the user running the restore.
func chown(root *os.Root, name string, h *tar.Header) error {
	if os.Geteuid() != 0 {
		return nil
	}
	if err := root.Lchown(name, h.Uid, h.Gid); err != nil {
		return fmt.Errorf("restore owner of %s: %w", h.Name, err)
	}
	return nil
}
