//go:build !linux

package restore

import "context"

// WatchLocks has no file events here: the caller polls.
func WatchLocks(ctx context.Context, statePath string, wake func()) func() bool { return nil }
