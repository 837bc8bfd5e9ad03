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
	"sync"
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
	// Spec is a container export's create spec (docker.Spec as JSON), sealed like the archive:
	// encrypted to the same age recipients when the archive is, and checksummed.
	Spec *Sealed `json:"spec,omitempty"`
	// Adopted marks a backup opsd did not write: `opsd adopt` verified it and wrote this
	// manifest, so drills, restores, verification and retention use it.
	Adopted bool `json:"adopted,omitempty"`

	// Tenant and TierSource say whose artifact it is and where its tier came from.
	Tenant     string `json:"tenant,omitempty"`
	TierSource string `json:"tierSource,omitempty"`
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
	// GzipBlockSize, GzipBlocks and GzipLevel tune parallel gzip (0: 512 KiB blocks, one per core
	// plus two, deflate level 1; see gzipWriter).
	GzipBlockSize, GzipBlocks, GzipLevel int
	// ZstdLevel is zstd's encoder level (0: zstd.SpeedDefault). PostgreSQL dumps use
	// zstd.SpeedFastest: on pg_dump's uncompressed custom format it is both faster and smaller.
	ZstdLevel zstd.EncoderLevel
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
// is left at key (the store aborts the upload). It writes key directly: artifacts go through
// Store, which stages, checks and publishes.
func Upload(ctx context.Context, store storage.Store, key string, src io.Reader, o Options) (Uploaded, error) {
	return upload(ctx, store, key, src, o, nil)
}

func upload(ctx context.Context, store storage.Store, key string, src io.Reader, o Options, meta map[string]string) (Uploaded, error) {
	pr, pw := io.Pipe()
	raw := newCounter()
	stored := raw
	var sink io.Writer = pw
	if o.Compression != "" && o.Compression != None || len(o.Recipients) > 0 {
		stored = newCounter()
		sink = io.MultiWriter(pw, stored)
	} // else the stored bytes are the raw bytes: hash them once
	encodeErr := make(chan error, 1)
	go func() {
		var err error
		// A panic in the encoder or the source (a bug) fails the upload instead of the daemon:
		// the Runner's recover does not reach this goroutine.
		defer func() {
			if p := recover(); p != nil {
				err = PanicError(p)
			}
			pw.CloseWithError(err)
			encodeErr <- err
		}()
		err = encode(sink, io.TeeReader(src, raw), o)
	}()
	info, err := store.Put(ctx, key, pr, storage.PutOptions{Size: -1, Metadata: meta})
	pr.CloseWithError(errUploadEnded) // unblocks the encoder when Put returned early
	eerr := <-encodeErr
	switch {
	case eerr != nil && !errors.Is(eerr, errUploadEnded):
		// The source or the encoder failed: that is the cause, whatever Put said. (Put fails
		// on every read error, so it cannot have stored anything; the delete is a safety net.)
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
		level := o.ZstdLevel
		if level == 0 {
			level = zstd.SpeedDefault
		}
		zw, err := zstd.NewWriter(out, zstd.WithEncoderLevel(level), zstd.WithEncoderConcurrency(2))
		if err != nil {
			return fmt.Errorf("compress: %w", err)
		}
		closers = append(closers, zw)
		out = zw
	case Gzip:
		level := o.GzipLevel
		if level == 0 {
			level = gzipLevel
		}
		gw, err := newGzipWriter(out, level, o.GzipBlockSize, o.GzipBlocks)
		if err != nil {
			return fmt.Errorf("compress: %w", err)
		}
		defer gw.abort() // stops the workers when the copy fails; nothing after Close
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
	return writeManifestAt(ctx, store, ManifestKey(m.Key), m)
}

func writeManifestAt(ctx context.Context, store storage.Store, at string, m Manifest) error {
	m.Version = 1
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return fmt.Errorf("write manifest of %s: %w", m.Key, err)
	}
	if _, err := store.Put(ctx, at, bytes.NewReader(b), storage.PutOptions{Size: int64(len(b)), ContentType: "application/json"}); err != nil {
		return fmt.Errorf("write manifest of %s: %w", m.Key, err)
	}
	return nil
}

// ReadManifest reads an artifact's manifest; storage.ErrNotFound when it has none.
func ReadManifest(ctx context.Context, store storage.Store, key string) (Manifest, error) {
	return readManifestAt(ctx, store, ManifestKey(key), key)
}

func readManifestAt(ctx context.Context, store storage.Store, at, key string) (Manifest, error) {
	rc, _, err := store.Get(ctx, at)
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

// Hooks let tests stop Store between its steps (nil in production).
type Hooks struct {
	// Staged runs after the artifact is stored and checked under its staging key, before it is
	// published at its key.
	Staged func(staging string)
	// Published runs after the artifact is published at its key, before its manifest is written.
	Published func(key string)
	// Waiting runs once when another writer holds the key's lock (KeyLocks), before waiting.
	Waiting func(key string)
}

type hooksKey struct{}

// WithHooks returns a context that makes Store call h.
func WithHooks(ctx context.Context, h Hooks) context.Context {
	return context.WithValue(ctx, hooksKey{}, h)
}

// Store uploads an artifact and its manifest without ever putting a good backup at risk:
//
//  1. the stream goes to a unique staging key beside the artifact's ("<key>.opsd-staging-<id>",
//     with the upload marker storage.UploadMetaKey=<id> set when the upload starts); any read
//     error of the source fails the upload;
//  2. the staged object's size (and, where the store keeps metadata, its marker) is checked
//     against what was read; the store has already checked its content (ETag or re-read);
//  3. the manifest is written beside it under a staging key too (the material to finish the
//     job if opsd dies between the next two steps: see Recover);
//  4. it is published at the key by a server-side copy (local store: a link and rename), which
//     replaces the previous object at once or not at all, and checked again;
//  5. the manifest (size and SHA-256 of the stored bytes) is written at the manifest key;
//  6. the staging objects are deleted.
//
// A failure in steps 1-4 leaves the previous object and manifest at the key untouched (and
// removes the staging objects when the store answers). A failure between 4 and 5 leaves the new,
// verified object under the old manifest, which readers reject on its checksum until Recover
// (run by prune) writes the staged manifest. Prune removes staging objects a crash left behind.
//
// On a store whose copy moves every byte again (S3: storage.CopyMovesBytes), a key that holds
// no object yet has no backup to protect: the stream goes to the key itself (steps 1-2 and 5
// with the same marker and checks, the manifest staged in between so that Recover finishes a
// crash before step 5), which spares the store a second write of the whole artifact. A failure
// before the manifest removes the object again when it carries this upload's marker; what a
// crash leaves is opsd's debris by that marker, not a backup.
//
// Writers of one key must not interleave (one could publish over the other's checked object, or
// remove it as its own): on a store wrapped by Locking, Store holds the key's lock from its first
// look at the key until it returns, and a second writer waits for it.
func Store(ctx context.Context, store storage.Store, src io.Reader, o Options, m Manifest) (Manifest, error) {
	unlock, err := lockKey(ctx, store, m.Key)
	if err != nil {
		return Manifest{}, fmt.Errorf("store %s: %w", m.Key, err)
	}
	defer unlock()
	if storage.CopyMovesBytes(store) {
		if _, err := store.Stat(ctx, m.Key); errors.Is(err, storage.ErrNotFound) {
			return storeNew(ctx, store, src, o, m)
		}
	}
	hooks, _ := ctx.Value(hooksKey{}).(Hooks)
	id := storage.NewUploadID()
	staging := storage.StagingKey(m.Key, id)
	stagedManifest := storage.StagingKey(ManifestKey(m.Key), id)
	cleanup := func() {
		// Best effort (the store may be what failed): prune removes what is left.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		store.Delete(cctx, staging)
		store.Delete(cctx, stagedManifest)
	}
	up, err := upload(ctx, store, staging, src, o, map[string]string{storage.UploadMetaKey: id})
	if err != nil {
		cleanup()
		return Manifest{}, fmt.Errorf("store %s: %w", m.Key, err)
	}
	if err := checkStored(ctx, store, staging, id, up.Size); err != nil {
		cleanup()
		return Manifest{}, fmt.Errorf("store %s: staged object: %w", m.Key, err)
	}
	m = described(m, up, o)
	if err := writeManifestAt(ctx, store, stagedManifest, m); err != nil {
		cleanup()
		return Manifest{}, fmt.Errorf("store %s: stage manifest: %w", m.Key, err)
	}
	if hooks.Staged != nil {
		hooks.Staged(staging)
	}
	if err := ctx.Err(); err != nil {
		cleanup()
		return Manifest{}, fmt.Errorf("store %s: %w", m.Key, err)
	}
	// Once publishing starts it is finished, also when the run is cancelled meanwhile: a copy
	// cancelled mid-request may still complete on the server.
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Minute)
	defer cancel()
	if _, err := store.Copy(pctx, staging, m.Key); err != nil {
		// The request may have failed after the server completed the copy: look.
		if done, herr := holds(pctx, store, m.Key, id, m); herr != nil || !done {
			cleanup()
			return Manifest{}, fmt.Errorf("store %s: publish: %w", m.Key, err)
		}
	}
	if err := checkStored(pctx, store, m.Key, id, up.Size); err != nil {
		// Another writer replaced the object meanwhile: keep the staged copy for the operator.
		return Manifest{}, fmt.Errorf("store %s: published object (staged copy kept at %s): %w", m.Key, staging, err)
	}
	if hooks.Published != nil {
		hooks.Published(m.Key)
	}
	if err := commitManifest(ctx, store, m, stagedManifest); err != nil {
		return Manifest{}, err
	}
	cleanup()
	return m, nil
}

// storeNew is Store for a key that holds no object on a store whose copy moves every byte: the
// stream goes to the key itself, and the manifest is staged before it is written.
func storeNew(ctx context.Context, store storage.Store, src io.Reader, o Options, m Manifest) (Manifest, error) {
	hooks, _ := ctx.Value(hooksKey{}).(Hooks)
	id := storage.NewUploadID()
	stagedManifest := storage.StagingKey(ManifestKey(m.Key), id)
	fail := func(err error) (Manifest, error) {
		// Best effort (the store may be what failed): an object at the key is removed only when
		// it carries this upload's marker; what is left is debris prune recognises by it.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if st, serr := store.Stat(cctx, m.Key); serr == nil && st.Metadata[storage.UploadMetaKey] == id {
			store.Delete(cctx, m.Key)
		}
		store.Delete(cctx, stagedManifest)
		return Manifest{}, err
	}
	up, err := upload(ctx, store, m.Key, src, o, map[string]string{storage.UploadMetaKey: id})
	if err != nil {
		return fail(fmt.Errorf("store %s: %w", m.Key, err))
	}
	if err := checkStored(ctx, store, m.Key, id, up.Size); err != nil {
		return fail(fmt.Errorf("store %s: stored object: %w", m.Key, err))
	}
	m = described(m, up, o)
	if err := writeManifestAt(ctx, store, stagedManifest, m); err != nil {
		return fail(fmt.Errorf("store %s: stage manifest: %w", m.Key, err))
	}
	if hooks.Published != nil {
		hooks.Published(m.Key)
	}
	if err := commitManifest(ctx, store, m, stagedManifest); err != nil {
		return Manifest{}, err
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	store.Delete(cctx, stagedManifest)
	return m, nil
}

// described returns m completed with what the upload stored.
func described(m Manifest, up Uploaded, o Options) Manifest {
	m.Size, m.SHA256, m.RawSize, m.RawSHA256 = up.Size, up.SHA256, up.RawSize, up.RawSHA256
	m.Compression = o.Compression
	if m.Compression == "" {
		m.Compression = None
	}
	m.Encryption = o.Encryption()
	if m.CreatedAt.IsZero() {
		m.CreatedAt = time.Now().UTC()
	}
	return m
}

// commitManifest writes the manifest of a stored object (three attempts); when it cannot, the
// staged manifest stays for FinishPending (the daemon retries once the store answers) and for
// prune's recovery.
func commitManifest(ctx context.Context, store storage.Store, m Manifest, stagedManifest string) error {
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		if err = WriteManifest(context.WithoutCancel(ctx), store, m); err == nil {
			return nil
		}
	}
	id := stagedManifest[strings.LastIndex(stagedManifest, storage.StagingMarker)+len(storage.StagingMarker):]
	pending.add(pendingCommit{key: m.Key, at: stagedManifest, id: id})
	return fmt.Errorf("store %s: published, but the manifest could not be written (finished from %s once the store answers, or by prune's recovery): %w", m.Key, stagedManifest, err)
}

// pendingCommit is an upload of this process that was published but whose manifest could not be
// written: until it is, readers reject the key's object on its checksum (the previous backup
// there is already replaced).
type pendingCommit struct{ key, at, id string }

type pendingCommits struct {
	mu    sync.Mutex
	items map[string]pendingCommit // by staged manifest key
}

var pending = &pendingCommits{items: map[string]pendingCommit{}}

func (p *pendingCommits) add(c pendingCommit) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.items[c.at] = c
}

// PendingManifests returns how many uploads of this process wait for their manifest.
func PendingManifests() int {
	pending.mu.Lock()
	defer pending.mu.Unlock()
	return len(pending.items)
}

// FinishPending writes the manifests this process could not write after publishing (the store
// went away between the two), as Recover does for one key each: under the key's lock, and only
// where the key still holds the object the staged manifest describes (a later upload of the key
// drops it). It returns what it finished; what fails again stays pending.
func FinishPending(ctx context.Context, store storage.Store) ([]Recovered, error) {
	pending.mu.Lock()
	items := make([]pendingCommit, 0, len(pending.items))
	for _, c := range pending.items {
		items = append(items, c)
	}
	pending.mu.Unlock()
	var done []Recovered
	var errs []error
	for _, c := range items {
		// recoverOne takes a staged manifest it cannot read for debris: ask first, so that a
		// store still away keeps the commit pending.
		if _, err := store.Stat(ctx, c.at); err != nil && !errors.Is(err, storage.ErrNotFound) {
			errs = append(errs, fmt.Errorf("finish manifest of %s: %w", c.key, err))
			continue
		}
		r, err := recoverOne(ctx, store, c.at, c.key, c.id, false)
		if err != nil {
			errs = append(errs, fmt.Errorf("finish manifest of %s: %w", c.key, err))
			continue
		}
		if r != nil {
			done = append(done, *r)
		}
		pending.mu.Lock()
		delete(pending.items, c.at)
		pending.mu.Unlock()
	}
	return done, errors.Join(errs...)
}

// Recover finishes uploads that were published but died before their manifest was written:
// for every staged manifest under prefix written before cutoff whose artifact key holds the
// object it describes (same upload marker and size where the store keeps metadata, else same
// size and SHA-256), it writes the manifest and removes the staging objects. Staged uploads that
// were never published are left for prune to delete as debris. It returns what it finished (with
// dryRun, what it would finish: nothing is written or deleted).
func Recover(ctx context.Context, store storage.Store, prefix string, cutoff time.Time, dryRun bool) ([]Recovered, error) {
	objs, err := storage.ListAll(ctx, store, prefix)
	if err != nil {
		return nil, fmt.Errorf("recover %s: %w", prefix, err)
	}
	var repaired []Recovered
	for _, o := range objs {
		i := strings.LastIndex(o.Key, ManifestSuffix+storage.StagingMarker)
		if i < 0 || !storage.IsStaging(o.Key) || o.ModTime.After(cutoff) {
			continue
		}
		key, id := o.Key[:i], o.Key[i+len(ManifestSuffix)+len(storage.StagingMarker):]
		r, err := recoverOne(ctx, store, o.Key, key, id, dryRun)
		if r != nil {
			repaired = append(repaired, *r)
		}
		if err != nil {
			return repaired, fmt.Errorf("recover %s: %w", key, err)
		}
	}
	return repaired, nil
}

// recoverOne finishes the upload of key whose staged manifest is at at, if the key holds its
// object (nil otherwise). Unless dryRun it holds the key's lock, so that no writer of the key
// publishes between its look and the manifest it writes.
func recoverOne(ctx context.Context, store storage.Store, at, key, id string, dryRun bool) (*Recovered, error) {
	if !dryRun {
		unlock, err := lockKey(ctx, store, key)
		if err != nil {
			return nil, err
		}
		defer unlock()
	}
	staged, err := readManifestAt(ctx, store, at, key)
	if err != nil {
		return nil, nil // unreadable (or finished meanwhile): debris
	}
	ok, err := holds(ctx, store, key, id, staged)
	if err != nil || !ok {
		return nil, err
	}
	r := Recovered{Key: key, Staging: []string{storage.StagingKey(key, id), at}, Manifest: staged}
	cur, err := ReadManifest(ctx, store, key)
	r.Wrote = err != nil || cur.SHA256 != staged.SHA256 || cur.Size != staged.Size
	if dryRun {
		return &r, nil
	}
	if r.Wrote {
		if err := WriteManifest(ctx, store, staged); err != nil {
			return &r, err
		}
	}
	for _, k := range r.Staging {
		store.Delete(ctx, k)
	}
	return &r, nil
}

// Recovered is an upload Recover finished.
type Recovered struct {
	Key string
	// Wrote is set when the manifest at the key had to be written (it was missing or stale).
	Wrote bool
	// Staging are the staging objects the recovery removes.
	Staging []string
	// Manifest is the staged manifest: the one the key has once recovered (a dry run plans with it).
	Manifest Manifest
}

// holds reports whether key holds the object a staged manifest describes.
func holds(ctx context.Context, store storage.Store, key, id string, m Manifest) (bool, error) {
	st, err := store.Stat(ctx, key)
	if errors.Is(err, storage.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if st.Size != m.Size {
		return false, nil
	}
	if st.Metadata != nil {
		return st.Metadata[storage.UploadMetaKey] == id, nil
	}
	rc, _, err := store.Get(ctx, key)
	if err != nil {
		return false, err
	}
	defer rc.Close()
	h := sha256.New()
	if _, err := io.Copy(h, rc); err != nil {
		return false, err
	}
	return hex.EncodeToString(h.Sum(nil)) == m.SHA256, nil
}

// checkStored checks the object at key has the size that was sent and, where the store keeps
// metadata, the upload's marker.
func checkStored(ctx context.Context, store storage.Store, key, id string, size int64) error {
	st, err := store.Stat(ctx, key)
	if err != nil {
		return err
	}
	if st.Size != size {
		return fmt.Errorf("%s holds %d bytes, %d were sent", key, st.Size, size)
	}
	if st.Metadata != nil && st.Metadata[storage.UploadMetaKey] != id {
		return fmt.Errorf("%s carries upload marker %q, not this upload's %q", key, st.Metadata[storage.UploadMetaKey], id)
	}
	return nil
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
// is closed with the returned reader. The content may not exceed the manifest's RawSize (when
// set): more fails with ErrChecksum, so a decompression bomb stops where the manifest says the
// content ends.
func Decode(r io.Reader, m Manifest, identities []age.Identity, closer io.Closer) (io.ReadCloser, error) {
	rc, err := decode(r, m, identities, closer)
	if err != nil {
		return rc, err
	}
	if m.RawSize <= 0 && m.Compression == None && m.Encryption == "" {
		return rc, nil // stored as it is: the stored size bounds it
	}
	// A decoded artifact with no content size is bounded at 0: a manifest cannot switch the
	// bound off.
	return &rawLimit{ReadCloser: rc, left: max(m.RawSize, 0), m: m}, nil
}

// rawLimit fails a decoded stream that runs past the manifest's RawSize.
type rawLimit struct {
	io.ReadCloser
	left int64
	m    Manifest
}

func (r *rawLimit) Read(p []byte) (int, error) {
	n, err := r.ReadCloser.Read(p)
	if r.left -= int64(n); r.left < 0 {
		return n, fmt.Errorf("%s decodes to more than the %d bytes its manifest says: %w", r.m.Key, r.m.RawSize, ErrChecksum)
	}
	return n, err
}

func decode(r io.Reader, m Manifest, identities []age.Identity, closer io.Closer) (io.ReadCloser, error) {
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
