package alerts

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"

	"github.com/wopr-network/opsd/alerts/alertstest"
	"github.com/wopr-network/opsd/internal/metrics"
	"github.com/wopr-network/opsd/internal/state"
)

// flapRule is a rule whose condition the test sets (the alerts' inputs are not what these tests
// are about; the receivers, the outbox and the state database are real).
type flapRule struct {
	name   string
	mu     sync.Mutex
	firing bool
	msg    string
}

func (r *flapRule) Name() string { return r.name }

func (r *flapRule) set(firing bool, msg string) {
	r.mu.Lock()
	r.firing, r.msg = firing, msg
	r.mu.Unlock()
}

func (r *flapRule) Evaluate(context.Context, time.Time) (Eval, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return Eval{Firing: r.firing, Message: r.msg, Value: 1}, nil
}

// outageServer is a real HTTP server standing in for PagerDuty's Events API (validate is the
// API's contract) or a webhook that can answer 503, refuse connections (Stop) or accept (202);
// it records the bodies it accepted, in order.
type outageServer struct {
	*alertstest.Server
	validate    func([]byte) string
	unavailable atomic.Bool // answer 503
	refused     atomic.Int64
	answered503 atomic.Int64
	mu          sync.Mutex
	raw         []string // every request body it received, whatever it answered
}

func newOutageServer(t *testing.T, validate func([]byte) string) *outageServer {
	s := &outageServer{validate: validate}
	s.Server = alertstest.New(t, s.answer)
	return s
}

func (s *outageServer) answer(b []byte) int {
	s.mu.Lock()
	s.raw = append(s.raw, string(b))
	s.mu.Unlock()
	if s.unavailable.Load() {
		s.answered503.Add(1)
		return http.StatusServiceUnavailable
	}
	if s.validate != nil {
		if why := s.validate(b); why != "" {
			return http.StatusBadRequest
		}
	}
	return http.StatusAccepted
}

// pdIncidents replays PagerDuty events as the Events API applies them: a trigger opens the
// dedup key's incident (or adds to the open one), a resolve closes it. It returns the open
// incidents with their last summary.
func pdIncidents(events []map[string]any) map[string]string {
	open := map[string]string{}
	for _, e := range events {
		key, _ := e["dedup_key"].(string)
		switch e["event_action"] {
		case "trigger":
			p, _ := e["payload"].(map[string]any)
			open[key], _ = p["summary"].(string)
		case "resolve":
			delete(open, key)
		}
	}
	return open
}

// TestOutboxBoundedWhileReceiverIsDown: PagerDuty and a webhook do not accept anything for a long
// outage (first 503, then refused connections) while three alerts flap hundreds of times. The
// outbox stays bounded (at most two notifications per incident and receiver: the first trigger
// and the latest state), every coalesced notification is counted in
// opsd_alert_notifications_dropped_total{reason="superseded"}, and once the receivers are back
// they receive each incident's latest state, in order: the incident still firing is open with its
// newest message, the ones that ended resolved are resolved (the resolve is not lost), and the
// one opened before the outage is closed.
func TestOutboxBoundedWhileReceiverIsDown(t *testing.T) {
	ctx := context.Background()
	st := openState(t)
	pd := newOutageServer(t, pdInvalid)
	hook := newOutageServer(t, nil)
	m := metrics.New(prometheus.NewRegistry(), "test")
	logs := &lockedBuffer{}
	d := NewDispatcher([]Notifier{PagerDuty{URL: pd.URL(), RoutingKey: "rk"}, Webhook{URL: hook.URL() + "/hook"}}, st, m, zerolog.New(logs))
	d.SetRetry(1_000_000, time.Millisecond)
	for _, n := range []string{"pagerduty", "webhook"} {
		for _, reason := range []string{"superseded", "overflow"} {
			if v := testutil.ToFloat64(m.NotificationsDropped.WithLabelValues(n, reason)); v != 0 {
				t.Fatalf("dropped{%s,%s} at start = %v", n, reason, v)
			}
		}
	}
	disk := &flapRule{name: "disk"}
	gw := &flapRule{name: "gateway-error-rate"}
	mem := &flapRule{name: "memory"}
	ev := NewEvaluator(st, m, zerolog.Nop(), d, "node-1", time.Minute)
	ev.SetRules([]Spec{{Rule: disk, PerNode: true}, {Rule: gw}, {Rule: mem, PerNode: true}})
	now := time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC)

	// memory fires and reaches both receivers before the outage: its incident is open.
	mem.set(true, "memory 95% (before the outage)")
	ev.EvaluateOnce(ctx, now)
	d.Deliver(ctx)
	if len(pd.Events()) != 1 || len(hook.Events()) != 1 {
		t.Fatalf("before the outage: pagerduty got %d, webhook %d", len(pd.Events()), len(hook.Events()))
	}

	// A week-long outage: 503 first, then nothing listens. The alerts flap on every evaluation.
	pd.unavailable.Store(true)
	hook.unavailable.Store(true)
	transitions := 0
	firing := map[string]bool{"memory": true}
	const flaps = 300
	for i := 1; i <= flaps; i++ {
		if i == flaps/2 {
			pd.Stop()
			hook.Stop()
		}
		now = now.Add(time.Minute)
		for _, r := range []*flapRule{disk, gw, mem} {
			f := i%2 == 1
			switch r {
			case disk: // ends firing
				f = i%2 == 0
			case gw: // fires during the outage only, ends resolved
				f = i%2 == 1 && i < flaps-10
			case mem: // open before the outage, ends resolved
				f = i%2 == 0 && i < flaps-10
			}
			r.set(f, fmt.Sprintf("%s flap %d", r.name, i))
			if f != firing[r.name] {
				transitions++
				firing[r.name] = f
			}
		}
		ev.EvaluateOnce(ctx, now)
		if i%25 == 0 {
			d.deliver(ctx, true) // attempts fail (503, then refused): everything stays pending
		}
		for _, n := range []string{"pagerduty", "webhook"} {
			if c, err := st.OutboxCounts(ctx, state.OutboxPending); err != nil || c[n] > 6 {
				t.Fatalf("after flap %d: %d notifications pending for %s (%v), want at most 6 (two per incident)", i, c[n], n, err)
			}
		}
	}
	if pd.answered503.Load() == 0 || testutil.ToFloat64(m.NotificationAttemptFailures.WithLabelValues("pagerduty")) <= float64(pd.answered503.Load()) {
		t.Fatalf("the outage was not seen: %d answered 503, %v failed attempts", pd.answered503.Load(), testutil.ToFloat64(m.NotificationAttemptFailures.WithLabelValues("pagerduty")))
	}
	if firing["disk"] != true || firing["gateway-error-rate"] || firing["memory"] {
		t.Fatalf("test setup: final states %v", firing)
	}
	counts, err := st.OutboxCounts(ctx, state.OutboxPending)
	if err != nil {
		t.Fatal(err)
	}
	// disk: its newest trigger; gateway-error-rate and memory: their first trigger and the resolve.
	const wantPending = 5
	for _, n := range []string{"pagerduty", "webhook"} {
		if counts[n] != wantPending {
			t.Fatalf("%s: %d pending after the outage, want %d", n, counts[n], wantPending)
		}
		if v := testutil.ToFloat64(m.NotificationsDropped.WithLabelValues(n, "superseded")); v != float64(transitions-wantPending) {
			t.Fatalf("%s: dropped{superseded} = %v, want %d (%d queued, %d kept)", n, v, transitions-wantPending, transitions, wantPending)
		}
		if v := testutil.ToFloat64(m.NotificationsDropped.WithLabelValues(n, "overflow")); v != 0 {
			t.Fatalf("%s: dropped{overflow} = %v", n, v)
		}
	}

	// The receivers come back.
	pd.unavailable.Store(false)
	hook.unavailable.Store(false)
	pd.Start(t)
	hook.Start(t)
	dctx, cancel := context.WithCancel(ctx)
	defer cancel()
	d.Start(dctx)
	defer d.Close(5 * time.Second)
	waitFor(t, "the outbox to drain", func() bool {
		c, err := st.OutboxCounts(ctx, state.OutboxPending)
		return err == nil && c["pagerduty"] == 0 && c["webhook"] == 0
	})
	got := pd.Events()
	if len(got) != 1+wantPending {
		t.Fatalf("pagerduty received %d events, want %d: %v", len(got), 1+wantPending, got)
	}
	open := pdIncidents(got)
	if len(open) != 1 || open["wopr-platform:disk:node-1"] != fmt.Sprintf("disk — disk flap %d", flaps) {
		t.Fatalf("open PagerDuty incidents after the outage: %v, want only disk:node-1 with its newest message", open)
	}
	last := map[string]string{}
	for _, e := range got {
		last[e["dedup_key"].(string)] = e["event_action"].(string)
	}
	if last["wopr-platform:gateway-error-rate"] != "resolve" || last["wopr-platform:memory:node-1"] != "resolve" {
		t.Fatalf("resolutions lost: last actions %v", last)
	}
	// The webhook gets the same latest states.
	hooks := hook.Events()
	if len(hooks) != 1+wantPending {
		t.Fatalf("webhook received %d events, want %d", len(hooks), 1+wantPending)
	}
	hookLast := map[string]map[string]any{}
	for _, e := range hooks {
		hookLast[e["alert"].(string)] = e
	}
	if e := hookLast["disk"]; e["firing"] != true || e["message"] != fmt.Sprintf("disk flap %d", flaps) {
		t.Fatalf("webhook's last disk event %v", e)
	}
	if hookLast["gateway-error-rate"]["firing"] != false || hookLast["memory"]["firing"] != false {
		t.Fatalf("webhook's last events %v", hookLast)
	}
	if v := testutil.ToFloat64(m.NotificationsSent.WithLabelValues("pagerduty")); v != 1+wantPending {
		t.Fatalf("sent = %v", v)
	}
	// One warning per receiver when coalescing started, one summary when it caught up.
	waitFor(t, "the end of the episode in the log", func() bool { return strings.Count(logs.String(), "receiver caught up") == 2 })
	if n := strings.Count(logs.String(), "coalesced to its latest state"); n != 2 {
		t.Fatalf("%d coalescing warnings, want one per receiver:\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), fmt.Sprintf(`"notifier":"pagerduty","superseded":%d,"overflow":0`, transitions-wantPending)) {
		t.Fatalf("no summary of the episode for pagerduty:\n%s", logs.String())
	}
}

// lockedBuffer is a log destination safe for the dispatcher's goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestOutboxCapDropsOldest: with more incidents waiting than the cap, a receiver's oldest pending
// notifications are dropped and counted as overflow; the newest ones are delivered when it is
// back.
func TestOutboxCapDropsOldest(t *testing.T) {
	ctx := context.Background()
	st := openState(t)
	pd := newOutageServer(t, pdInvalid)
	pd.Stop() // down from the start: connections refused
	m := metrics.New(prometheus.NewRegistry(), "test")
	d := NewDispatcher([]Notifier{PagerDuty{URL: pd.URL(), RoutingKey: "rk"}}, st, m, zerolog.Nop())
	d.SetRetry(1_000_000, time.Millisecond)
	d.SetOutboxCap(4)
	var specs []Spec
	var rules []*flapRule
	for i := 0; i < 7; i++ {
		r := &flapRule{name: fmt.Sprintf("rule-%d", i)}
		rules = append(rules, r)
		specs = append(specs, Spec{Rule: r})
	}
	ev := NewEvaluator(st, m, zerolog.Nop(), d, "node-1", time.Minute)
	ev.SetRules(specs)
	now := time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC)
	for i, r := range rules { // one more incident per evaluation
		r.set(true, fmt.Sprintf("rule %d fired", i))
		ev.EvaluateOnce(ctx, now.Add(time.Duration(i)*time.Minute))
		d.deliver(ctx, true)
	}
	if c, _ := st.OutboxCounts(ctx, state.OutboxPending); c["pagerduty"] != 4 {
		t.Fatalf("pending = %d, want the cap 4", c["pagerduty"])
	}
	if v := testutil.ToFloat64(m.NotificationsDropped.WithLabelValues("pagerduty", "overflow")); v != 3 {
		t.Fatalf("dropped{overflow} = %v, want 3", v)
	}
	pd.Start(t)
	d.deliver(ctx, true) // as at a start: whatever the backoff says
	var keys []string
	for _, e := range pd.Events() {
		keys = append(keys, e["dedup_key"].(string))
	}
	if want := "wopr-platform:rule-3 wopr-platform:rule-4 wopr-platform:rule-5 wopr-platform:rule-6"; strings.Join(keys, " ") != want {
		t.Fatalf("delivered %v, want the 4 newest: %s", keys, want)
	}
}
