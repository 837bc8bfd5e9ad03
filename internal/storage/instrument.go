package storage

import (
	"context"
	"errors"
	"io"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Instrument wraps a store so every operation is counted by operation and outcome (ok, not_found,
// error) on ops (labels: operation, outcome).
func Instrument(s Store, ops *prometheus.CounterVec) Store {
	if _, ok := s.(*instrumented); ok {
		return s
	}
	for _, op := range Operations {
		for _, o := range []string{"ok", "not_found", "error"} {
			ops.WithLabelValues(op, o) // at 0, so increase() sees the first error
		}
	}
	return &instrumented{s: s, ops: ops}
}

// Operations are the operation label values Instrument counts.
var Operations = []string{"put", "get", "stat", "list", "delete", "abort_uploads"}

type instrumented struct {
	s   Store
	ops *prometheus.CounterVec
}

func (i *instrumented) count(op string, err error) {
	outcome := "ok"
	switch {
	case errors.Is(err, ErrNotFound):
		outcome = "not_found"
	case err != nil:
		outcome = "error"
	}
	i.ops.WithLabelValues(op, outcome).Inc()
}

func (i *instrumented) Put(ctx context.Context, key string, r io.Reader, o PutOptions) (ObjectInfo, error) {
	info, err := i.s.Put(ctx, key, r, o)
	i.count("put", err)
	return info, err
}

func (i *instrumented) Copy(ctx context.Context, src, dst string) (ObjectInfo, error) {
	info, err := i.s.Copy(ctx, src, dst)
	i.count("copy", err)
	return info, err
}

func (i *instrumented) Get(ctx context.Context, key string) (io.ReadCloser, ObjectInfo, error) {
	rc, info, err := i.s.Get(ctx, key)
	i.count("get", err)
	return rc, info, err
}

func (i *instrumented) Stat(ctx context.Context, key string) (ObjectInfo, error) {
	info, err := i.s.Stat(ctx, key)
	i.count("stat", err)
	return info, err
}

func (i *instrumented) List(ctx context.Context, prefix string, fn func(ObjectInfo) error) error {
	err := i.s.List(ctx, prefix, fn)
	i.count("list", err)
	return err
}

func (i *instrumented) Delete(ctx context.Context, key string) error {
	err := i.s.Delete(ctx, key)
	i.count("delete", err)
	return err
}

func (i *instrumented) AbortIncompleteUploads(ctx context.Context, prefix string, olderThan time.Duration) (int, error) {
	n, err := i.s.AbortIncompleteUploads(ctx, prefix, olderThan)
	i.count("abort_uploads", err)
	return n, err
}

func (i *instrumented) String() string { return i.s.String() }

// CopyMovesBytes answers for the wrapped store.
func (i *instrumented) CopyMovesBytes() bool { return CopyMovesBytes(i.s) }
