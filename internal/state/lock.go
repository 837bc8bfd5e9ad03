package state

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// ErrLocked is returned (wrapped) when another daemon holds the state database's lock.
var ErrLocked = errors.New("state database is locked by another opsd")

// Lock is an exclusive lock on a state database (an flock on PATH.lock), held by one daemon.
type Lock struct {
	f    *os.File
	path string
}

// LockPath returns the lock file of the state database at dbPath.
func LockPath(dbPath string) string { return dbPath + ".lock" }

// AcquireLock takes the exclusive lock next to the state database at dbPath without waiting,
// and writes this process's PID into the lock file. When another process holds it, the error
// wraps ErrLocked and names the lock file and the holder's PID. The lock is released by Release
// or when the process dies (the kernel drops the flock), so a SIGKILLed daemon never blocks
// the next one.
func AcquireLock(dbPath string) (*Lock, error) {
	p := LockPath(dbPath)
	if err := os.MkdirAll(filepath.Dir(p), 0o750); err != nil {
		return nil, fmt.Errorf("lock state: %w", err)
	}
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("lock state: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		b := make([]byte, 32)
		n, _ := f.ReadAt(b, 0)
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			holder := strings.TrimSpace(string(b[:n]))
			if _, perr := strconv.Atoi(holder); perr != nil {
				holder = "unknown"
			}
			return nil, fmt.Errorf("%w: %s is held by pid %s (one daemon per state database; stop it first or use another state.path)", ErrLocked, p, holder)
		}
		return nil, fmt.Errorf("lock state %s: %w", p, err)
	}
	if err := f.Truncate(0); err == nil {
		f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
		f.Sync()
	}
	return &Lock{f: f, path: p}, nil
}

// Path returns the lock file's path.
func (l *Lock) Path() string { return l.path }

// Release drops the lock. The file stays (removing it would race with a new holder).
func (l *Lock) Release() error {
	if l == nil || l.f == nil {
		return nil
	}
	syscall.Flock(int(l.f.Fd()), syscall.LOCK_UN)
	err := l.f.Close()
	l.f = nil
	return err
}
