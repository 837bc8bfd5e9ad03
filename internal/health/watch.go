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
	// Quiet, when set, reports whether the dependency needs no check until Watch is woken (its
	// source of events calls Problems.Wake when it changes, e.g. the Docker event stream while it
	// is open). Without it the dependency is checked at every interval.
	Quiet func() bool
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

// Wake asks Watch to check the dependencies now (a dependency's source of events changed).
func (p *Problems) Wake() {
	select {
	case p.wakeChan() <- struct{}{}:
	default:
	}
}

func (p *Problems) wakeChan() chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.wake == nil {
		p.wake = make(chan struct{}, 1)
	}
	return p.wake
}

// Watch checks the dependencies now, then whenever Wake is called and, while one of them is not
// Quiet, every interval, until ctx ends. When every dependency is quiet it sets no timer: an
// idle daemon is not woken to check what an event would have said.
func (p *Problems) Watch(ctx context.Context, every time.Duration, log zerolog.Logger, deps ...Dependency) {
	wake := p.wakeChan()
	var t *time.Timer
	defer func() {
		if t != nil {
			t.Stop()
		}
	}()
	for {
		p.CheckNow(ctx, log, deps...)
		var tick <-chan time.Time
		if !quiet(deps) {
			if t == nil {
				t = time.NewTimer(every)
			} else {
				t.Reset(every)
			}
			tick = t.C
		} else if t != nil {
			t.Stop()
		}
		select {
		case <-ctx.Done():
			return
		case <-tick:
		case <-wake:
		}
	}
}

// quiet reports whether no dependency needs a check at the next interval.
func quiet(deps []Dependency) bool {
	for _, d := range deps {
		if d.Quiet == nil || !d.Quiet() {
			return false
		}
	}
	return true
}
