package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wopr-network/opsd/internal/state"
)

// TestRunErrorsServedShortWithoutToken: /api/jobs/{name}/runs and /api/jobs answer without a
// token, so they serve a run's error as one short redacted line (no panic stack); the admin token
// gets the whole text, still without secrets.
func TestRunErrorsServedShortWithoutToken(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "opsd.yaml")
	writeConfig(t, cfgPath, daemonConfig(dir, "@every 1h"))
	m, base := startDaemon(t, cfgPath)
	ctx := context.Background()
	at := time.Now()
	id, err := m.state.StartRun(ctx, "tick", "noop", "manual", at)
	if err != nil {
		t.Fatal(err)
	}
	raw := "panic: boom with " + token + "\ngoroutine 7 [running]:\nruntime/debug.Stack()\n\t/usr/lib/go/src/runtime/debug/stack.go:26"
	if err := m.state.FinishRun(ctx, state.Run{ID: id, Job: "tick", FinishedAt: &at, Outcome: state.OutcomeFailure, Error: raw}); err != nil {
		t.Fatal(err)
	}
	for _, url := range []string{base + "/api/jobs/tick/runs", base + "/api/jobs"} {
		_, public := get(t, url)
		if !strings.Contains(public, "panic: boom") || strings.Contains(public, "goroutine") || strings.Contains(public, token) {
			t.Fatalf("%s without a token: %s", url, public)
		}
		_, full := getAuth(t, url, token)
		if !strings.Contains(full, "goroutine 7") || strings.Contains(full, token) {
			t.Fatalf("%s with the admin token: %s", url, full)
		}
	}
}
