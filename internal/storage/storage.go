// Package storage is the object-store interface opsd writes backups to, with a filesystem backend
// (local, the embedded default) and an S3-compatible one (s3, minio-go). Every backend passes the
// same contract suite (storagetest).
package storage

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// ErrNotFound is returned (wrapped) when a key does not exist.
var ErrNotFound = errors.New("object not found")

// ObjectInfo describes a stored object.
type ObjectInfo struct {
	Key     string    `json:"key"`
	Size    int64     `json:"size"`
	ModTime time.Time `json:"modTime"`
	// Metadata is the object's user metadata (S3 x-amz-meta-*, lower-case keys), filled by Stat
	// on backends that keep it (the local backend keeps none).
	Metadata map[string]string `json:"metadata,omitempty"`
}

// PutOptions tune one upload.
type PutOptions struct {
	// Size is the stream's length, or -1 when unknown (exports, compressed streams).
	Size        int64
	ContentType string
	// Metadata is stored with the object where the backend supports it (S3 user metadata; keys
	// lower-case, e.g. UploadMetaKey). It is sent when the upload starts, so an unfinished
	// multipart upload already carries it.
	Metadata map[string]string
}

// Store is an object store. Put writes a stream of unknown length; the object appears at the key
// only when the whole stream was stored (a failed or cancelled upload leaves nothing there), and
// a read error of the stream (io.ErrUnexpectedEOF included) fails the upload, never ends it.
type Store interface {
	Put(ctx context.Context, key string, r io.Reader, opts PutOptions) (ObjectInfo, error)
	// Copy replaces dst with the bytes and metadata of src (an S3 server-side copy; the local
	// backend links), atomically: dst holds either its old object or the whole of src. src stays.
	Copy(ctx context.Context, src, dst string) (ObjectInfo, error)
	// Get opens an object for reading; the caller closes it.
	Get(ctx context.Context, key string) (io.ReadCloser, ObjectInfo, error)
	Stat(ctx context.Context, key string) (ObjectInfo, error)
	// List calls fn for every object under prefix, in key order, paging as needed; an error from
	// fn stops the listing and is returned.
	List(ctx context.Context, prefix string, fn func(ObjectInfo) error) error
	// Delete removes an object; deleting a missing key is not an error.
	Delete(ctx context.Context, key string) error
	// AbortIncompleteUploads removes unfinished uploads under prefix older than olderThan and
	// returns how many it removed.
	AbortIncompleteUploads(ctx context.Context, prefix string, olderThan time.Duration) (int, error)
	// String describes the store without secrets (e.g. "s3://bucket at host").
	String() string
}

// ListAll returns every object under prefix.
func ListAll(ctx context.Context, s Store, prefix string) ([]ObjectInfo, error) {
	var out []ObjectInfo
	err := s.List(ctx, prefix, func(o ObjectInfo) error {
		out = append(out, o)
		return nil
	})
	return out, err
}

// UploadMetaKey is the object metadata key opsd sets on every artifact upload when it starts (its
// value is the upload's id): objects carrying it were written by opsd.
const UploadMetaKey = "opsd-upload"

// StagingMarker is part of every staging key: artifacts are uploaded to
// "<key>.opsd-staging-<id>", checked, then copied to <key>. A staging object that is still there
// is an upload opsd started and never finished (prune removes it after its grace time).
const StagingMarker = ".opsd-staging-"

// NewUploadID returns a random id for one upload (16 hex digits).
func NewUploadID() string {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(fmt.Sprintf("crypto/rand: %v", err))
	}
	return hex.EncodeToString(b[:])
}

// StagingKey returns the staging key of an upload of key.
func StagingKey(key, id string) string { return key + StagingMarker + id }

// IsStaging reports whether key is a staging key (an upload opsd has not published).
func IsStaging(key string) bool {
	i := strings.LastIndex(key, StagingMarker)
	return i > 0 && !strings.Contains(key[i:], "/")
}

// ReadError is a failure of the stream an upload reads from. Backends wrap every read error in
// it before the S3 client sees it: minio-go takes io.ErrUnexpectedEOF (what a cut HTTP body or
// Docker stream returns) for the end of the stream and would complete a truncated upload.
type ReadError struct{ Err error }

func (e *ReadError) Error() string { return "read source: " + e.Err.Error() }

// Unwrap returns the reader's error.
func (e *ReadError) Unwrap() error { return e.Err }

// StrictReader returns r with every error other than io.EOF wrapped in a *ReadError, so that no
// consumer can mistake a failed stream for a finished one.
func StrictReader(r io.Reader) io.Reader { return strictReader{r} }

type strictReader struct{ r io.Reader }

func (s strictReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if err != nil && err != io.EOF {
		var re *ReadError
		if !errors.As(err, &re) {
			err = &ReadError{Err: err}
		}
	}
	return n, err
}

// ByteCopier is implemented by stores whose server-side Copy moves every byte of the object
// again (S3: the engine reads and writes the whole object) and which keep user metadata, so an
// object carrying opsd's upload marker is recognisable without a manifest. artifact.Store
// writes the stream of a key that holds nothing yet straight to the key on such stores instead
// of staging it and copying it (on the local store a copy is a link, so staging costs nothing).
type ByteCopier interface {
	CopyMovesBytes() bool
}

// CopyMovesBytes reports whether s (or the store it wraps) is a ByteCopier that says so.
func CopyMovesBytes(s Store) bool {
	c, ok := s.(ByteCopier)
	return ok && c.CopyMovesBytes()
}

// probeKey is the key Probe asks about: nothing is ever stored there, so the answer is "not
// found" from a store that works.
const probeKey = ".opsd-probe"

// Probe asks the store about one key that does not exist (one HEAD request on S3): nil when the
// store answers, found or not found; the error when it does not (unreachable, refused
// credentials, no such bucket). A probe is not one of the jobs' operations: an instrumented
// store does not count it (opsd_storage_operations_total).
func Probe(ctx context.Context, s Store) error {
	for { // past the wrappers that count or lock: a probe is not an operation of opsd's
		if u, ok := s.(interface{ Unwrap() Store }); ok {
			s = u.Unwrap()
		} else if i, ok := s.(*instrumented); ok {
			s = i.s
		} else {
			break
		}
	}
	if _, err := s.Stat(ctx, probeKey); err != nil && !errors.Is(err, ErrNotFound) {
		return fmt.Errorf("probe %s: %w", s, err)
	}
	return nil
}
