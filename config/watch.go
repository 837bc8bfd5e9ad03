package config

import (
	"context"
	"crypto/sha256"
	"os"
	"syscall"
	"time"

	"github.com/wopr-network/opsd/internal/schedule"
)

// FallbackInterval is how often a watcher that receives file events still stats the file: a bind
// mount or a network filesystem changed from elsewhere raises no event here.
const FallbackInterval = time.Minute

// debounce lets an editor finish a multi-step save before the file is read.
const debounce = 50 * time.Millisecond

// Watch calls onChange when the file's content differs from what it was at the previous look
// (an edit, an editor's rename-over, a symlink swap of a mounted ConfigMap all count; touching
// a file without changing it does not). It returns when ctx ends.
//
// Where the system has file events (inotify on Linux), the directories of the path and of its
// resolved target are watched and the file is looked at when something in them changes, plus
// every FallbackInterval (or interval, if longer); elsewhere, or when the events cannot be set
// up, it is polled every interval. A look is a stat; the file is read and hashed only when its
// size, time or inode changed.
func Watch(ctx context.Context, path string, interval time.Duration, onChange func()) {
	watch(ctx, path, fileSum(path), statKey(path), interval, onChange)
}

// watch runs the watcher from a known content hash and stat (a zero stat: look at once).
func watch(ctx context.Context, path string, last [32]byte, lastStat stat, interval time.Duration, onChange func()) {
	look := func() {
		st := statKey(path)
		if st == lastStat {
			return
		}
		lastStat = st
		if sum := fileSum(path); sum != last {
			last = sum
			onChange()
		}
	}
	if lastStat == (stat{}) {
		look()
	}
	events, stop := watchEvents(path)
	poll := interval
	if events != nil {
		defer stop()
		poll = max(interval, FallbackInterval)
	}
	// Looks fall on multiples of poll (schedule.UntilAligned): with events, on the alert
	// evaluator's wake-ups (both a minute by default) rather than between them.
	t := time.NewTimer(schedule.UntilAligned(time.Now(), poll))
	defer t.Stop()
	lost := func() { // the event source failed: poll as without it
		events, poll = nil, interval
		t.Reset(schedule.UntilAligned(time.Now(), poll))
	}
	for {
		select {
		case <-ctx.Done():
			return
		case _, ok := <-events:
			if !ok {
				lost()
				continue
			}
			// Collect the rest of a multi-step save before looking.
			settle := time.NewTimer(debounce)
		drain:
			for {
				select {
				case <-ctx.Done():
					settle.Stop()
					return
				case _, ok := <-events:
					if !ok {
						lost()
						break drain
					}
				case <-settle.C:
					break drain
				}
			}
			settle.Stop()
			look()
		case <-t.C:
			look()
			t.Reset(schedule.UntilAligned(time.Now(), poll))
		}
	}
}

type stat struct {
	size  int64
	mtime time.Time
	ino   uint64
}

func statKey(path string) stat {
	fi, err := os.Stat(path)
	if err != nil {
		return stat{}
	}
	k := stat{size: fi.Size(), mtime: fi.ModTime()}
	if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
		k.ino = sys.Ino
	}
	return k
}

// fileSum hashes the file; it never blocks on a FIFO nor reads a device or an oversized file
// (those hash as zero, and the reload that follows refuses them).
func fileSum(path string) [32]byte {
	b, err := readRegular(path, MaxFileSize)
	if err != nil {
		return [32]byte{}
	}
	return sha256.Sum256(b)
}
