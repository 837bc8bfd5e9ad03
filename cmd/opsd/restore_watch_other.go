//go:build !linux

package main

import "context"

// watchRestoreLocks has no file events here: the caller polls.
func watchRestoreLocks(ctx context.Context, statePath string, wake func()) func() bool { return nil }
