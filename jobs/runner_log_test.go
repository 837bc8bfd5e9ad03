package jobs

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// TestRunnerLogsDurationsWithUnit: a run's and a target's log lines carry their duration as
// "duration_ms" (integer milliseconds), never a unitless "duration".
func TestRunnerLogsDurationsWithUnit(t *testing.T) {
	r := newRig(t)
	var buf bytes.Buffer
	r.runner.Log = zerolog.New(&buf)
	ok := funcJob{"ok", func(ctx context.Context) (Result, error) {
		return Result{Targets: []TargetResult{{Name: "auth", Status: TargetOK, Duration: 1500 * time.Millisecond, Bytes: 1}}}, nil
	}}
	bad := funcJob{"bad", func(ctx context.Context) (Result, error) { return Result{}, errors.New("boom") }}
	r.runner.Run(context.Background(), ok, time.Minute, TriggerManual)
	r.runner.Run(context.Background(), bad, time.Minute, TriggerManual)
	seen := map[string]float64{}
	for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("%v: %s", err, l)
		}
		if _, ok := m["duration"]; ok {
			t.Errorf("unitless duration in %s", l)
		}
		if d, ok := m["duration_ms"].(float64); ok {
			seen[m["message"].(string)] = d
		}
	}
	if _, ok := seen["run succeeded"]; !ok || seen["target done"] != 1500 {
		t.Errorf("duration_ms by line: %v", seen)
	}
	if _, ok := seen["run failed"]; !ok {
		t.Errorf("the failed run's line has no duration_ms: %v", seen)
	}
}
