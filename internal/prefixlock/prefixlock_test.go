package prefixlock

import (
	"context"
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
