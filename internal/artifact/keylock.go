package artifact

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/wopr-network/opsd/internal/storage"
)

// keyStripes is how many lock files KeyLocks uses: keys share them by a hash, so two processes
// writing different keys of one stripe at the same time take turns (nothing worse).
const keyStripes = 32

// keyPoll is how often a wait for another process's lock file retries.
const keyPoll = 100 * time.Millisecond

// KeyLocks keeps writers of one artifact key apart, in this process and in the other opsd
// processes on the host that use the same directory (the daemon and `opsd backup ...` from the
// CLI write the same keys: a database's key is its date's). Store holds a key's lock from its
// first look at the key until its manifest is written, so two writers never interleave: the
// second one waits (as long as its context lets it) and then writes as if alone, replacing the
// first one's backup the safe way (staged, copied, then its manifest).
//
// In this process each key is held exactly; across processes a key is held by an flock on the
// lock file opsd-key-<n>.lock of its stripe in the directory, which this process's writers of
// the stripe's keys share.
type KeyLocks struct {
	// OnWait, when set (before the first Lock), is told once per Lock that has to wait for
	// another writer of its key, so a command that waits says why.
	OnWait func(key string)

	dir     string
	mu      sync.Mutex
	keys    map[string]chan struct{} // held keys: closed when released
	stripes map[int]*stripe
}

// stripe is one lock file held by this process for the writers of its keys.
type stripe struct {
	users int
	ready chan struct{} // closed once the flock is taken or failed (err)
	err   error
	f     *os.File
}

// NewKeyLocks returns the key locks of this process, with their lock files in dir (opsd's state
// directory).
func NewKeyLocks(dir string) *KeyLocks {
	return &KeyLocks{dir: dir, keys: map[string]chan struct{}{}, stripes: map[int]*stripe{}}
}

// Locking returns store with l attached: Store and Recover hold l's lock of every key they
// write. It must be the outermost wrapper of the store they are given.
func Locking(store storage.Store, l *KeyLocks) storage.Store {
	return lockingStore{Store: store, locks: l}
}

type lockingStore struct {
	storage.Store
	locks *KeyLocks
	// held is a key whose lock the caller already holds (HoldKey): Store does not wait for it.
	held string
}

// Unwrap returns the wrapped store.
func (s lockingStore) Unwrap() storage.Store { return s.Store }

// CopyMovesBytes answers for the wrapped store.
func (s lockingStore) CopyMovesBytes() bool { return storage.CopyMovesBytes(s.Store) }

// lockKey takes the lock of key when store carries key locks.
func lockKey(ctx context.Context, store storage.Store, key string) (func(), error) {
	ls, ok := store.(lockingStore)
	if !ok || ls.locks == nil || ls.held == key {
		return func() {}, nil
	}
	return ls.locks.Lock(ctx, key)
}

// HoldKey takes key's lock for a writer that must hold it before it starts producing the
// artifact: a pg_dump that waits for the key holds its snapshot, and ACCESS SHARE on the tables it
// locked, for as long as it waits. It waits as Store would (Hooks.Waiting and OnWait are called)
// and returns the store to give Store for that key, which then does not wait for it again, and
// the function that releases the lock. A store without key locks is returned as it is.
func HoldKey(ctx context.Context, store storage.Store, key string) (storage.Store, func(), error) {
	ls, ok := store.(lockingStore)
	if !ok || ls.locks == nil {
		return store, func() {}, nil
	}
	unlock, err := ls.locks.Lock(ctx, key)
	if err != nil {
		return nil, nil, err
	}
	ls.held = key
	return ls, unlock, nil
}

// Lock waits until key is free in this process and in the others using the same directory,
// or until ctx ends, and returns the function that releases it.
func (l *KeyLocks) Lock(ctx context.Context, key string) (func(), error) {
	hooks, _ := ctx.Value(hooksKey{}).(Hooks)
	waited := false
	waiting := func() {
		if !waited {
			if hooks.Waiting != nil {
				hooks.Waiting(key)
			}
			if l.OnWait != nil {
				l.OnWait(key)
			}
		}
		waited = true
	}
	for {
		l.mu.Lock()
		held, busy := l.keys[key]
		if !busy {
			l.keys[key] = make(chan struct{})
			l.mu.Unlock()
			break
		}
		l.mu.Unlock()
		waiting()
		select {
		case <-held:
		case <-ctx.Done():
			return nil, fmt.Errorf("wait for another writer of %s in this process: %w", key, ctx.Err())
		}
	}
	unkey := func() {
		l.mu.Lock()
		close(l.keys[key])
		delete(l.keys, key)
		l.mu.Unlock()
	}
	n := stripeOf(key)
	s, err := l.lockStripe(ctx, n, waiting)
	if err != nil {
		unkey()
		return nil, fmt.Errorf("wait for another opsd writing %s on this host: %w", key, err)
	}
	return func() {
		l.releaseStripe(n, s)
		unkey()
	}, nil
}

// stripeOf returns the stripe of key.
func stripeOf(key string) int {
	h := fnv.New32a()
	h.Write([]byte(key))
	return int(h.Sum32() % keyStripes)
}

// lockStripe takes stripe n's lock file for one writer: the first writer flocks it, the others
// of this process share it until the last one releases it.
func (l *KeyLocks) lockStripe(ctx context.Context, n int, waiting func()) (*stripe, error) {
	for {
		l.mu.Lock()
		s := l.stripes[n]
		if s == nil {
			s = &stripe{users: 1, ready: make(chan struct{})}
			l.stripes[n] = s
			l.mu.Unlock()
			f, err := flockFile(ctx, filepath.Join(l.dir, fmt.Sprintf("opsd-key-%d.lock", n)), waiting)
			l.mu.Lock()
			s.f, s.err = f, err
			if err != nil {
				delete(l.stripes, n)
			}
			close(s.ready)
			l.mu.Unlock()
			return s, err
		}
		s.users++
		l.mu.Unlock()
		select {
		case <-s.ready:
			if s.err == nil {
				return s, nil
			}
			// The writer taking it gave up (its context ended): try again.
		case <-ctx.Done():
			l.releaseStripe(n, s)
			return nil, ctx.Err()
		}
	}
}

// releaseStripe drops one writer's use of stripe n; the last one unlocks the file.
func (l *KeyLocks) releaseStripe(n int, s *stripe) {
	l.mu.Lock()
	defer l.mu.Unlock()
	s.users--
	if s.users > 0 || s.f == nil {
		return
	}
	syscall.Flock(int(s.f.Fd()), syscall.LOCK_UN)
	s.f.Close()
	s.f = nil
	if l.stripes[n] == s {
		delete(l.stripes, n)
	}
}

// flockFile opens path and flocks it exclusively, polling without blocking so that ctx can end
// the wait; waiting runs when another process holds it.
func flockFile(ctx context.Context, path string, waiting func()) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return f, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		waiting()
		select {
		case <-ctx.Done():
			f.Close()
			return nil, ctx.Err()
		case <-time.After(keyPoll):
		}
	}
}
