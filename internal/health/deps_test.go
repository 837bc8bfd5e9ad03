package health

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wopr-network/opsd/internal/storage"
	"github.com/wopr-network/opsd/internal/storage/local"
)

// TestProbeClock: no probe on the first wake-up (start probed), then one per Every, due a tenth early.
func TestProbeClock(t *testing.T) {
	c := ProbeClock{Every: 10 * time.Minute}
	t0 := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	for _, step := range []struct {
		at   time.Duration
		want bool
	}{{0, false}, {time.Minute, false}, {8 * time.Minute, false}, {9 * time.Minute, true}, {10 * time.Minute, false}, {18 * time.Minute, true}} {
		if got := c.Due(t0.Add(step.at)); got != step.want {
			t.Fatalf("Due(+%s) = %v, want %v", step.at, got, step.want)
		}
	}
	var d ProbeClock // default 5m
	d.Due(t0)
	if d.Due(t0.Add(4*time.Minute)) || !d.Due(t0.Add(5*time.Minute)) {
		t.Fatal("the default interval is not 5m")
	}
}

// TestStoreDependency: a store that answers is quiet; a store whose directory is gone is a
// redacted problem and checked every interval until it answers again; one unreachable at start
// is opened again by the check.
func TestStoreDependency(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "store-secret")
	s, err := local.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	redact := func(m string) string { return strings.ReplaceAll(m, "secret", "[REDACTED]") }
	d := StoreDependency(nil, func() storage.Store { return s }, redact)
	if msg := d.Check(ctx); msg != "" || !d.Quiet() {
		t.Fatalf("store up: %q, quiet %v", msg, d.Quiet())
	}
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dir, []byte("not a directory"), 0o600); err != nil {
		t.Fatal(err)
	}
	msg := d.Check(ctx)
	if !strings.HasPrefix(msg, "object store unreachable: ") || strings.Contains(msg, "secret") || d.Quiet() {
		t.Fatalf("store gone: %q, quiet %v", msg, d.Quiet())
	}

	opens := 0
	lazy := storage.NewLazy(func(context.Context) (storage.Store, error) {
		if opens++; opens == 1 {
			return nil, errors.New("dial secret host: refused")
		}
		return local.New(t.TempDir())
	}, "s3", errors.New("dial secret host: refused"))
	d = StoreDependency(lazy, func() storage.Store { return lazy }, redact)
	if msg := d.Check(ctx); msg != "object store unreachable: dial [REDACTED] host: refused" || d.Quiet() {
		t.Fatalf("still unreachable: %q", msg)
	}
	if msg := d.Check(ctx); msg != "" || !d.Quiet() {
		t.Fatalf("reachable again: %q", msg)
	}
}

// TestDockerDependency: pinged only while a job needs the engine and no event stream is open.
func TestDockerDependency(t *testing.T) {
	var need []string
	stream, pings := false, 0
	d := DockerDependency(func() []string { return need }, func() bool { return stream },
		func(context.Context) error { pings++; return errors.New("connection refused") })
	if msg := d.Check(context.Background()); msg != "" || !d.Quiet() || pings != 0 {
		t.Fatalf("no job needs it: %q, pings %d", msg, pings)
	}
	need = []string{"nightly", "drill"}
	if msg := d.Check(context.Background()); msg != "docker engine unreachable (needed by nightly, drill): connection refused" || d.Quiet() {
		t.Fatalf("needed and down: %q", msg)
	}
	stream = true
	if msg := d.Check(context.Background()); msg != "" || !d.Quiet() || pings != 1 {
		t.Fatalf("stream open: %q, pings %d", msg, pings)
	}
}
