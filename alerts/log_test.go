package alerts

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/wopr-network/opsd/internal/metrics"
)

type fixedRule struct{ eval Eval }

func (r *fixedRule) Name() string { return "disk" }
func (r *fixedRule) Evaluate(context.Context, time.Time) (Eval, error) {
	return r.eval, nil
}

// TestAlertLogLinesHaveOneMessage: an alert's log line is valid JSON with one "message" key
// (the line's own) and the alert's text under "alert_message", so JSON parsers that keep the
// last duplicate key do not drop either.
func TestAlertLogLinesHaveOneMessage(t *testing.T) {
	st := openState(t)
	var buf bytes.Buffer
	ev := NewEvaluator(st, metrics.New(prometheus.NewRegistry(), "test"), zerolog.New(&buf), nil, "n", time.Minute)
	r := &fixedRule{eval: Eval{Firing: true, Value: 0.97, Threshold: 0.85, Message: "disk /data 97% used"}}
	ev.SetRules([]Spec{{Rule: r}})
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	ev.EvaluateOnce(context.Background(), now)
	r.eval = Eval{Value: 0.5, Threshold: 0.85, Message: "disk /data 50% used"}
	ev.EvaluateOnce(context.Background(), now.Add(time.Minute))

	var lines []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		if n := strings.Count(l, `"message":`); n != 1 {
			t.Errorf("%d \"message\" keys in %s", n, l)
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("%v: %s", err, l)
		}
		lines = append(lines, m)
	}
	if len(lines) != 2 || lines[0]["message"] != "alert firing" || lines[0]["alert_message"] != "disk /data 97% used" ||
		lines[1]["message"] != "alert resolved" || lines[1]["alert_message"] != "disk /data 50% used" || lines[1]["alert"] != "disk" {
		t.Fatalf("log lines: %v", lines)
	}
}
