package config

import (
	"context"
	"crypto/sha256"
	"os"
	"syscall"
	"time"
)

// Watch polls the file every interval and calls onChange when its content differs from what it
// was at the previous look (an edit, an editor's rename-over, a symlink swap of a mounted
// ConfigMap all count; touching a file without changing it does not). It returns when ctx ends.
// Polling is used instead of inotify because it sees every way a file gets replaced and costs
// one small read per interval.
//
// Each look is a stat; the file is read and hashed only when its size, time or inode changed.
func Watch(ctx context.Context, path string, interval time.Duration, onChange func()) {
	last, lastStat := fileSum(path), statKey(path)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			st := statKey(path)
			if st == lastStat {
				continue
			}
			lastStat = st
			sum := fileSum(path)
			if sum != last {
				last = sum
				onChange()
			}
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
