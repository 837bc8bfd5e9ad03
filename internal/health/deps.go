package health

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/wopr-network/opsd/internal/storage"
)

// DockerDependency is the Docker engine as a dependency of the jobs need() names (none: not
// checked). While streamUp says an event stream from the engine is open, the engine is up and
// nothing is asked (the stream's reconnection wakes the watch); otherwise it is pinged.
func DockerDependency(need func() []string, streamUp func() bool, ping func(context.Context) error) Dependency {
	return Dependency{Name: "docker", What: "docker engine", Check: func(ctx context.Context) string {
		if jobs := need(); len(jobs) > 0 && !streamUp() {
			if err := ping(ctx); err != nil {
				return fmt.Sprintf("docker engine unreachable (needed by %s): %v", strings.Join(jobs, ", "), err)
			}
		}
		return ""
	}, Quiet: func() bool { return len(need()) == 0 || streamUp() }}
}

// StoreDependency is the object store as a dependency: opened again while it could not be opened
// at start (lazy, nil when it was), then probed (storage.Probe: one HEAD of a key that does not
// exist). While it answers it is quiet, probed only when the watch is woken (see ProbeClock);
// while it does not, at every interval until it answers again. Messages pass through redact.
func StoreDependency(lazy *storage.Lazy, store func() storage.Store, redact func(string) string) Dependency {
	var up atomic.Bool
	return Dependency{Name: "store", What: "object store", Check: func(ctx context.Context) string {
		if lazy != nil {
			if err := lazy.Retry(ctx); err != nil {
				up.Store(false)
				return redact(err.Error())
			}
		}
		if err := storage.Probe(ctx, store()); err != nil {
			up.Store(false)
			return "object store unreachable: " + redact(err.Error())
		}
		up.Store(true)
		return ""
	}, Quiet: up.Load}
}

// ProbeClock paces the probes of quiet dependencies on a periodic wake-up (the daemon's alert
// evaluation), so that an idle daemon wakes no more often. Only one goroutine may call Due.
type ProbeClock struct {
	// Every is the time between probes (default 5m).
	Every time.Duration
	next  time.Time
}

// Due reports whether the wake-up at now should probe. The first wake-up does not (the checks
// probed at start). A probe is due a tenth of Every early: the wake-ups are aligned, and one a
// little early must not wait a whole interval more.
func (c *ProbeClock) Due(now time.Time) bool {
	every := c.Every
	if every <= 0 {
		every = 5 * time.Minute
	}
	next := now.Add(every - every/10)
	if c.next.IsZero() {
		c.next = next
		return false
	}
	if now.Before(c.next) {
		return false
	}
	c.next = next
	return true
}
