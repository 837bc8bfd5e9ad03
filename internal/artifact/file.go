package artifact

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"

	"filippo.io/age"

	"github.com/wopr-network/opsd/internal/storage"
)

// Progress reports bytes done of total while a download runs.
type Progress func(done, total int64)

type progressReader struct {
	r     io.Reader
	done  int64
	total int64
	fn    Progress
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.done += int64(n)
	p.fn(p.done, p.total)
	return n, err
}

// Download copies an object to a file and returns its SHA-256 and size.
func Download(ctx context.Context, store storage.Store, key, to string) (string, int64, error) {
	return download(ctx, store, key, to, nil, -1)
}

// download copies the object to a file; want >= 0 is the size it must have (refused before a
// byte is copied when the store says otherwise).
func download(ctx context.Context, store storage.Store, key, to string, progress Progress, want int64) (string, int64, error) {
	rc, info, err := store.Get(ctx, key)
	if err != nil {
		return "", 0, fmt.Errorf("download: %w", err)
	}
	defer rc.Close()
	if want >= 0 && info.Size != want {
		return "", 0, fmt.Errorf("download %s: the object has %d bytes, its manifest says %d: %w", key, info.Size, want, ErrChecksum)
	}
	f, err := os.Create(to)
	if err != nil {
		return "", 0, fmt.Errorf("download: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	var src io.Reader = rc
	if progress != nil {
		src = &progressReader{r: rc, total: info.Size, fn: progress}
	}
	n, err := io.Copy(io.MultiWriter(f, h), src)
	if err != nil {
		return "", 0, fmt.Errorf("download %s: %w", key, err)
	}
	if err := f.Close(); err != nil {
		return "", 0, fmt.Errorf("download %s: %w", key, err)
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

// DownloadVerified downloads an artifact to a file and checks its size and SHA-256 against the
// manifest before anything trusts a byte of it; on a mismatch the file is removed. An object
// whose stored size is not the manifest's, or a manifest size beyond the free space, is refused
// before a byte is copied. progress may be nil.
func DownloadVerified(ctx context.Context, store storage.Store, m Manifest, to string, progress Progress) error {
	if err := CheckRoom(filepath.Dir(to), m.Size); err != nil {
		return fmt.Errorf("download %s: %w", m.Key, err)
	}
	sum, n, err := download(ctx, store, m.Key, to, progress, m.Size)
	if err != nil {
		os.Remove(to)
		return err
	}
	if n != m.Size || sum != m.SHA256 {
		os.Remove(to)
		return fmt.Errorf("%s: sha256 %s (%d bytes), manifest says %s (%d bytes): %w", m.Key, sum, n, m.SHA256, m.Size, ErrChecksum)
	}
	return nil
}

// DecodeFile writes a verified download's content (decrypted, decompressed) to a new file.
func DecodeFile(from, to string, m Manifest, ids []age.Identity) error {
	if m.Compression == None && m.Encryption == "" {
		return os.Rename(from, to)
	}
	if err := CheckRoom(filepath.Dir(to), m.RawSize); err != nil {
		return fmt.Errorf("decode %s: %w", m.Key, err)
	}
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	rc, err := Decode(in, m, ids, in)
	if err != nil {
		return err
	}
	defer rc.Close()
	out, err := os.Create(to)
	if err != nil {
		return err
	}
	defer out.Close()
	if _, err := io.Copy(out, rc); err != nil {
		os.Remove(to)
		return fmt.Errorf("decode %s: %w", m.Key, err)
	}
	if err := out.Sync(); err != nil {
		return err
	}
	return out.Close()
}

// CheckRoom fails when the file system holding dir has less than need bytes free (for an
// unprivileged user), so an artifact whose content does not fit is refused before it fills the
// disk the live data shares. A file system that cannot be asked is not refused.
func CheckRoom(dir string, need int64) error {
	var st syscall.Statfs_t
	if need <= 0 || syscall.Statfs(dir, &st) != nil {
		return nil
	}
	if free := int64(st.Bavail) * int64(st.Bsize); free < need {
		return fmt.Errorf("needs %s, %s free in %s", HumanBytes(need), HumanBytes(free), dir)
	}
	return nil
}
