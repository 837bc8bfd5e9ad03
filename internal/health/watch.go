package health

import (
	"context"
	"time"

	"github.com/rs/zerolog"
)

// Dependency is something the configured jobs need (the Docker engine, an object store that was
// unreachable at start), checked by Watch.
type Dependency struct {
	// Name is the problem's name while the dependency does not answer.
	Name string
	// Check returns the problem's message, or "" when the dependency answers or is not needed.
	Check func(ctx context.Context) string
	// What names it in the log lines said when it goes down and when it comes back.
	What string
	// Timeout bounds one check (default 10s).
	Timeout time.Duration
}

// CheckNow checks every dependency once, sets or clears its problem, and logs each change.
func (p *Problems) CheckNow(ctx context.Context, log zerolog.Logger, deps ...Dependency) {
	for _, d := range deps {
		timeout := d.Timeout
		if timeout <= 0 {
			timeout = 10 * time.Second
		}
		cctx, cancel := context.WithTimeout(ctx, timeout)
		msg := d.Check(cctx)
		cancel()
		if msg != "" && p.Set(d.Name, msg) {
			log.Error().Str("error", msg).Msg(d.What + " unreachable")
		} else if msg == "" && p.Clear(d.Name) {
			log.Info().Msg(d.What + " reachable again")
		}
	}
}

// Watch checks the dependencies now and every interval until ctx ends.
func (p *Problems) Watch(ctx context.Context, every time.Duration, log zerolog.Logger, deps ...Dependency) {
	for {
		p.CheckNow(ctx, log, deps...)
		select {
		case <-ctx.Done():
			return
		case <-time.After(every):
		}
	}
}
