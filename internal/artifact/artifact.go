// Package artifact streams backups into the object store and back: optional compression (zstd or
// parallel gzip), optional age encryption, SHA-256 and size computed on the way, and the manifest
// that makes an uploaded object count as a backup. An object without a manifest is not a backup:
// drills, verification and pruning ignore it, so a crash mid-upload never looks like a good one.
package artifact

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"strings"
	"time"

	"filippo.io/age"
	"github.com/klauspost/compress/zstd"
	"github.com/klauspost/pgzip"

	"github.com/wopr-network/opsd/internal/storage"
)

// Compression formats.
const (
	None = "none"
	Zstd = "zstd"
	Gzip = "gzip"
)

// ManifestSuffix is appended to an artifact's key to name its manifest.
const ManifestSuffix = ".manifest.json"

// ManifestKey returns the manifest key of an artifact.
func ManifestKey(key string) string { return key + ManifestSuffix }

// IsManifest reports whether key names a manifest.
func IsManifest(key string) bool { return strings.HasSuffix(key, ManifestSuffix) }

// Suffix returns the key suffix for a format: ".zst" for zstd and ".age" when encrypted (gzip's
// ".gz" is part of the key templates that use it, e.g. ".tar.gz").
func Suffix(compression string, encrypted bool) string {
	s := ""
	if compression == Zstd {
		s += ".zst"
	}
	if encrypted {
		s += ".age"
	}
	return s
}

// Manifest describes one artifact. It is written after the artifact's upload succeeded.
type Manifest struct {
	Version     int       `json:"version"`
	Key         string    `json:"key"`
	Kind        string    `json:"kind"`   // sqlite, container, snapshot, postgres
	Target      string    `json:"target"` // database name, container name, instance id
	Source      string    `json:"source"` // file path or container id
	Node        string    `json:"node"`
	CreatedAt   time.Time `json:"createdAt"`
	Size        int64     `json:"size"`
	SHA256      string    `json:"sha256"`
	Compression string    `json:"compression"`
	Encryption  string    `json:"encryption"` // "" or "age"
	// RawSize and RawSHA256 describe the content before compression and encryption.
	RawSize   int64             `json:"rawSize"`
	RawSHA256 string            `json:"rawSha256"`
	Tier      string            `json:"tier,omitempty"`
	SQLite    *SQLiteInfo       `json:"sqlite,omitempty"`
	Container *ContainerInfo    `json:"container,omitempty"`
	Postgres  *PostgresInfo     `json:"postgres,omitempty"`
	Labels    map[string]string `json:"labels,omitempty"`
	Note      string            `json:"note,omitempty"`
}

// SQLiteInfo describes a database backup.
type SQLiteInfo struct {
	PageCount int64    `json:"pageCount"`
	PageSize  int64    `json:"pageSize"`
	Tables    []string `json:"tables"`
}

// ContainerInfo describes a container export.
type ContainerInfo struct {
	ID    string `json:"id"`
	Name  string `json:"name"`
	Image string `json:"image"`
}

// Options say how to encode an artifact.
type Options struct {
	Compression string
	Recipients  []age.Recipient
	// GzipBlockSize and GzipBlocks tune parallel gzip (0: 1 MiB blocks, 4 at once).
	GzipBlockSize, GzipBlocks int
}

// Encryption returns "age" when the options encrypt.
func (o Options) Encryption() string {
	if len(o.Recipients) > 0 {
		return "age"
	}
	return ""
}

// ParseRecipients parses age public keys.
func ParseRecipients(keys []string) ([]age.Recipient, error) {
	var out []age.Recipient
	for _, k := range keys {
		r, err := age.ParseX25519Recipient(strings.TrimSpace(k))
		if err != nil {
			return nil, fmt.Errorf("parse age recipient: %w", err)
		}
		out = append(out, r)
	}
	return out, nil
}

// Uploaded is what Upload stored.
type Uploaded struct {
	Key       string
	Size      int64
	SHA256    string
	RawSize   int64
	RawSHA256 string
}

var errUploadEnded = errors.New("upload ended")

type counter struct {
	h hash.Hash
	n int64
}

func newCounter() *counter { return &counter{h: sha256.New()} }

func (c *counter) Write(p []byte) (int, error) {
	c.h.Write(p)
	c.n += int64(len(p))
	return len(p), nil
}

func (c *counter) sum() string { return hex.EncodeToString(c.h.Sum(nil)) }

// Upload streams src through compression and encryption into the store at key, hashing the raw
// and the stored bytes on the way. Memory stays bounded whatever the size. On any error nothing
// is left at key (the store aborts the upload).
func Upload(ctx context.Context, store storage.Store, key string, src io.Reader, o Options) (Uploaded, error) {
	raw := newCounter()
	stored := newCounter()
	pr, pw := io.Pipe()
	encodeErr := make(chan error, 1)
	go func() {
		err := encode(io.MultiWriter(pw, stored), io.TeeReader(src, raw), o)
		pw.CloseWithError(err)
		encodeErr <- err
	}()
	info, err := store.Put(ctx, key, pr, storage.PutOptions{Size: -1})
	pr.CloseWithError(errUploadEnded) // unblocks the encoder when Put returned early
	eerr := <-encodeErr
	switch {
	case eerr != nil && !errors.Is(eerr, errUploadEnded):
		// The source or the encoder failed: that is the cause, whatever Put said.
		if err == nil {
			store.Delete(context.WithoutCancel(ctx), key)
		}
		return Uploaded{}, fmt.Errorf("upload %s: %w", key, eerr)
	case err != nil:
		return Uploaded{}, fmt.Errorf("upload %s: %w", key, err)
	}
	if info.Size != stored.n {
		store.Delete(context.WithoutCancel(ctx), key)
		return Uploaded{}, fmt.Errorf("upload %s: store reports %d bytes, sent %d", key, info.Size, stored.n)
	}
	return Uploaded{Key: key, Size: stored.n, SHA256: stored.sum(), RawSize: raw.n, RawSHA256: raw.sum()}, nil
}

// encode writes src to w, compressed then encrypted as o says.
func encode(w io.Writer, src io.Reader, o Options) error {
	var closers []io.Closer
	out := w
	if len(o.Recipients) > 0 {
		ew, err := age.Encrypt(out, o.Recipients...)
		if err != nil {
			return fmt.Errorf("encrypt: %w", err)
		}
		closers = append(closers, ew)
		out = ew
	}
	switch o.Compression {
	case Zstd:
		zw, err := zstd.NewWriter(out, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderConcurrency(2))
		if err != nil {
			return fmt.Errorf("compress: %w", err)
		}
		closers = append(closers, zw)
		out = zw
	case Gzip:
		gw := pgzip.NewWriter(out)
		bs, blocks := o.GzipBlockSize, o.GzipBlocks
		if bs == 0 {
			bs = 1 << 20
		}
		if blocks == 0 {
			blocks = 4
		}
		if err := gw.SetConcurrency(bs, blocks); err != nil {
			return fmt.Errorf("compress: %w", err)
		}
		closers = append(closers, gw)
		out = gw
	case None, "":
	default:
		return fmt.Errorf("unknown compression %q", o.Compression)
	}
	if _, err := io.Copy(out, src); err != nil {
		return err
	}
	// Close innermost first: compressor, then encryptor.
	for i := len(closers) - 1; i >= 0; i-- {
		if err := closers[i].Close(); err != nil {
			return err
		}
	}
	return nil
}

// WriteManifest stores the manifest beside its artifact.
func WriteManifest(ctx context.Context, store storage.Store, m Manifest) error {
	m.Version = 1
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return fmt.Errorf("write manifest of %s: %w", m.Key, err)
	}
	if _, err := store.Put(ctx, ManifestKey(m.Key), bytes.NewReader(b), storage.PutOptions{Size: int64(len(b)), ContentType: "application/json"}); err != nil {
		return fmt.Errorf("write manifest of %s: %w", m.Key, err)
	}
	return nil
}

// ReadManifest reads an artifact's manifest; storage.ErrNotFound when it has none.
func ReadManifest(ctx context.Context, store storage.Store, key string) (Manifest, error) {
	rc, _, err := store.Get(ctx, ManifestKey(key))
	if err != nil {
		return Manifest{}, fmt.Errorf("read manifest of %s: %w", key, err)
	}
	defer rc.Close()
	var m Manifest
	if err := json.NewDecoder(io.LimitReader(rc, 1<<20)).Decode(&m); err != nil {
		return Manifest{}, fmt.Errorf("read manifest of %s: %w", key, err)
	}
	if m.Key != key || m.SHA256 == "" {
		return Manifest{}, fmt.Errorf("read manifest of %s: manifest names %q or has no checksum", key, m.Key)
	}
	return m, nil
}

// Store uploads an artifact and then its manifest (filled with size and checksums). When the
// manifest cannot be written the artifact is deleted again: it must never look like a backup.
func Store(ctx context.Context, store storage.Store, src io.Reader, o Options, m Manifest) (Manifest, error) {
	up, err := Upload(ctx, store, m.Key, src, o)
	if err != nil {
		return Manifest{}, err
	}
	m.Size, m.SHA256, m.RawSize, m.RawSHA256 = up.Size, up.SHA256, up.RawSize, up.RawSHA256
	m.Compression = o.Compression
	if m.Compression == "" {
		m.Compression = None
	}
	m.Encryption = o.Encryption()
	if m.CreatedAt.IsZero() {
		m.CreatedAt = time.Now().UTC()
	}
	if err := WriteManifest(ctx, store, m); err != nil {
		store.Delete(context.WithoutCancel(ctx), m.Key)
		return Manifest{}, err
	}
	return m, nil
}

// ErrChecksum is returned when downloaded bytes do not match the manifest.
var ErrChecksum = errors.New("checksum mismatch")

// Open downloads an artifact and returns its decoded content (decrypted with identities and
// decompressed as the manifest says). The stored bytes are hashed as they stream; the reader
// returns ErrChecksum at the end when they differ from the manifest, so a caller that reads to
// EOF never trusts a corrupt artifact. Callers that must not act on any byte before it is
// verified should use Download first.
func Open(ctx context.Context, store storage.Store, m Manifest, identities []age.Identity) (io.ReadCloser, error) {
	rc, info, err := store.Get(ctx, m.Key)
	if err != nil {
		return nil, err
	}
	if info.Size != m.Size {
		rc.Close()
		return nil, fmt.Errorf("open %s: size %d, manifest says %d: %w", m.Key, info.Size, m.Size, ErrChecksum)
	}
	v := &verifier{r: rc, h: sha256.New(), want: m.SHA256, key: m.Key}
	return Decode(v, m, identities, rc)
}

// Decode wraps r (the stored bytes) with decryption and decompression per the manifest. closer
// is closed with the returned reader.
func Decode(r io.Reader, m Manifest, identities []age.Identity, closer io.Closer) (io.ReadCloser, error) {
	var err error
	if m.Encryption == "age" {
		if len(identities) == 0 {
			closer.Close()
			return nil, fmt.Errorf("open %s: encrypted with age and no identity configured (encryption.identity_file)", m.Key)
		}
		r, err = age.Decrypt(r, identities...)
		if err != nil {
			closer.Close()
			return nil, fmt.Errorf("open %s: decrypt: %w", m.Key, err)
		}
	}
	switch m.Compression {
	case Zstd:
		zr, err := zstd.NewReader(r)
		if err != nil {
			closer.Close()
			return nil, fmt.Errorf("open %s: decompress: %w", m.Key, err)
		}
		return readCloser{zr.IOReadCloser(), closer}, nil
	case Gzip:
		gr, err := pgzip.NewReader(r)
		if err != nil {
			closer.Close()
			return nil, fmt.Errorf("open %s: decompress: %w", m.Key, err)
		}
		return readCloser{gr, closer}, nil
	}
	return readCloser{io.NopCloser(r), closer}, nil
}

type readCloser struct {
	io.ReadCloser
	inner io.Closer
}

func (r readCloser) Close() error {
	r.ReadCloser.Close()
	return r.inner.Close()
}

type verifier struct {
	r    io.Reader
	h    hash.Hash
	want string
	key  string
}

func (v *verifier) Read(p []byte) (int, error) {
	n, err := v.r.Read(p)
	v.h.Write(p[:n])
	if err == io.EOF {
		if got := hex.EncodeToString(v.h.Sum(nil)); got != v.want {
			return n, fmt.Errorf("%s: sha256 %s, manifest says %s: %w", v.key, got, v.want, ErrChecksum)
		}
	}
	return n, err
}

// ReadIdentities parses an age identity file.
func ReadIdentities(r io.Reader) ([]age.Identity, error) {
	ids, err := age.ParseIdentities(r)
	if err != nil {
		return nil, fmt.Errorf("parse age identities: %w", err)
	}
	return ids, nil
}
