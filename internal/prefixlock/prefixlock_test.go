package prefixlock

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestSharedAndExclusive(t *testing.T) {
	l := New()
	r1, err := l.TryAcquire("platform/", false, "drill")
	if err != nil {
		t.Fatal(err)
	}
	r2, err := l.TryAcquire("platform/20261126/", false, "verify")
	if err != nil {
		t.Fatalf("two readers conflict: %v", err)
	}
	if _, err := l.TryAcquire("platform/", true, "prune"); err == nil || !strings.Contains(err.Error(), "in use by") {
		t.Fatalf("prune got the prefix while drills read it: %v", err)
	}
	if rel, err := l.TryAcquire("nightly/", true, "prune"); err != nil {
		t.Fatalf("unrelated prefix: %v", err)
	} else {
		rel()
	}
	got := make(chan struct{})
	go func() {
		rel, err := l.Acquire(context.Background(), "", true, "prune-all")
		if err == nil {
			rel()
			close(got)
		}
	}()
	r1()
	select {
	case <-got:
		t.Fatal("exclusive lock granted while a reader still holds an overlapping prefix")
	case <-time.After(50 * time.Millisecond):
	}
	r2()
	select {
	case <-got:
	case <-time.After(30 * time.Second):
		t.Fatal("waiting prune never got the lock")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	rel, _ := l.TryAcquire("platform/", false, "drill")
	defer rel()
	if _, err := l.Acquire(ctx, "platform/x", true, "prune"); err == nil {
		t.Fatal("acquired through a held lock")
	}
}

// TestSharedLocksKeepProcessesApart: two lock sets on one directory stand for the daemon and
// the CLI (flock locks belong to open files, so two sets conflict as two processes would): a
// drill's shared hold keeps prune's exclusive hold of the same top-level prefix waiting, other
// prefixes stay free, and prune gets the lock once the drill lets go.
func TestSharedLocksKeepProcessesApart(t *testing.T) {
	dir := t.TempDir()
	daemon, cli := NewShared(dir), NewShared(dir)
	drill, err := daemon.TryAcquire("nightly/node-1/", false, "drill")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.TryAcquire("nightly/", true, "prune"); err == nil {
		t.Fatal("the CLI's prune got nightly/ while the daemon's drill reads it")
	}
	other, err := cli.TryAcquire("platform/", true, "prune")
	if err != nil {
		t.Fatalf("platform/ is free: %v", err)
	}
	other()
	reader, err := cli.TryAcquire("nightly/", false, "verify")
	if err != nil {
		t.Fatalf("two readers share a prefix across processes: %v", err)
	}
	reader()
	got := make(chan error, 1)
	go func() {
		rel, err := cli.Acquire(context.Background(), "nightly/", true, "prune")
		if err == nil {
			rel()
		}
		got <- err
	}()
	drill()
	select {
	case err := <-got:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("prune never got the lock after the drill released it")
	}
	ctx, cancel := context.WithCancel(context.Background())
	hold, _ := daemon.TryAcquire("nightly/", false, "drill")
	defer hold()
	cancel()
	if _, err := cli.Acquire(ctx, "nightly/", true, "prune"); err == nil {
		t.Fatal("a cancelled wait got the lock")
	}
}

// losable is a backend whose holds can be lost on demand.
type losable struct{ lost chan struct{} }

func (b *losable) Lock(context.Context, []Name) (func(), <-chan struct{}, error) {
	return func() {}, b.lost, nil
}

// TestGuardEndsWhenTheHoldIsLost: a guarded hold's context ends with ErrLost when a backend
// loses the hold, and ends (without ErrLost) when the holder releases it; the wait bound ends
// only the wait.
func TestGuardEndsWhenTheHoldIsLost(t *testing.T) {
	b := &losable{lost: make(chan struct{})}
	l := With(b)
	ctx, release, err := l.Guard(context.Background(), time.Millisecond, "nightly/", true, "prune")
	if err != nil {
		t.Fatal(err)
	}
	if ctx.Err() != nil {
		t.Fatalf("the wait bound ended the hold: %v", context.Cause(ctx))
	}
	if _, err := l.TryAcquire("nightly/x/", false, "drill"); err == nil {
		t.Fatal("a reader got a prefix held alone")
	}
	close(b.lost)
	<-ctx.Done()
	if !errors.Is(context.Cause(ctx), ErrLost) || !strings.Contains(context.Cause(ctx).Error(), "nightly/") {
		t.Fatalf("cause: %v", context.Cause(ctx))
	}
	release()
	release()
	if rel, err := l.TryAcquire("nightly/", true, "prune"); err != nil {
		t.Fatalf("released hold still held: %v", err)
	} else {
		rel()
	}

	b.lost = make(chan struct{})
	ctx, release, err = l.Guard(context.Background(), time.Second, "nightly/", true, "prune")
	if err != nil {
		t.Fatal(err)
	}
	release()
	<-ctx.Done()
	if errors.Is(context.Cause(ctx), ErrLost) {
		t.Fatal("a released hold reported lost")
	}

	held, _ := l.TryAcquire("platform/", false, "drill")
	defer held()
	if _, _, err := l.Guard(context.Background(), 20*time.Millisecond, "platform/", true, "prune"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a guard waiting past its bound: %v", err)
	}
}
