package storage

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"
)

// LazyRetryEvery is how often a Lazy store's calls try to open the store again at most.
const LazyRetryEvery = 5 * time.Second

// Lazy stands in for an object store that could not be opened (the daemon starts anyway): every
// call first tries to open it (at most once per LazyRetryEvery), and fails with the reason while
// it cannot.
type Lazy struct {
	open func(context.Context) (Store, error)
	desc string

	mu      sync.Mutex
	inner   Store
	lastErr error
	tried   time.Time
}

// NewLazy returns a Lazy store that opens with open; err is why the first attempt failed and
// desc names the store while it is unreachable (its backend).
func NewLazy(open func(context.Context) (Store, error), desc string, err error) *Lazy {
	return &Lazy{open: open, desc: desc, lastErr: err, tried: time.Now()}
}

// Retry tries to open the store now, whenever it last tried; it returns nil once it is open.
func (l *Lazy) Retry(ctx context.Context) error {
	_, err := l.get(ctx, true)
	return err
}

// get returns the opened store, opening it when due (or forced).
func (l *Lazy) get(ctx context.Context, force bool) (Store, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.inner != nil {
		return l.inner, nil
	}
	if !force && time.Since(l.tried) < LazyRetryEvery {
		return nil, fmt.Errorf("object store unreachable: %w", l.lastErr)
	}
	l.tried = time.Now()
	s, err := l.open(ctx)
	if err != nil {
		l.lastErr = err
		return nil, fmt.Errorf("object store unreachable: %w", err)
	}
	l.inner = s
	return s, nil
}

// Put opens the store if it can, then puts.
func (l *Lazy) Put(ctx context.Context, key string, r io.Reader, o PutOptions) (ObjectInfo, error) {
	s, err := l.get(ctx, false)
	if err != nil {
		return ObjectInfo{}, err
	}
	return s.Put(ctx, key, r, o)
}

// Get opens the store if it can, then gets.
func (l *Lazy) Get(ctx context.Context, key string) (io.ReadCloser, ObjectInfo, error) {
	s, err := l.get(ctx, false)
	if err != nil {
		return nil, ObjectInfo{}, err
	}
	return s.Get(ctx, key)
}

// Stat opens the store if it can, then stats.
func (l *Lazy) Stat(ctx context.Context, key string) (ObjectInfo, error) {
	s, err := l.get(ctx, false)
	if err != nil {
		return ObjectInfo{}, err
	}
	return s.Stat(ctx, key)
}

// List opens the store if it can, then lists.
func (l *Lazy) List(ctx context.Context, prefix string, fn func(ObjectInfo) error) error {
	s, err := l.get(ctx, false)
	if err != nil {
		return err
	}
	return s.List(ctx, prefix, fn)
}

// Delete opens the store if it can, then deletes.
func (l *Lazy) Delete(ctx context.Context, key string) error {
	s, err := l.get(ctx, false)
	if err != nil {
		return err
	}
	return s.Delete(ctx, key)
}

// Copy opens the store if it can, then copies.
func (l *Lazy) Copy(ctx context.Context, src, dst string) (ObjectInfo, error) {
	s, err := l.get(ctx, false)
	if err != nil {
		return ObjectInfo{}, err
	}
	return s.Copy(ctx, src, dst)
}

// AbortIncompleteUploads opens the store if it can, then aborts.
func (l *Lazy) AbortIncompleteUploads(ctx context.Context, prefix string, olderThan time.Duration) (int, error) {
	s, err := l.get(ctx, false)
	if err != nil {
		return 0, err
	}
	return s.AbortIncompleteUploads(ctx, prefix, olderThan)
}

// String names the opened store, or says it is unreachable.
func (l *Lazy) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.inner != nil {
		return l.inner.String()
	}
	return "unreachable object store (" + l.desc + ")"
}

// CopyMovesBytes answers for the opened store (false while it is not open).
func (l *Lazy) CopyMovesBytes() bool {
	l.mu.Lock()
	inner := l.inner
	l.mu.Unlock()
	return inner != nil && CopyMovesBytes(inner)
}
