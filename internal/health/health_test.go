package health

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// TestDependencyProblems: a dependency that stops answering is a problem (logged once), its
// message follows the latest check, and it clears (logged) when the dependency answers again.
func TestDependencyProblems(t *testing.T) {
	var p Problems
	var logs bytes.Buffer
	log := zerolog.New(&logs)
	down := errors.New("connection refused")
	dep := Dependency{Name: "docker", What: "docker engine", Check: func(context.Context) string {
		if down != nil {
			return "unreachable: " + down.Error()
		}
		return ""
	}}
	ctx := context.Background()
	p.CheckNow(ctx, log, dep)
	p.CheckNow(ctx, log, dep)
	if l := p.List(); len(l) != 1 || l[0].Name != "docker" || l[0].Error != "unreachable: connection refused" {
		t.Fatalf("problems: %+v", l)
	}
	if n := strings.Count(logs.String(), "docker engine unreachable"); n != 1 {
		t.Fatalf("logged %d times that the engine is unreachable:\n%s", n, logs.String())
	}
	down = nil
	p.CheckNow(ctx, log, dep)
	if l := p.List(); len(l) != 0 || !strings.Contains(logs.String(), "docker engine reachable again") {
		t.Fatalf("problems after recovery: %+v\n%s", l, logs.String())
	}
	// Watch checks at once, then stops with its context.
	down = errors.New("gone")
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { p.Watch(wctx, 1<<40, log, dep); close(done) }()
	for len(p.List()) == 0 {
		select {
		case <-done:
			t.Fatal("Watch returned before its context ended")
		default:
		}
	}
	cancel()
	<-done
}

// TestProbe: 200 is ready; anything else, or nothing listening, is an error naming the URL; a
// wildcard listen address is probed on loopback.
func TestProbe(t *testing.T) {
	ready := true
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/health/ready" || !ready {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	port := srv.URL[strings.LastIndexByte(srv.URL, ':')+1:]
	url := ReadyURL("0.0.0.0:" + port)
	if url != "http://127.0.0.1:"+port+"/health/ready" {
		t.Fatalf("ReadyURL = %s", url)
	}
	if ReadyURL("[::]:9100") != "http://127.0.0.1:9100/health/ready" || ReadyURL("10.0.0.2:9100") != "http://10.0.0.2:9100/health/ready" {
		t.Fatal("ReadyURL of a wildcard or a host")
	}
	if err := Probe(context.Background(), url); err != nil {
		t.Fatal(err)
	}
	ready = false
	if err := Probe(context.Background(), url); err == nil || !strings.Contains(err.Error(), url+" answered 503") {
		t.Fatalf("not ready: %v", err)
	}
	srv.Close()
	if err := Probe(context.Background(), url); err == nil || !strings.Contains(err.Error(), "127.0.0.1:"+port) {
		t.Fatalf("nothing listening: %v", err)
	}
}

// TestWatchWaitsForEventsWhileQuiet: a dependency that is not Quiet is checked at every
// interval; once it is Quiet (its event source is open), Watch sets no timer and checks only
// when woken; when it stops being Quiet (the source was lost), the interval checks resume. Each
// check takes from step whether the dependency is quiet after it.
func TestWatchWaitsForEventsWhileQuiet(t *testing.T) {
	var p Problems
	var quiet atomic.Bool
	step := make(chan bool)
	ctx, cancel := context.WithCancel(context.Background())
	dep := Dependency{Name: "docker", What: "docker engine", Quiet: quiet.Load, Check: func(ctx context.Context) string {
		select {
		case q := <-step:
			quiet.Store(q)
		case <-ctx.Done():
		}
		return ""
	}}
	done := make(chan struct{})
	go func() { p.Watch(ctx, time.Nanosecond, zerolog.Nop(), dep); close(done) }()
	for _, q := range []bool{false, false, false, true} { // polled: checks come without a wake
		step <- q
	}
	for i := 0; i < 3; i++ {
		select {
		case step <- true:
			t.Fatal("a quiet dependency was checked without a wake")
		case <-time.After(20 * time.Millisecond):
		}
		p.Wake()
		step <- true
	}
	p.Wake()
	for _, q := range []bool{false, false, false} { // lost: polled again
		step <- q
	}
	cancel()
	<-done
}
