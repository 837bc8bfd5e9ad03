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

// lockFiles takes the cross-process locks of a hold (nothing without a directory): a shared
// lock on the "all" file (exclusive for the prefix "", which conflicts with everything), then
// the prefix's top-level file, shared or exclusive. It waits, polling, until ctx ends.
func (l *Locks) lockFiles(ctx context.Context, prefix string, exclusive bool) ([]*os.File, error) {
	if l.dir == "" {
		return nil, nil
	}
	type want struct {
		name      string
		exclusive bool
	}
	wants := []want{{"all", prefix == "" && exclusive}}
	if prefix != "" {
		root, _, _ := strings.Cut(prefix, "/")
		wants = append(wants, want{"root-" + sanitize(root), exclusive})
	}
	var held []*os.File
	for _, w := range wants {
		f, err := lockFile(ctx, filepath.Join(l.dir, "opsd-prefix-"+w.name+".lock"), w.exclusive)
		if err != nil {
			unlockFiles(held)
			return nil, fmt.Errorf("lock %s across processes: %w", prefix, err)
		}
		held = append(held, f)
	}
	return held, nil
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
