package coord

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/wopr-network/opsd/internal/prefixlock"
)

// PrefixLocks is the prefix locks' backend across hosts (prefixlock.Shared): each hold takes
// its locks as session-level advisory locks (shared or exclusive) on one connection, kept for
// the length of the hold, so `opsd prune` on one host waits for a drill on another.
//
// When the database cannot be reached, shared holds (drills, verification, restores: they only
// read) go ahead with the host's own locks, so a restore works while the platform's database is
// down; exclusive holds (prune, forget: they delete) fail, and one whose session is lost while
// held is told through the returned channel (prefixlock.Locks.Guard ends its holder's context).
type PrefixLocks struct {
	P *Postgres
	// Poll is how often a wait retries (default 100ms).
	Poll time.Duration
	// Degraded is told when a shared hold goes ahead without the database (nil: nothing).
	Degraded func(error)
}

// Lock takes the named locks, waiting until ctx ends. The returned channel is closed when the
// session holding them is lost (nil for a shared hold that went ahead without the database).
func (pl PrefixLocks) Lock(ctx context.Context, names []prefixlock.Name) (func(), <-chan struct{}, error) {
	reqs := make([]lockReq, 0, len(names))
	exclusive := false
	for _, n := range names {
		reqs = append(reqs, lockReq{key: "prefix:" + n.Key, shared: !n.Exclusive})
		exclusive = exclusive || n.Exclusive
	}
	poll := pl.Poll
	if poll == 0 {
		poll = 100 * time.Millisecond
	}
	for {
		// One attempt even when ctx is already done (TryAcquire tries once that way).
		l, err := pl.P.tryLocks(context.WithoutCancel(ctx), reqs)
		switch {
		case err == nil:
			return l.Release, l.Lost(), nil
		case errors.Is(err, ErrUnavailable) && !exclusive:
			if pl.Degraded != nil {
				pl.Degraded(err)
			}
			return func() {}, nil, nil
		case !errors.Is(err, ErrHeld):
			return nil, nil, err
		}
		select {
		case <-ctx.Done():
			return nil, nil, fmt.Errorf("held by another opsd (coordination database): %w", ctx.Err())
		case <-time.After(poll):
		}
	}
}
