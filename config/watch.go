package config

import (
	"context"
	"crypto/sha256"
	"os"
	"time"
)

// Watch polls the file every interval and calls onChange when its content differs from what it
// was at the previous look (an edit, an editor's rename-over, a symlink swap of a mounted
// ConfigMap all count; touching a file without changing it does not). It returns when ctx ends.
// Polling is used instead of inotify because it sees every way a file gets replaced and costs
// one small read per interval.
func Watch(ctx context.Context, path string, interval time.Duration, onChange func()) {
	last := fileSum(path)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			sum := fileSum(path)
			if sum != last {
				last = sum
				onChange()
			}
		}
	}
}

func fileSum(path string) [32]byte {
	b, err := os.ReadFile(path)
	if err != nil {
		return [32]byte{}
	}
	return sha256.Sum256(b)
}
