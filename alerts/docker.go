package alerts

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
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
//
// While Watch holds the stream open the engine is up (Connected): the stream ends with an error
// or EOF when the engine goes away, so neither Evaluate nor the daemon's dependency check asks
// the engine every interval whether it answers. An engine that hangs with its socket open ends
// no stream, so Watch also asks it every Liveness while the stream is quiet, and drops the
// stream (not connected, reconnecting) when it does not answer.
type UnexpectedStops struct {
	RuleName     string
	Source       EventSource
	Prefix       string
	Grace        time.Duration
	ResolveAfter time.Duration
	Kick         func()
	Log          zerolog.Logger
	// Check, when set, says whether the engine answers; while it does not, Evaluate fails (the
	// rule cannot know, so it must not report the fleet as fine). Watch asks it once per
	// connection of the stream; Evaluate only while the stream is not open.
	Check func(ctx context.Context) error
	// OnConnection, when set, is called (from Watch) when the stream opens or is lost.
	OnConnection func()
	// Liveness is how long the open stream may stay without an event before Watch asks Check
	// whether the engine still answers (default 5 minutes).
	Liveness time.Duration

	connected atomic.Bool // the stream is open and the engine answered on it
	mu        sync.Mutex
	pending   map[string]*time.Timer
	stopped   map[string]stopped
	// asked holds when a stop or removal of each container was asked for; Evaluate forgets a
	// mark after askedFor (a die needs a start first, which clears it), so removed containers'
	// names do not pile up.
	asked map[string]time.Time
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
		u.pending, u.stopped, u.asked = map[string]*time.Timer{}, map[string]stopped{}, map[string]time.Time{}
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

// Connected reports whether Watch holds the event stream open and the engine answered on it.
func (u *UnexpectedStops) Connected() bool { return u.connected.Load() }

// setConnected records whether the stream is open and says so when that changed.
func (u *UnexpectedStops) setConnected(up bool) {
	if u.connected.Swap(up) != up && u.OnConnection != nil {
		u.OnConnection()
	}
}

// Watch follows the engine's events until ctx ends, reconnecting with backoff. The stream counts
// as open (Connected) once the engine answered a ping after it was asked for, or sent an event
// on it; it is lost when it ends or fails.
func (u *UnexpectedStops) Watch(ctx context.Context) {
	u.mu.Lock()
	u.init()
	u.mu.Unlock()
	defer u.setConnected(false)
	liveness := u.Liveness
	if liveness <= 0 {
		liveness = 5 * time.Minute
	}
	quiet := time.NewTimer(liveness)
	defer quiet.Stop()
	wait := time.Second
	for ctx.Err() == nil {
		sctx, endStream := context.WithCancel(ctx)
		events, errs := u.Source.Events(sctx)
		connected := time.Now()
		if u.Check == nil || u.ping(ctx) == nil {
			u.setConnected(true)
		}
		quiet.Reset(liveness)
	loop:
		for {
			select {
			case ev, ok := <-events:
				if !ok {
					break loop
				}
				u.setConnected(true)
				u.handle(ev)
				quiet.Reset(liveness)
			case err := <-errs:
				if ctx.Err() == nil {
					u.Log.Warn().Err(err).Msg("docker event stream lost; reconnecting")
				}
				break loop
			case <-quiet.C:
				if u.Check == nil {
					quiet.Reset(liveness)
					continue
				}
				if err := u.ping(ctx); err != nil {
					if ctx.Err() == nil {
						u.Log.Warn().Err(err).Msg("docker engine does not answer while its event stream is open; reconnecting")
					}
					break loop
				}
				u.setConnected(true)
				quiet.Reset(liveness)
			case <-ctx.Done():
				endStream()
				return
			}
		}
		endStream()
		u.setConnected(false)
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
		u.asked[name] = time.Now()
		if t, ok := u.pending[name]; ok {
			t.Stop()
			delete(u.pending, name)
		}
	case "die":
		if _, asked := u.asked[name]; asked {
			return
		}
		reason := "exited with code " + ev.Attrs["exitCode"]
		if t, ok := u.pending[name]; ok {
			t.Stop()
		}
		u.pending[name] = time.AfterFunc(u.Grace, func() {
			u.mu.Lock()
			delete(u.pending, name)
			_, asked := u.asked[name]
			if !asked {
				if old, ok := u.stopped[name]; ok && strings.HasPrefix(old.reason, "was OOM-killed") {
					reason = old.reason
				}
				u.stopped[name] = stopped{at: time.Now(), reason: reason}
			}
			u.mu.Unlock()
			if !asked && u.Kick != nil {
				u.Kick()
			}
		})
	case "oom":
		u.stopped[name] = stopped{at: time.Now(), reason: "was OOM-killed"}
	case "start", "restart", "unpause":
		_, was := u.stopped[name]
		delete(u.stopped, name)
		delete(u.asked, name)
		if was && u.Kick != nil { // only a container the rule reports changes its value
			go u.Kick()
		}
	case "kill":
		// docker stop/kill/rm all send kill; only a following stop or destroy says it was asked for.
	}
}

// askedFor is how long a stop or removal asked for is remembered: long enough for the die
// timer it answers (Grace) to see it.
func (u *UnexpectedStops) askedFor() time.Duration { return max(time.Minute, 2*u.Grace) }

// ping asks Check whether the engine answers, within 10 seconds.
func (u *UnexpectedStops) ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return u.Check(ctx)
}

// Evaluate reports the containers that stopped unexpectedly. While the event stream is open the
// engine is up; otherwise it asks Check.
func (u *UnexpectedStops) Evaluate(ctx context.Context, now time.Time) (Eval, error) {
	if u.Check != nil && !u.Connected() {
		if err := u.Check(ctx); err != nil {
			return Eval{}, fmt.Errorf("docker engine unreachable: %w", err)
		}
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	u.init()
	for name, at := range u.asked {
		if _, pending := u.pending[name]; !pending && now.Sub(at) > u.askedFor() {
			delete(u.asked, name)
		}
	}
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
