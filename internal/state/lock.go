package state

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
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

// CLILockPath returns the file CLI commands hold a shared lock on while they use the state
// database at dbPath.
func CLILockPath(dbPath string) string { return dbPath + ".cli.lock" }

func openLockFile(p string) (*os.File, error) {
	if err := os.MkdirAll(filepath.Dir(p), 0o750); err != nil {
		return nil, err
	}
	return os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o640)
}

// AcquireCLILock takes a shared lock that says "a CLI command is using this state database"
// (its runs are live even though no daemon owns them). It waits only while a starting daemon
// briefly holds the lock exclusively.
func AcquireCLILock(ctx context.Context, dbPath string) (*Lock, error) {
	p := CLILockPath(dbPath)
	f, err := openLockFile(p)
	if err != nil {
		return nil, fmt.Errorf("lock state: %w", err)
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB)
		if err == nil {
			return &Lock{f: f, path: p}, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("lock state %s: %w", p, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("lock state %s: %w", p, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// CLIsRunning reports whether a CLI command holds the shared lock on the state database at
// dbPath. While it answers false, release must be called once the caller is done (it holds the
// lock exclusively so that no CLI command starts meanwhile).
func CLIsRunning(dbPath string) (running bool, release func(), err error) {
	f, err := openLockFile(CLILockPath(dbPath))
	if err != nil {
		return false, nil, fmt.Errorf("lock state: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return true, func() {}, nil
		}
		return false, nil, fmt.Errorf("lock state: %w", err)
	}
	return false, func() {
		syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}
