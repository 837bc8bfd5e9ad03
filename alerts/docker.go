package alerts

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/wopr-network/opsd/internal/docker"
)

// EventSource streams container events.
type EventSource interface {
	Events(ctx context.Context) (<-chan docker.Event, <-chan error)
}

// UnexpectedStops is fleet-unexpected-stop: a tenant container that dies without anyone asking
// (a non-zero exit, an OOM, a kill from outside) fires; `docker stop`, `docker restart` and a
// removal do not. `docker stop` sends kill, die, then stop: a die that no stop or destroy follows
// within Grace was not asked for. It resolves when the container runs again or after
// ResolveAfter. The event stream reconnects after the engine restarts.
type UnexpectedStops struct {
	RuleName     string
	Source       EventSource
	Prefix       string
	Grace        time.Duration
	ResolveAfter time.Duration
	Kick         func()
	Log          zerolog.Logger
	// Check, when set, says whether the engine answers; while it does not, Evaluate fails (the
	// rule cannot know, so it must not report the fleet as fine).
	Check func(ctx context.Context) error

	mu      sync.Mutex
	pending map[string]*time.Timer
	stopped map[string]stopped
	asked   map[string]bool
}

type stopped struct {
	at     time.Time
	reason string
}

// Name returns the rule's name.
func (u *UnexpectedStops) Name() string {
	if u.RuleName == "" {
		return "fleet-unexpected-stop"
	}
	return u.RuleName
}

func (u *UnexpectedStops) init() {
	if u.pending == nil {
		u.pending, u.stopped, u.asked = map[string]*time.Timer{}, map[string]stopped{}, map[string]bool{}
	}
	if u.Grace == 0 {
		u.Grace = 3 * time.Second
	}
	if u.ResolveAfter == 0 {
		u.ResolveAfter = 30 * time.Minute
	}
	if u.Prefix == "" {
		u.Prefix = "tenant_"
	}
}

// Watch follows the engine's events until ctx ends, reconnecting with backoff.
func (u *UnexpectedStops) Watch(ctx context.Context) {
	u.mu.Lock()
	u.init()
	u.mu.Unlock()
	wait := time.Second
	for ctx.Err() == nil {
		events, errs := u.Source.Events(ctx)
		connected := time.Now()
	loop:
		for {
			select {
			case ev, ok := <-events:
				if !ok {
					break loop
				}
				u.handle(ev)
			case err := <-errs:
				if ctx.Err() == nil {
					u.Log.Warn().Err(err).Msg("docker event stream lost; reconnecting")
				}
				break loop
			case <-ctx.Done():
				return
			}
		}
		if time.Since(connected) > time.Minute {
			wait = time.Second
		}
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return
		}
		wait = min(wait*2, time.Minute)
	}
}

func (u *UnexpectedStops) handle(ev docker.Event) {
	if !strings.HasPrefix(ev.Name, u.Prefix) {
		return
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	name := ev.Name
	switch ev.Action {
	case "stop", "destroy":
		u.asked[name] = true
		if t, ok := u.pending[name]; ok {
			t.Stop()
			delete(u.pending, name)
		}
	case "die":
		if u.asked[name] {
			return
		}
		reason := "exited with code " + ev.Attrs["exitCode"]
		if t, ok := u.pending[name]; ok {
			t.Stop()
		}
		u.pending[name] = time.AfterFunc(u.Grace, func() {
			u.mu.Lock()
			delete(u.pending, name)
			if !u.asked[name] {
				if old, ok := u.stopped[name]; ok && strings.HasPrefix(old.reason, "was OOM-killed") {
					reason = old.reason
				}
				u.stopped[name] = stopped{at: time.Now(), reason: reason}
			}
			u.mu.Unlock()
			if u.Kick != nil {
				u.Kick()
			}
		})
	case "oom":
		u.stopped[name] = stopped{at: time.Now(), reason: "was OOM-killed"}
	case "start", "restart", "unpause":
		delete(u.stopped, name)
		delete(u.asked, name)
		if u.Kick != nil {
			go u.Kick()
		}
	case "kill":
		// docker stop/kill/rm all send kill; only a following stop or destroy says it was asked for.
	}
}

// Evaluate reports the containers that stopped unexpectedly.
func (u *UnexpectedStops) Evaluate(ctx context.Context, now time.Time) (Eval, error) {
	if u.Check != nil {
		if err := u.Check(ctx); err != nil {
			return Eval{}, fmt.Errorf("docker engine unreachable: %w", err)
		}
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	u.init()
	var names []string
	for name, s := range u.stopped {
		if now.Sub(s.at) > u.ResolveAfter {
			delete(u.stopped, name)
			continue
		}
		names = append(names, fmt.Sprintf("%s %s", name, s.reason))
	}
	sort.Strings(names)
	if len(names) == 0 {
		return Eval{Message: "no tenant container stopped unexpectedly"}, nil
	}
	return Eval{Value: float64(len(names)), Firing: true, Message: "tenant containers stopped without being asked: " + strings.Join(names, "; ")}, nil
}
