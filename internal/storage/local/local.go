// Package local is the filesystem object store: keys are paths under a root directory. Uploads
// go to a temporary name in the same directory and are renamed into place after an fsync, so a
// crash never leaves a partial object at the final key.
package local

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/wopr-network/opsd/internal/storage"
)

const tmpPrefix = ".opsd-upload-"

// ErrRootGone is the error of every operation once the store's root directory is gone (an
// unmounted disk, a removed directory) or is no longer the store (its marker file is missing): the
// store never recreates it, which would put backups on whatever disk holds its parent (or the
// empty mount point) and make every stored backup look deleted.
var ErrRootGone = errors.New("the local store's root directory is gone or not the store (unmounted or removed)")

// MarkerName is the file at the root that identifies a store: written when the store is created,
// checked by every operation. It is never a key.
const MarkerName = ".opsd-store"

// Store is a filesystem object store.
type Store struct {
	root string
	id   string // the marker's content
}

// New returns a store rooted at dir, creating it (and its marker) when it does not exist yet.
// Once opened, the root is never created again: when it disappears, or its marker does (a disk
// unmounted under a running opsd leaves the empty mount point), every operation fails with
// ErrRootGone (so does storage.Probe).
func New(dir string) (*Store, error) { return Open(dir, "") }

// Open is New that also remembers the store in memo (a file outside the store, beside opsd's
// state database): once memo names this root with the store's marker, a root without that marker
// (the disk did not mount at boot, so the directory is the empty mount point) is refused with
// ErrRootGone instead of becoming a new, empty store on the wrong disk. Deleting memo accepts the
// directory as a new store. memo "" remembers nothing.
func Open(dir, memo string) (*Store, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("local store %s: %w", dir, err)
	}
	remembered := readMemo(memo, abs)
	id, err := readMarker(abs)
	switch {
	case err == nil && remembered != "" && id != remembered:
		return nil, fmt.Errorf("local store %s: %w: its marker %s names store %s, but this opsd last used store %s there (a different disk is mounted?); mount the right one, or delete %s to accept this one",
			abs, ErrRootGone, MarkerName, id, remembered, memo)
	case err == nil:
	case !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("local store %s: %w", dir, err)
	case remembered != "":
		return nil, fmt.Errorf("local store %s: %w: %s is missing, but this opsd stored backups there as store %s (the disk holding them is not mounted?); mount it, or delete %s to start a new, empty store in this directory",
			abs, ErrRootGone, MarkerName, remembered, memo)
	default:
		if id, err = createMarker(abs); err != nil {
			if st, serr := os.Stat(abs); serr == nil && st.IsDir() {
				// A store this opsd never used that cannot take a marker (an older opsd's disk
				// mounted read-only to restore from): opened unmarked, checked as a directory.
				return &Store{root: abs}, nil
			}
			return nil, fmt.Errorf("local store %s: %w", dir, err)
		}
	}
	if remembered != id && memo != "" {
		// Not remembered when memo's directory does not exist (a CLI listing backups on a machine
		// without opsd's state): the store still opens, only without the check at the next open.
		if err := writeMemo(memo, abs, id); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("local store %s: remember it: %w", dir, err)
		}
	}
	return &Store{root: abs, id: id}, nil
}

func readMarker(root string) (string, error) {
	b, err := os.ReadFile(filepath.Join(root, MarkerName))
	if err != nil {
		return "", err
	}
	id := strings.TrimSpace(string(b))
	if id == "" {
		return "", fmt.Errorf("%s: empty store marker", filepath.Join(root, MarkerName))
	}
	return id, nil
}

// testHookCreateMarker, when set (tests), runs first in createMarker; an error fails it (a
// read-only file system).
var testHookCreateMarker func(root string) error

// createMarker creates the root (when missing) and its marker with a new id.
func createMarker(root string) (string, error) {
	if testHookCreateMarker != nil {
		if err := testHookCreateMarker(root); err != nil {
			return "", err
		}
	}
	if err := os.MkdirAll(root, 0o750); err != nil {
		return "", err
	}
	id := storage.NewUploadID()
	if err := writeFileSync(filepath.Join(root, MarkerName), id+"\n"); err != nil {
		return "", fmt.Errorf("write store marker: %w", err)
	}
	return id, nil
}

// readMemo returns the store id memo remembers for root ("" when none).
func readMemo(memo, root string) string {
	if memo == "" {
		return ""
	}
	b, err := os.ReadFile(memo)
	if err != nil {
		return ""
	}
	r, id, ok := strings.Cut(strings.TrimSpace(string(b)), "\t")
	if !ok || r != root {
		return ""
	}
	return id
}

func writeMemo(memo, root, id string) error {
	tmp := memo + ".tmp-" + storage.NewUploadID()
	if err := writeFileSync(tmp, root+"\t"+id+"\n"); err != nil {
		return err
	}
	if err := os.Rename(tmp, memo); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

func writeFileSync(path, content string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(content); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// Root returns the store's directory.
func (s *Store) Root() string { return s.root }

func (s *Store) String() string { return "file://" + s.root }

// rootErr is nil while the root is this store's directory (its marker there), else an error
// wrapping ErrRootGone.
func (s *Store) rootErr() error {
	if s.id == "" { // unmarked (read-only): the directory must still be there
		if st, err := os.Stat(s.root); err != nil || !st.IsDir() {
			return fmt.Errorf("%s: %w: %v", s.root, ErrRootGone, err)
		}
		return nil
	}
	id, err := readMarker(s.root)
	if err == nil && id != s.id {
		err = fmt.Errorf("%s names another store", MarkerName)
	}
	if err != nil {
		return fmt.Errorf("%s: %w: %v", s.root, ErrRootGone, err)
	}
	return nil
}

// notFound is the error of an object that does not exist: ErrNotFound while the root is there,
// the root's error when it is gone (an empty answer would say every backup was deleted).
func (s *Store) notFound(op, key string) error {
	if err := s.rootErr(); err != nil {
		return fmt.Errorf("%s %s: %w", op, key, err)
	}
	return fmt.Errorf("%s %s: %w", op, key, storage.ErrNotFound)
}

func (s *Store) path(key string) (string, error) {
	if key == "" || strings.HasPrefix(key, "/") || strings.Contains(key, "\\") {
		return "", fmt.Errorf("invalid key %q", key)
	}
	for _, part := range strings.Split(key, "/") {
		if part == "" || part == "." || part == ".." || strings.HasPrefix(part, tmpPrefix) || part == MarkerName {
			return "", fmt.Errorf("invalid key %q", key)
		}
	}
	return filepath.Join(s.root, filepath.FromSlash(key)), nil
}

// ctxReader fails reads once ctx is done, so a cancelled upload stops.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// Put writes the stream to a temporary file beside the key and renames it into place.
func (s *Store) Put(ctx context.Context, key string, r io.Reader, _ storage.PutOptions) (storage.ObjectInfo, error) {
	p, err := s.path(key)
	if err != nil {
		return storage.ObjectInfo{}, fmt.Errorf("put %s: %w", key, err)
	}
	if err := s.rootErr(); err != nil {
		return storage.ObjectInfo{}, fmt.Errorf("put %s: %w", key, err)
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o750); err != nil {
		return storage.ObjectInfo{}, fmt.Errorf("put %s: %w", key, err)
	}
	f, err := os.CreateTemp(filepath.Dir(p), tmpPrefix+"*")
	if err != nil {
		return storage.ObjectInfo{}, fmt.Errorf("put %s: %w", key, err)
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	n, err := io.Copy(f, ctxReader{ctx, r})
	if err != nil {
		return storage.ObjectInfo{}, fmt.Errorf("put %s: %w", key, err)
	}
	if err := f.Sync(); err != nil {
		return storage.ObjectInfo{}, fmt.Errorf("put %s: %w", key, err)
	}
	if err := f.Close(); err != nil {
		return storage.ObjectInfo{}, fmt.Errorf("put %s: %w", key, err)
	}
	if err := ctx.Err(); err != nil {
		return storage.ObjectInfo{}, fmt.Errorf("put %s: %w", key, err)
	}
	if err := os.Rename(tmp, p); err != nil {
		return storage.ObjectInfo{}, fmt.Errorf("put %s: %w", key, err)
	}
	ok = true
	syncDir(filepath.Dir(p))
	st, err := os.Stat(p)
	if err != nil {
		return storage.ObjectInfo{}, fmt.Errorf("put %s: %w", key, err)
	}
	return storage.ObjectInfo{Key: key, Size: n, ModTime: st.ModTime().UTC()}, nil
}

// Copy replaces dst with src: a hard link (a byte copy where links fail) under a temporary name
// beside dst, renamed into place, so dst holds either its old file or the whole of src.
func (s *Store) Copy(ctx context.Context, src, dst string) (storage.ObjectInfo, error) {
	sp, err := s.path(src)
	if err != nil {
		return storage.ObjectInfo{}, fmt.Errorf("copy %s to %s: %w", src, dst, err)
	}
	dp, err := s.path(dst)
	if err != nil {
		return storage.ObjectInfo{}, fmt.Errorf("copy %s to %s: %w", src, dst, err)
	}
	if _, err := os.Stat(sp); errors.Is(err, fs.ErrNotExist) {
		return storage.ObjectInfo{}, fmt.Errorf("copy %s to %s: %w", src, dst, s.notFound("stat", src))
	}
	if err := os.MkdirAll(filepath.Dir(dp), 0o750); err != nil {
		return storage.ObjectInfo{}, fmt.Errorf("copy %s to %s: %w", src, dst, err)
	}
	tmp := filepath.Join(filepath.Dir(dp), tmpPrefix+"copy-"+storage.NewUploadID())
	if err := os.Link(sp, tmp); err != nil {
		in, err := os.Open(sp)
		if err != nil {
			return storage.ObjectInfo{}, fmt.Errorf("copy %s to %s: %w", src, dst, err)
		}
		defer in.Close()
		if _, err := s.Put(ctx, dst, in, storage.PutOptions{Size: -1}); err != nil {
			return storage.ObjectInfo{}, fmt.Errorf("copy %s to %s: %w", src, dst, err)
		}
		return s.Stat(ctx, dst)
	}
	if err := os.Rename(tmp, dp); err != nil {
		os.Remove(tmp)
		return storage.ObjectInfo{}, fmt.Errorf("copy %s to %s: %w", src, dst, err)
	}
	syncDir(filepath.Dir(dp))
	return s.Stat(ctx, dst)
}

func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}

// Get opens the object's file.
func (s *Store) Get(ctx context.Context, key string) (io.ReadCloser, storage.ObjectInfo, error) {
	p, err := s.path(key)
	if err != nil {
		return nil, storage.ObjectInfo{}, fmt.Errorf("get %s: %w", key, err)
	}
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, storage.ObjectInfo{}, s.notFound("get", key)
	}
	if err != nil {
		return nil, storage.ObjectInfo{}, fmt.Errorf("get %s: %w", key, err)
	}
	st, err := f.Stat()
	if err != nil || st.IsDir() {
		f.Close()
		return nil, storage.ObjectInfo{}, fmt.Errorf("get %s: %w", key, storage.ErrNotFound)
	}
	return f, storage.ObjectInfo{Key: key, Size: st.Size(), ModTime: st.ModTime().UTC()}, nil
}

// Stat returns the object's size and time.
func (s *Store) Stat(ctx context.Context, key string) (storage.ObjectInfo, error) {
	p, err := s.path(key)
	if err != nil {
		return storage.ObjectInfo{}, fmt.Errorf("stat %s: %w", key, err)
	}
	st, err := os.Stat(p)
	if errors.Is(err, fs.ErrNotExist) || (err == nil && st.IsDir()) {
		return storage.ObjectInfo{}, s.notFound("stat", key)
	}
	if err != nil {
		return storage.ObjectInfo{}, fmt.Errorf("stat %s: %w", key, err)
	}
	return storage.ObjectInfo{Key: key, Size: st.Size(), ModTime: st.ModTime().UTC()}, nil
}

// List walks the directory tree under the prefix in key order.
func (s *Store) List(ctx context.Context, prefix string, fn func(storage.ObjectInfo) error) error {
	if err := s.rootErr(); err != nil {
		return fmt.Errorf("list %s: %w", prefix, err)
	}
	var keys []storage.ObjectInfo
	err := filepath.WalkDir(s.root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, _ := filepath.Rel(s.root, p)
		key := filepath.ToSlash(rel)
		if d.IsDir() {
			if p != s.root && !strings.HasPrefix(key+"/", prefix) && !strings.HasPrefix(prefix, key+"/") {
				return filepath.SkipDir
			}
			return nil
		}
		if strings.HasPrefix(d.Name(), tmpPrefix) || key == MarkerName || !strings.HasPrefix(key, prefix) {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return nil // removed while listing
		}
		keys = append(keys, storage.ObjectInfo{Key: key, Size: info.Size(), ModTime: info.ModTime().UTC()})
		return nil
	})
	if err != nil {
		return fmt.Errorf("list %s: %w", prefix, err)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].Key < keys[j].Key })
	for _, k := range keys {
		if err := fn(k); err != nil {
			return err
		}
	}
	return nil
}

// Delete removes the object's file and any directories it leaves empty.
func (s *Store) Delete(ctx context.Context, key string) error {
	p, err := s.path(key)
	if err != nil {
		return fmt.Errorf("delete %s: %w", key, err)
	}
	if err := os.Remove(p); errors.Is(err, fs.ErrNotExist) {
		if err := s.rootErr(); err != nil {
			return fmt.Errorf("delete %s: %w", key, err)
		}
	} else if err != nil {
		return fmt.Errorf("delete %s: %w", key, err)
	}
	for dir := filepath.Dir(p); dir != s.root && strings.HasPrefix(dir, s.root); dir = filepath.Dir(dir) {
		if os.Remove(dir) != nil {
			break
		}
	}
	return nil
}

// AbortIncompleteUploads removes temporary upload files left by a crash.
func (s *Store) AbortIncompleteUploads(ctx context.Context, prefix string, olderThan time.Duration) (int, error) {
	n := 0
	cutoff := time.Now().Add(-olderThan)
	err := filepath.WalkDir(s.root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasPrefix(d.Name(), tmpPrefix) {
			return nil
		}
		rel, _ := filepath.Rel(s.root, p)
		if !strings.HasPrefix(filepath.ToSlash(rel), prefix) {
			return nil
		}
		if info, err := d.Info(); err == nil && info.ModTime().Before(cutoff) {
			if os.Remove(p) == nil {
				n++
			}
		}
		return nil
	})
	return n, err
}
