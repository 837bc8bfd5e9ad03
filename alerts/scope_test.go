package alerts

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/wopr-network/opsd/internal/metrics"
)

// TestRuleScopeChangeResolvesTheOldIncident: a reload changes a firing rule's kind under the
// same name so that its scope changes (a platform-wide sql rule becomes a per-node system rule,
// and back): the incident its firing opened is keyed otherwise than the one it fires as now. The
// old incident is resolved (the message says the scope changed) and the new one opened; when it
// resolves later, the resolution names the key it fired under. Nothing stays open.
func TestRuleScopeChangeResolvesTheOldIncident(t *testing.T) {
	for _, fromPerNode := range []bool{false, true} {
		t.Run(scopeName(fromPerNode), func(t *testing.T) {
			ctx := context.Background()
			st := openState(t)
			pd := newOutageServer(t, pdInvalid)
			d := NewDispatcher([]Notifier{PagerDuty{URL: pd.URL(), RoutingKey: "rk"}}, st, metrics.New(prometheus.NewRegistry(), "test"), zerolog.Nop())
			ev := NewEvaluator(st, metrics.New(prometheus.NewRegistry(), "test"), zerolog.Nop(), d, "node-1", time.Minute)
			capacity := &flapRule{name: "capacity"}
			capacity.set(true, "95% used")
			keys := map[bool]string{false: "wopr-platform:capacity", true: "wopr-platform:capacity:node-1"}
			now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
			ev.SetRules([]Spec{{Rule: capacity, PerNode: fromPerNode}})
			ev.EvaluateOnce(ctx, now)
			d.Deliver(ctx)
			if open := pdIncidents(pd.Events()); len(open) != 1 || open[keys[fromPerNode]] == "" {
				t.Fatalf("before the reload: open incidents %v", open)
			}
			// The reload: same name, the other scope, still firing.
			ev.SetRules([]Spec{{Rule: capacity, PerNode: !fromPerNode}})
			ev.EvaluateOnce(ctx, now.Add(time.Minute))
			d.Deliver(ctx)
			if open := pdIncidents(pd.Events()); len(open) != 1 || open[keys[!fromPerNode]] == "" {
				t.Fatalf("after the reload: open incidents %v, want only %s", open, keys[!fromPerNode])
			}
			// It resolves: the incident it fires as now is closed.
			capacity.set(false, "60% used")
			ev.EvaluateOnce(ctx, now.Add(2*time.Minute))
			d.Deliver(ctx)
			if open := pdIncidents(pd.Events()); len(open) != 0 {
				t.Fatalf("after the resolution: open incidents %v (events %v)", open, pd.Events())
			}
		})
	}
}
