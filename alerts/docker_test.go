package alerts

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/wopr-network/opsd/internal/docker"
)

// fakeStream is an event source whose streams the test ends: each Events call is one stream,
// handed to the test on opened.
type fakeStream struct {
	opened chan chan error
}

func (f *fakeStream) Events(ctx context.Context) (<-chan docker.Event, <-chan error) {
	errs := make(chan error, 1)
	f.opened <- errs
	return make(chan docker.Event), errs
}

// TestUnexpectedStopsFollowsTheStream: while the event stream is open the engine counts as up
// (Connected) and Evaluate does not ask it; a lost stream is said at once (OnConnection) and
// Evaluate asks the engine again, failing while it does not answer; a new stream on a live
// engine is connected again.
func TestUnexpectedStopsFollowsTheStream(t *testing.T) {
	src := &fakeStream{opened: make(chan chan error)}
	var pings, engineDown atomic.Int32
	changed := make(chan bool, 10)
	u := &UnexpectedStops{Source: src, Log: zerolog.Nop(), Check: func(context.Context) error {
		pings.Add(1)
		if engineDown.Load() != 0 {
			return errors.New("connection refused")
		}
		return nil
	}}
	u.OnConnection = func() { changed <- u.Connected() }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { u.Watch(ctx); close(done) }()

	stream := <-src.opened
	if up := <-changed; !up {
		t.Fatal("the stream opened on a live engine is not connected")
	}
	before := pings.Load()
	for i := 0; i < 5; i++ {
		if ev, err := u.Evaluate(ctx, time.Now()); err != nil || ev.Firing {
			t.Fatalf("evaluate while connected: %+v %v", ev, err)
		}
	}
	if pings.Load() != before {
		t.Fatalf("Evaluate pinged the engine %d times while the stream was open", pings.Load()-before)
	}

	engineDown.Store(1)
	stream <- errors.New("EOF")
	if up := <-changed; up {
		t.Fatal("a lost stream still counts as connected")
	}
	if _, err := u.Evaluate(ctx, time.Now()); err == nil || !strings.Contains(err.Error(), "docker engine unreachable") {
		t.Fatalf("evaluate with the stream lost and the engine down: %v", err)
	}
	p0 := pings.Load()
	stream = <-src.opened // the reconnection after the backoff: the engine does not answer yet
	for pings.Load() == p0 {
		runtime.Gosched() // until Watch asked the engine about this stream
	}
	engineDown.Store(0)
	stream <- errors.New("connection refused")
	stream = <-src.opened
	if up := <-changed; !up {
		t.Fatal("the stream reopened on a live engine is not connected")
	}
	cancel()
	<-done
	if u.Connected() {
		t.Fatal("connected after Watch returned")
	}
}

// TestUnexpectedStopsKicksOnlyOnChange: an event that cannot change the rule's value (a tenant
// container starting that was not reported stopped, a stop that was asked for) does not ask the
// evaluator for an evaluation; a container that died unasked, and its start, do.
func TestUnexpectedStopsKicksOnlyOnChange(t *testing.T) {
	kicked := make(chan string, 10)
	var last atomic.Value
	u := &UnexpectedStops{Grace: time.Nanosecond, Log: zerolog.Nop(), Kick: func() { kicked <- last.Load().(string) }}
	u.init()
	ev := func(action, name string) {
		last.Store(action + " " + name)
		u.handle(docker.Event{Action: action, Name: name, Attrs: map[string]string{"exitCode": "137"}})
	}
	none := func(what string) {
		select {
		case k := <-kicked:
			t.Fatalf("%s: kicked (%s)", what, k)
		case <-time.After(50 * time.Millisecond):
		}
	}
	ev("start", "tenant_a")
	none("a start of a container never reported")
	ev("kill", "tenant_b")
	ev("stop", "tenant_b")
	ev("die", "tenant_b")
	none("docker stop")
	ev("die", "tenant_c")
	if k := <-kicked; k != "die tenant_c" {
		t.Fatalf("kicked by %s", k)
	}
	ev("start", "tenant_c")
	if k := <-kicked; k != "start tenant_c" {
		t.Fatalf("kicked by %s", k)
	}
	ev("restart", "tenant_c")
	none("a restart of a running container")
}

// TestUnexpectedStopsForgetsRemovedContainers: the mark a removal leaves (so that its die is not
// reported) is forgotten once it cannot matter any more: the names of containers removed over
// months of tenant churn do not pile up, and removing them never fires the rule.
func TestUnexpectedStopsForgetsRemovedContainers(t *testing.T) {
	u := &UnexpectedStops{Grace: time.Hour, Log: zerolog.Nop()}
	u.init()
	for i := 0; i < 1000; i++ {
		name := fmt.Sprintf("tenant_%04d", i)
		for _, action := range []string{"kill", "die", "destroy"} {
			u.handle(docker.Event{Action: action, Name: name, Attrs: map[string]string{"exitCode": "137"}})
		}
	}
	ev, err := u.Evaluate(context.Background(), time.Now())
	if err != nil || ev.Firing {
		t.Fatalf("removals reported: %+v %v", ev, err)
	}
	if n := len(u.asked); n != 1000 {
		t.Fatalf("%d removal marks kept within the grace period, want 1000", n)
	}
	// Within the grace period a late die of a removed container is still not reported.
	u.handle(docker.Event{Action: "die", Name: "tenant_0001", Attrs: map[string]string{"exitCode": "137"}})
	if len(u.pending) != 0 {
		t.Fatal("a die after its removal was taken for an unexpected stop")
	}
	ev, err = u.Evaluate(context.Background(), time.Now().Add(3*time.Hour))
	if err != nil || ev.Firing {
		t.Fatalf("after the grace period: %+v %v", ev, err)
	}
	if n := len(u.asked); n != 0 {
		t.Fatalf("%d removal marks still kept hours later", n)
	}
}

// TestUnexpectedStopsNoticesAHungEngine: an engine that stops answering but keeps its event
// stream open is noticed: after Liveness without an event Watch asks it, and when it does not
// answer the stream counts as lost (OnConnection says so, so /health checks the engine) and is
// opened again once the engine answers.
func TestUnexpectedStopsNoticesAHungEngine(t *testing.T) {
	src := &fakeStream{opened: make(chan chan error)}
	var engineDown atomic.Int32
	changed := make(chan bool, 10)
	u := &UnexpectedStops{Source: src, Log: zerolog.Nop(), Liveness: 10 * time.Millisecond, Check: func(context.Context) error {
		if engineDown.Load() != 0 {
			return context.DeadlineExceeded
		}
		return nil
	}}
	u.OnConnection = func() { changed <- u.Connected() }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { u.Watch(ctx); close(done) }()

	<-src.opened
	if up := <-changed; !up {
		t.Fatal("the stream opened on a live engine is not connected")
	}
	engineDown.Store(1) // the stream stays open and silent: nothing ends it
	if up := <-changed; up {
		t.Fatal("a hung engine behind an open stream still counts as connected")
	}
	if _, err := u.Evaluate(ctx, time.Now()); err == nil {
		t.Fatal("Evaluate trusted a hung engine")
	}
	engineDown.Store(0)
	<-src.opened // reconnected after the backoff
	if up := <-changed; !up {
		t.Fatal("the stream reopened on an answering engine is not connected")
	}
	cancel()
	<-done
}
