package restore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"sync"

	"filippo.io/age"

	"github.com/wopr-network/opsd/internal/artifact"
	"github.com/wopr-network/opsd/internal/storage"
)

// ImageImporter is what a streamed, verified import needs from Docker.
type ImageImporter interface {
	Import(ctx context.Context, r io.Reader, ref string) (string, error)
	RemoveImage(ctx context.Context, id string) error
}

// importHoldBack is how much of the decoded tar stream the engine only receives once the whole
// artifact's SHA-256 matched: the end of the last entry and the end-of-archive marker, so the
// engine cannot complete the image from unverified bytes.
const importHoldBack = 64 << 10

// errImportEnded stops the feeder's writes once the engine's import call returned.
var errImportEnded = errors.New("the engine's import ended before it received the whole verified archive")

// ImportVerified downloads an artifact and imports it as image ref in one pass: the stored bytes
// are hashed as they arrive, decrypted and decompressed (in parallel with the engine's own work),
// checked to form a complete tar, and fed to the engine's import. No temporary file, no second
// read. The last importHoldBack bytes of the tar are sent only after the whole object was read
// and its size and SHA-256 matched the manifest; on a mismatch the stream is cut instead, so the
// engine's import fails on a truncated tar, and any image of ref is removed: a checksum failure
// returns an error wrapping artifact.ErrChecksum and leaves no image behind. phase, when set, is
// called with "verify" once the last stored byte arrived and with "import" once it verified
// (the time before is the download, overlapped with the import).
func ImportVerified(ctx context.Context, store storage.Store, e ImageImporter, m artifact.Manifest, ids []age.Identity, ref string, onBytes artifact.Progress, phase func(string)) (string, error) {
	if phase == nil {
		phase = func(string) {}
	}
	gctx, cancel := context.WithCancel(ctx)
	defer cancel()
	rc, info, err := store.Get(gctx, m.Key)
	if err != nil {
		return "", fmt.Errorf("download %s: %w", m.Key, err)
	}
	if info.Size != m.Size {
		rc.Close()
		return "", fmt.Errorf("%s: %d bytes stored, manifest says %d: %w (nothing imported)", m.Key, info.Size, m.Size, artifact.ErrChecksum)
	}
	hr := &hashingReader{r: rc, h: sha256.New(), total: m.Size, progress: onBytes}
	dec, err := artifact.Decode(hr, m, ids, rc)
	if err != nil {
		return "", err
	}
	defer dec.Close()
	tv := artifact.NewTarVerifier(dec)
	defer tv.Close()

	pr, pw := io.Pipe()
	fed := make(chan error, 1)
	go func() {
		err := safeFeed(pw, tv, hr, m, phase)
		fed <- err // before the engine can see the stream end, so a cut stream's cause is known
		if err != nil {
			pw.CloseWithError(err)
		} else {
			pw.Close()
		}
	}()
	image, ierr := e.Import(ctx, pr, ref)
	var ferr error
	fedFirst := false
	select {
	case ferr = <-fed:
		fedFirst = true
	default:
	}
	// The feeder still reads and hashes the rest of the object: a failed import of a changed
	// object is reported as the checksum mismatch it is.
	pr.CloseWithError(errImportEnded)
	if !fedFirst {
		ferr = <-fed
	}
	if ferr == nil && ierr == nil {
		return image, nil
	}
	// The import is not trusted: whatever the engine made of the stream goes.
	cleanup := context.WithoutCancel(ctx)
	var rerr error
	if image != "" {
		rerr = e.RemoveImage(cleanup, image)
	}
	rerr = errors.Join(rerr, e.RemoveImage(cleanup, ref))
	// The cause: the stream's failure when it came first (the engine then saw a cut stream) or
	// is a checksum mismatch, else the engine's.
	err = ierr
	if ferr != nil && (ierr == nil || fedFirst || errors.Is(ferr, artifact.ErrChecksum)) {
		err = ferr
	}
	if rerr != nil {
		return "", fmt.Errorf("import %s: %w; removing the unverified image %s failed: %v", m.Key, err, ref, rerr)
	}
	return "", fmt.Errorf("import %s: %w (no image kept)", m.Key, err)
}

// feed copies the verified tar stream into w, holding back its last importHoldBack bytes until
// the stored object was read to its end and matched the manifest. Whatever stops the stream (a
// decoding error, the engine's import ending or failing), the rest of the stored object is still
// read and hashed, so a changed object is always reported as a checksum mismatch and a success
// always means the whole object verified.
func feed(w io.Writer, tv *artifact.TarVerifier, hr *hashingReader, m artifact.Manifest, phase func(string)) error {
	buf := make([]byte, 0, 1<<20+importHoldBack)
	for {
		n, err := tv.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if len(buf) == cap(buf) {
			send := len(buf) - importHoldBack
			if _, werr := w.Write(buf[:send]); werr != nil {
				if cerr := checkRest(hr, m); cerr != nil {
					return cerr
				}
				return errImportEnded
			}
			buf = buf[:copy(buf, buf[send:])]
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			// Bytes that do not decode are most often bytes that changed in storage: when the
			// object does not match its manifest either, that is the error to report.
			if cerr := checkRest(hr, m); errors.Is(cerr, artifact.ErrChecksum) {
				return fmt.Errorf("%w (decoding failed: %v)", cerr, err)
			}
			return fmt.Errorf("%s: %w", m.Key, err)
		}
	}
	// The decoder may stop before the stored stream's end (trailing bytes): those are hashed too.
	phase("verify")
	if err := checkRest(hr, m); err != nil {
		return err
	}
	phase("import")
	// Every byte is verified now: the engine's answer decides (an engine that stops reading at
	// the end-of-archive marker makes this write fail, which is no error of the stream's).
	w.Write(buf)
	return nil
}

// safeFeed is feed with a panic (a bug, here or in a callback) turned into an error wrapping
// artifact.ErrPanic: the import then fails and its image is removed, instead of the panic
// crashing the daemon (the Runner's recover does not reach this goroutine).
func safeFeed(w io.Writer, tv *artifact.TarVerifier, hr *hashingReader, m artifact.Manifest, phase func(string)) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("import %s: %w", m.Key, artifact.PanicError(p))
		}
	}()
	return feed(w, tv, hr, m, phase)
}

// checkRest reads the rest of the stored object (not decoding it) and compares its size and
// SHA-256 with the manifest.
func checkRest(hr *hashingReader, m artifact.Manifest) error {
	if _, err := io.Copy(io.Discard, hr); err != nil {
		return fmt.Errorf("download %s: %w", m.Key, err)
	}
	if hr.mismatch(m) {
		return fmt.Errorf("%s: sha256 %s (%d bytes), manifest says %s (%d bytes): %w", m.Key, hr.sum(), hr.count(), m.SHA256, m.Size, artifact.ErrChecksum)
	}
	return nil
}

// hashingReader hashes and counts what it reads and reports progress. Reads are serialized: a
// decoder's read-ahead goroutine and the drain after a decoding error may both read.
type hashingReader struct {
	mu       sync.Mutex
	r        io.Reader
	h        hash.Hash
	n, total int64
	progress artifact.Progress
}

func (r *hashingReader) Read(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	n, err := r.r.Read(p)
	r.h.Write(p[:n])
	r.n += int64(n)
	if r.progress != nil && n > 0 {
		if perr := r.report(); perr != nil {
			return n, perr
		}
	}
	return n, err
}

// report calls the progress callback. A panic in it (a bug) is this read's error: the read may
// run on a decoder's read-ahead goroutine, where no recover of opsd's would catch it.
func (r *hashingReader) report() (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = artifact.PanicError(p)
		}
	}()
	r.progress(r.n, r.total)
	return nil
}

func (r *hashingReader) count() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n
}

func (r *hashingReader) sum() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return hex.EncodeToString(r.h.Sum(nil))
}

// mismatch reports whether what was read differs from the manifest's size or SHA-256.
func (r *hashingReader) mismatch(m artifact.Manifest) bool {
	return r.count() != m.Size || r.sum() != m.SHA256
}
