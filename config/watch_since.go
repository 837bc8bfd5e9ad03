package config

import (
	"context"
	"encoding/hex"
	"time"
)

// WatchSince is Watch with its starting point given: hash is the SHA-256 (hex, Config.Hash) of
// the content the caller loaded. An edit made between that load and the watcher's first look
// is then seen too (Watch compares with the file as it is when the watcher starts, so such an
// edit was missed until the next one): the file is looked at once as the watcher starts.
func WatchSince(ctx context.Context, path, hash string, interval time.Duration, onChange func()) {
	var last [32]byte
	if b, err := hex.DecodeString(hash); err == nil && len(b) == len(last) {
		copy(last[:], b)
	} else {
		last = fileSum(path)
	}
	watch(ctx, path, last, stat{}, interval, onChange)
}
