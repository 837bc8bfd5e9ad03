package alerts

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/wopr-network/opsd/internal/metrics"
	"github.com/wopr-network/opsd/internal/state"
)

// TestRemovedRuleResolvesItsIncident: an alert rule is taken out of the job file while it fires,
// by a live reload (SetRules without it) or by a restart on the same state database with the
// rule gone (and, for the restart, node_id changed too). Nothing would ever evaluate it again,
// so unless opsd resolves it, its incident stays open at PagerDuty and the webhook forever and
// its state row lingers. It is resolved through the outbox (the message says the rule was
// removed from the config), a per-node alert under the node its firing was announced under (also
// for a state row saved before the alert's scope was stored with it), and its state row is
// deleted; a removed rule that was only pending notifies nothing. The rules that remain are
// untouched, and a rule put back fires as a new incident.
func TestRemovedRuleResolvesItsIncident(t *testing.T) {
	for _, how := range []string{"reload", "restart", "restart after an upgrade"} {
		t.Run(how, func(t *testing.T) {
			ctx := context.Background()
			path := filepath.Join(t.TempDir(), "state.db")
			pd := newOutageServer(t, pdInvalid)
			hook := newOutageServer(t, nil)
			disk := &flapRule{name: "disk"}              // per-node
			gw := &flapRule{name: "gateway-error-rate"}  // platform-wide
			slow := &flapRule{name: "sev1-billing-slow"} // pending (for:) when removed
			keep := &flapRule{name: "job_failing"}       // stays in the config
			all := []Spec{{Rule: disk, PerNode: true}, {Rule: gw}, {Rule: slow, For: time.Hour}, {Rule: keep, PerNode: true}}
			left := []Spec{{Rule: keep, PerNode: true}}
			start := func(node string, specs []Spec) (*state.Store, *Dispatcher, *Evaluator) {
				st, err := state.Open(ctx, path)
				if err != nil {
					t.Fatal(err)
				}
				d := NewDispatcher([]Notifier{PagerDuty{URL: pd.URL(), RoutingKey: "rk"}, Webhook{URL: hook.URL()}}, st,
					metrics.New(prometheus.NewRegistry(), "test"), zerolog.Nop())
				ev := NewEvaluator(st, metrics.New(prometheus.NewRegistry(), "test"), zerolog.Nop(), d, node, time.Minute)
				ev.SetRules(specs)
				return st, d, ev
			}
			now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
			st, d, ev := start("node-1", all)
			disk.set(true, "disk /data 97% used")
			gw.set(true, "errors 12%")
			slow.set(true, "slow")
			keep.set(true, "nightly failed 3 times")
			ev.EvaluateOnce(ctx, now)
			d.Deliver(ctx)
			if open := pdIncidents(pd.Events()); len(open) != 3 || open["wopr-platform:disk:node-1"] == "" || open["wopr-platform:gateway-error-rate"] == "" {
				t.Fatalf("before the removal: open incidents %v", open)
			}
			sent := len(pd.Events())

			// The rules are removed from the config while they fire (or are pending).
			node := "node-1"
			switch how {
			case "reload":
				ev.SetRules(left)
			case "restart", "restart after an upgrade":
				if how == "restart after an upgrade" {
					// The rows as an opsd before per_node saved them: the scope comes from the
					// outbox's record of the firing.
					rows, err := st.Alerts(ctx)
					if err != nil {
						t.Fatal(err)
					}
					for _, a := range rows {
						a.PerNode = nil
						if err := st.SaveAlert(ctx, a); err != nil {
							t.Fatal(err)
						}
					}
				}
				st.Close()
				node = "node-2"
				st, d, ev = start(node, left)
			}
			defer func() { st.Close() }()
			ev.EvaluateOnce(ctx, now.Add(time.Minute))
			d.Deliver(ctx)
			open := pdIncidents(pd.Events())
			if len(open) != 1 || open["wopr-platform:job_failing:"+node] == "" {
				t.Fatalf("after the removal: open incidents %v, want only job_failing:%s (events %v)", open, node, pd.Events()[sent:])
			}
			// Each removed firing alert was resolved once, under the key it was opened with.
			resolved := map[string]int{}
			for _, e := range pd.Events()[sent:] {
				key := e["dedup_key"].(string)
				if strings.HasPrefix(key, "wopr-platform:job_failing:") {
					continue // the kept rule (its node_id change, on the restart, is another test's)
				}
				if e["event_action"] != "resolve" {
					t.Fatalf("after the removal PagerDuty got %v", e)
				}
				resolved[key]++
			}
			if len(resolved) != 2 || resolved["wopr-platform:disk:node-1"] != 1 || resolved["wopr-platform:gateway-error-rate"] != 1 {
				t.Fatalf("resolutions at PagerDuty: %v", resolved)
			}
			// The webhook is told why, with the node each incident fired under.
			var hookResolves int
			for _, e := range hook.Events() {
				if e["firing"] == true || e["alert"] == "job_failing" {
					continue
				}
				hookResolves++
				msg, _ := e["message"].(string)
				if !strings.Contains(msg, "removed from the config") {
					t.Fatalf("webhook resolution %v does not say the rule was removed", e)
				}
				if e["alert"] == "disk" && (e["node"] != "node-1" || e["perNode"] != true) {
					t.Fatalf("webhook resolution of disk: %v, want node-1's", e)
				}
				if e["alert"] == "sev1-billing-slow" {
					t.Fatalf("resolution of an alert that never fired: %v", e)
				}
			}
			if hookResolves != 2 {
				t.Fatalf("webhook resolutions: %d, want 2: %v", hookResolves, hook.Events())
			}
			// The removed rules' state rows are gone; the kept rule's remains.
			rows, err := st.Alerts(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := rows["job_failing"]; len(rows) != 1 || !ok {
				t.Fatalf("alert state rows after the removal: %v", rows)
			}
			// Nothing more: a later evaluation, and a restart, notify nothing again.
			n, h := len(pd.Events()), len(hook.Events())
			ev.EvaluateOnce(ctx, now.Add(2*time.Minute))
			d.Deliver(ctx)
			st.Close()
			st, d, ev = start(node, left)
			ev.EvaluateOnce(ctx, now.Add(3*time.Minute))
			d.Deliver(ctx)
			if len(pd.Events()) != n || len(hook.Events()) != h {
				t.Fatalf("events after the removal was resolved: %v %v", pd.Events()[n:], hook.Events()[h:])
			}
			// The rule put back fires as a new incident.
			ev.SetRules(all)
			ev.EvaluateOnce(ctx, now.Add(4*time.Minute))
			d.Deliver(ctx)
			if open := pdIncidents(pd.Events()); open["wopr-platform:gateway-error-rate"] == "" || open["wopr-platform:disk:"+node] == "" {
				t.Fatalf("the rules put back: open incidents %v", open)
			}
		})
	}
}

// TestRemovedRuleOfUnknownScope: a firing alert whose state row an opsd before per_node saved,
// and whose trigger the outbox no longer keeps (pruned), is removed from the config: its scope
// is unknown, so both its keys are resolved (a resolve of a key with no open incident changes
// nothing at PagerDuty) rather than neither.
func TestRemovedRuleOfUnknownScope(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "state.db")
	pd := newOutageServer(t, pdInvalid)
	gw := &flapRule{name: "gateway-error-rate"}
	start := func(specs []Spec) (*state.Store, *Dispatcher, *Evaluator) {
		st, err := state.Open(ctx, path)
		if err != nil {
			t.Fatal(err)
		}
		d := NewDispatcher([]Notifier{PagerDuty{URL: pd.URL(), RoutingKey: "rk"}}, st, metrics.New(prometheus.NewRegistry(), "test"), zerolog.Nop())
		ev := NewEvaluator(st, metrics.New(prometheus.NewRegistry(), "test"), zerolog.Nop(), d, "node-1", time.Minute)
		ev.SetRules(specs)
		return st, d, ev
	}
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	st, d, ev := start([]Spec{{Rule: gw}})
	gw.set(true, "errors 12%")
	ev.EvaluateOnce(ctx, now)
	d.Deliver(ctx)
	rows, err := st.Alerts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	a := rows["gateway-error-rate"]
	a.PerNode = nil
	if err := st.SaveAlert(ctx, a); err != nil {
		t.Fatal(err)
	}
	if err := st.PruneOutbox(ctx, 0); err != nil {
		t.Fatal(err)
	}
	st.Close()
	st, d, ev = start(nil)
	defer st.Close()
	ev.EvaluateOnce(ctx, now.Add(time.Minute))
	d.Deliver(ctx)
	if open := pdIncidents(pd.Events()); len(open) != 0 {
		t.Fatalf("open incidents after the removal: %v", open)
	}
	var resolved []string
	for _, e := range pd.Events()[1:] {
		if e["event_action"] != "resolve" {
			t.Fatalf("after the removal PagerDuty got %v", e)
		}
		resolved = append(resolved, e["dedup_key"].(string))
	}
	if strings.Join(resolved, " ") != "wopr-platform:gateway-error-rate wopr-platform:gateway-error-rate:node-1" {
		t.Fatalf("resolutions: %v", resolved)
	}
	if rows, _ := st.Alerts(ctx); len(rows) != 0 {
		t.Fatalf("state rows after the removal: %v", rows)
	}
}
