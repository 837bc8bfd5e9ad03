// Package storage is the object-store interface opsd writes backups to, with a filesystem backend
// (local, the embedded default) and an S3-compatible one (s3, minio-go). Every backend passes the
// same contract suite (storagetest).
package storage

import (
	"context"
	"errors"
	"io"
	"time"
)

// ErrNotFound is returned (wrapped) when a key does not exist.
var ErrNotFound = errors.New("object not found")

// ObjectInfo describes a stored object.
type ObjectInfo struct {
	Key     string    `json:"key"`
	Size    int64     `json:"size"`
	ModTime time.Time `json:"modTime"`
}

// PutOptions tune one upload.
type PutOptions struct {
	// Size is the stream's length, or -1 when unknown (exports, compressed streams).
	Size        int64
	ContentType string
}

// Store is an object store. Put writes a stream of unknown length; the object appears at the key
// only when the whole stream was stored (a failed or cancelled upload leaves nothing there).
type Store interface {
	Put(ctx context.Context, key string, r io.Reader, opts PutOptions) (ObjectInfo, error)
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
