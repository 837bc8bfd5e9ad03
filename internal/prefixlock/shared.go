package prefixlock

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// pollInterval is how often a wait for another process's lock retries.
const pollInterval = 100 * time.Millisecond

// Name is one cross-process lock a hold takes: "all" (every hold takes it, shared; exclusive
// for the prefix "", which conflicts with everything) or "root-<first path element>".
type Name struct {
	Key       string
	Exclusive bool
}

// Shared holds named locks across processes: flock files in a directory (Files: the CLI and
// the daemon on one host) or the coordination database's advisory locks (across hosts).
type Shared interface {
	// Lock takes every lock in order, waiting (polling) until ctx ends; release drops them.
	// lost, when not nil, is closed if the backend loses the locks while they are held (the
	// coordination database's session ended): the hold no longer keeps other hosts out.
	Lock(ctx context.Context, names []Name) (release func(), lost <-chan struct{}, err error)
}

// names lists the cross-process locks of a hold: across processes prefixes conflict by their
// first path element.
func names(prefix string, exclusive bool) []Name {
	out := []Name{{"all", prefix == "" && exclusive}}
	if prefix != "" {
		root, _, _ := strings.Cut(prefix, "/")
		out = append(out, Name{"root-" + sanitize(root), exclusive})
	}
	return out
}

// lockShared takes a hold's locks in every shared backend, in order, and returns the channels
// that report a backend losing them.
func (l *Locks) lockShared(ctx context.Context, prefix string, exclusive bool) (func(), []<-chan struct{}, error) {
	var releases []func()
	var losses []<-chan struct{}
	undo := func() {
		for i := len(releases) - 1; i >= 0; i-- {
			releases[i]()
		}
	}
	for _, b := range l.shared {
		rel, lost, err := b.Lock(ctx, names(prefix, exclusive))
		if err != nil {
			undo()
			return nil, nil, fmt.Errorf("lock %s across processes: %w", prefix, err)
		}
		releases = append(releases, rel)
		if lost != nil {
			losses = append(losses, lost)
		}
	}
	return undo, losses, nil
}

// Files returns the flock backend: lock files opsd-prefix-<name>.lock in dir.
func Files(dir string) Shared { return files(dir) }

type files string

// Lock flocks each name's file, shared or exclusive. A flock is never lost while its file is
// open.
func (d files) Lock(ctx context.Context, names []Name) (func(), <-chan struct{}, error) {
	var held []*os.File
	for _, n := range names {
		f, err := lockFile(ctx, filepath.Join(string(d), "opsd-prefix-"+n.Key+".lock"), n.Exclusive)
		if err != nil {
			unlockFiles(held)
			return nil, nil, err
		}
		held = append(held, f)
	}
	return func() { unlockFiles(held) }, nil, nil
}

func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.' {
			return r
		}
		return '_'
	}, s)
}

// lockFile opens path and flocks it, polling without blocking so that ctx can end the wait.
func lockFile(ctx context.Context, path string, exclusive bool) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	how := syscall.LOCK_SH
	if exclusive {
		how = syscall.LOCK_EX
	}
	for {
		err := syscall.Flock(int(f.Fd()), how|syscall.LOCK_NB)
		if err == nil {
			return f, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, err
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("held by another opsd process on this host: %w", ctx.Err())
		case <-time.After(pollInterval):
		}
	}
}

func unlockFiles(files []*os.File) {
	for i := len(files) - 1; i >= 0; i-- {
		syscall.Flock(int(files[i].Fd()), syscall.LOCK_UN)
		files[i].Close()
	}
}
