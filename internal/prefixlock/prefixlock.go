// Package prefixlock keeps pruning away from object-store prefixes that a drill, a verification
// or a restore is reading: readers share a prefix, prune holds it alone. Two prefixes conflict
// when one starts with the other ("" conflicts with everything).
package prefixlock

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
)

// Locks is a set of held prefixes.
type Locks struct {
	mu      sync.Mutex
	changed chan struct{}
	held    map[int]hold
	next    int
	// shared keep other processes apart too: flock files on this host (NewShared), the
	// coordination database's advisory locks across hosts (With).
	shared  []Shared
	closers []func()
}

type hold struct {
	prefix    string
	exclusive bool
	owner     string
}

// New returns an empty set for this process.
func New() *Locks { return &Locks{held: map[int]hold{}, changed: make(chan struct{})} }

// NewShared returns a set whose holds are also visible to other processes using the same
// directory (opsd's state directory): every hold also takes a flock, shared or exclusive, on a
// lock file per top-level prefix (platform/, nightly/, ...), so `opsd prune` from the CLI waits
// for the daemon's drill and the other way round. Across processes prefixes conflict by their
// first path element, a coarser rule than within one process.
func NewShared(dir string) *Locks { return With(Files(dir)) }

// With returns a set whose holds also take their locks in each shared backend, in order
// (typically the state directory's files, then the coordination database, so that the CLI and
// the daemon on one host stay apart even while the database is down).
func With(backends ...Shared) *Locks {
	l := New()
	l.shared = backends
	return l
}

// OnClose registers f to run on Close (a backend's connection pool).
func (l *Locks) OnClose(f func()) { l.closers = append(l.closers, f) }

// Close releases what the backends hold open (not the holds: their owners release them).
func (l *Locks) Close() {
	for _, f := range l.closers {
		f()
	}
	l.closers = nil
}

func overlap(a, b string) bool { return strings.HasPrefix(a, b) || strings.HasPrefix(b, a) }

func (l *Locks) conflict(prefix string, exclusive bool) (hold, bool) {
	for _, h := range l.held {
		if overlap(h.prefix, prefix) && (exclusive || h.exclusive) {
			return h, true
		}
	}
	return hold{}, false
}

// ErrLost is the cause of a guarded hold's context when a shared backend lost the hold's locks
// (the coordination database's session ended, so another host may now take the prefix).
var ErrLost = errors.New("lost the lock across hosts (coordination database session ended)")

// Acquire waits until prefix can be held (shared, or exclusive) and returns the release
// function. owner names the holder in conflict messages.
func (l *Locks) Acquire(ctx context.Context, prefix string, exclusive bool, owner string) (func(), error) {
	release, _, err := l.acquire(ctx, prefix, exclusive, owner)
	return release, err
}

// Guard is Acquire for a holder that must stop when its hold stops keeping other hosts out
// (prune and forget, which delete): besides the release function it returns a context derived
// from parent that is cancelled, with cause ErrLost, when a shared backend loses the hold's
// locks, and when the hold is released. wait bounds only the wait for the hold, not the hold.
func (l *Locks) Guard(parent context.Context, wait time.Duration, prefix string, exclusive bool, owner string) (context.Context, func(), error) {
	wctx, cancel := context.WithTimeout(parent, wait)
	release, losses, err := l.acquire(wctx, prefix, exclusive, owner)
	cancel()
	if err != nil {
		return nil, nil, err
	}
	ctx, cancelCause := context.WithCancelCause(parent)
	done := make(chan struct{})
	var wg sync.WaitGroup
	for _, lost := range losses {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case <-lost:
				cancelCause(fmt.Errorf("hold %s: %w", prefix, ErrLost))
			case <-done:
			}
		}()
	}
	var once sync.Once
	return ctx, func() {
		once.Do(func() {
			close(done)
			wg.Wait()
			cancelCause(context.Canceled)
			release()
		})
	}, nil
}

func (l *Locks) acquire(ctx context.Context, prefix string, exclusive bool, owner string) (func(), []<-chan struct{}, error) {
	for {
		l.mu.Lock()
		if _, busy := l.conflict(prefix, exclusive); !busy {
			id := l.next
			l.next++
			l.held[id] = hold{prefix, exclusive, owner}
			l.mu.Unlock()
			var once sync.Once
			release := func() {
				once.Do(func() {
					l.mu.Lock()
					delete(l.held, id)
					close(l.changed)
					l.changed = make(chan struct{})
					l.mu.Unlock()
				})
			}
			unlock, losses, err := l.lockShared(ctx, prefix, exclusive)
			if err != nil {
				release()
				return nil, nil, err
			}
			return func() {
				unlock()
				release()
			}, losses, nil
		}
		wait := l.changed
		l.mu.Unlock()
		select {
		case <-wait:
		case <-ctx.Done():
			return nil, nil, fmt.Errorf("wait for %s lock: %w", prefix, ctx.Err())
		}
	}
}

// TryAcquire holds prefix now or reports who holds a conflicting one.
func (l *Locks) TryAcquire(prefix string, exclusive bool, owner string) (func(), error) {
	l.mu.Lock()
	h, busy := l.conflict(prefix, exclusive)
	l.mu.Unlock()
	if busy {
		return nil, fmt.Errorf("%s is in use by %s", prefix, h.owner)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // try once: never wait
	rel, err := l.Acquire(ctx, prefix, exclusive, owner)
	if err != nil {
		if errors.Is(err, context.Canceled) {
			return nil, fmt.Errorf("%s is in use by another opsd process (on this host or another node)", prefix)
		}
		return nil, err
	}
	return rel, nil
}
