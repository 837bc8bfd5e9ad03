package health

import (
	"context"
	"time"
)

// Dependency is something the configured jobs need (the Docker engine, an object store that was
// unreachable at start), checked by Watch.
type Dependency struct {
	// Name is the problem's name while the dependency does not answer.
	Name string
	// Check returns the problem's message, or "" when the dependency answers or is not needed.
	Check func(ctx context.Context) string
	// Changed, when set, is told each time the dependency goes down (msg set) or comes back.
	Changed func(msg string)
	// Timeout bounds one check (default 10s).
	Timeout time.Duration
}

// CheckNow checks every dependency once and sets or clears its problem.
func (p *Problems) CheckNow(ctx context.Context, deps ...Dependency) {
	for _, d := range deps {
		timeout := d.Timeout
		if timeout <= 0 {
			timeout = 10 * time.Second
		}
		cctx, cancel := context.WithTimeout(ctx, timeout)
		msg := d.Check(cctx)
		cancel()
		changed := false
		if msg != "" {
			changed = p.Set(d.Name, msg)
		} else {
			changed = p.Clear(d.Name)
		}
		if changed && d.Changed != nil {
			d.Changed(msg)
		}
	}
}

// Watch checks the dependencies now and every interval until ctx ends.
func (p *Problems) Watch(ctx context.Context, every time.Duration, deps ...Dependency) {
	p.CheckNow(ctx, deps...)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			p.CheckNow(ctx, deps...)
		}
	}
}
