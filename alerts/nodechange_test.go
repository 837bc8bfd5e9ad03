package alerts

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/wopr-network/opsd/internal/metrics"
	"github.com/wopr-network/opsd/internal/state"
)

// TestNodeIDChangeResolvesTheOldIncident: node_id is changed in the job file while this node's
// disk alert fires (a reload warns that it takes effect at the restart; the daemon then runs as
// the new node over the same state database). The incident PagerDuty opened under the old node's
// dedup key must not stay open forever: when the alert is still firing it is resolved and the
// firing continues as the new node's incident; when it resolved meanwhile, the resolve names the
// old node's key. A platform-wide alert keeps its one incident.
func TestNodeIDChangeResolvesTheOldIncident(t *testing.T) {
	for _, stillFiring := range []bool{true, false} {
		name := "resolved by the restart"
		if stillFiring {
			name = "still firing after the restart"
		}
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			path := filepath.Join(t.TempDir(), "state.db")
			pd := newOutageServer(t, pdInvalid)
			disk := &flapRule{name: "disk"}
			gw := &flapRule{name: "gateway-error-rate"}
			// start is one daemon's life: its state database, dispatcher and evaluator as node.
			start := func(node string) (*state.Store, *Dispatcher, *Evaluator) {
				st, err := state.Open(ctx, path)
				if err != nil {
					t.Fatal(err)
				}
				d := NewDispatcher([]Notifier{PagerDuty{URL: pd.URL(), RoutingKey: "rk"}}, st, metrics.New(prometheus.NewRegistry(), "test"), zerolog.Nop())
				ev := NewEvaluator(st, metrics.New(prometheus.NewRegistry(), "test"), zerolog.Nop(), d, node, time.Minute)
				ev.SetRules([]Spec{{Rule: disk, PerNode: true}, {Rule: gw}})
				return st, d, ev
			}
			now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
			st, d, ev := start("node-1")
			disk.set(true, "disk /data 97% used")
			gw.set(true, "errors 12%")
			ev.EvaluateOnce(ctx, now)
			d.Deliver(ctx)
			if open := pdIncidents(pd.Events()); len(open) != 2 || open["wopr-platform:disk:node-1"] == "" {
				t.Fatalf("before the change: open incidents %v", open)
			}
			st.Close()

			// node_id: node-2, and the restart that applies it.
			st, d, ev = start("node-2")
			defer st.Close()
			if !stillFiring {
				disk.set(false, "disk /data 60% used")
			}
			ev.EvaluateOnce(ctx, now.Add(time.Minute))
			d.Deliver(ctx)
			open := pdIncidents(pd.Events())
			if stillFiring {
				if len(open) != 2 || open["wopr-platform:disk:node-2"] != "disk — disk /data 97% used" || open["wopr-platform:gateway-error-rate"] == "" {
					t.Fatalf("after the change: open incidents %v, want disk:node-2 and gateway-error-rate", open)
				}
				// Later it resolves: the new node's incident closes.
				disk.set(false, "disk /data 60% used")
				ev.EvaluateOnce(ctx, now.Add(2*time.Minute))
				d.Deliver(ctx)
				open = pdIncidents(pd.Events())
			}
			if len(open) != 1 || open["wopr-platform:gateway-error-rate"] == "" {
				t.Fatalf("open incidents %v, want only gateway-error-rate (disk resolved on every node): events %v", open, pd.Events())
			}
			// No event for an incident that was never opened.
			opened := map[string]bool{}
			for _, e := range pd.Events() {
				k := e["dedup_key"].(string)
				if e["event_action"] == "trigger" {
					opened[k] = true
				} else if !opened[k] {
					t.Fatalf("resolve of %s, never triggered: %v", k, pd.Events())
				}
			}
			// A restart as the same node changes nothing more.
			n := len(pd.Events())
			ev.EvaluateOnce(ctx, now.Add(3*time.Minute))
			d.Deliver(ctx)
			if len(pd.Events()) != n {
				t.Fatalf("events after a quiet evaluation: %v", pd.Events()[n:])
			}
		})
	}
}
