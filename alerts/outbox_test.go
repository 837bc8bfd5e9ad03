package alerts

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"

	"github.com/wopr-network/opsd/alerts/alertstest"
	"github.com/wopr-network/opsd/internal/metrics"
	"github.com/wopr-network/opsd/internal/state"
	"github.com/wopr-network/opsd/internal/telemetry"
)

// waitFor polls cond until it holds (the dispatcher works in the background).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestOutboxAtLeastOnce: with Sentry and PagerDuty down, a firing is kept pending (not counted
// as sent) and retried; it survives an opsd restart; once the receivers are back it is
// delivered exactly once to each, and the resolution follows it in order.
func TestOutboxAtLeastOnce(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	pd, sn := alertstest.New(t, nil), alertstest.New(t, nil)
	pd.Stop()
	sn.Stop()

	open := func() (*state.Store, *metrics.Metrics, *Dispatcher) {
		st, err := state.Open(ctx, filepath.Join(dir, "state.db"))
		if err != nil {
			t.Fatal(err)
		}
		s, err := telemetry.NewSentry(telemetry.SentryOptions{DSN: "http://publickey123@" + sn.Addr() + "/42", Node: "node-1"}, telemetry.NewRedactor())
		if err != nil {
			t.Fatal(err)
		}
		m := metrics.New(prometheus.NewRegistry(), "test")
		d := NewDispatcher([]Notifier{PagerDuty{URL: pd.URL(), RoutingKey: "rk"}, SentryNotifier{Sentry: s}}, st, m, zerolog.Nop())
		d.SetRetry(1000, 5*time.Millisecond)
		return st, m, d
	}
	gw := newEnv(t) // only for its gateway database
	now := time.Date(2026, 11, 26, 12, 0, 30, 0, time.UTC)
	gw.fill(t, now, 100, 10, 0, false)
	rule, _ := Preset("gateway-error-rate", gw.db)

	st, m, d := open()
	for _, n := range []string{"pagerduty", "sentry"} {
		if v := testutil.ToFloat64(m.NotificationsPending.WithLabelValues(n)); v != 0 {
			t.Fatalf("pending %s at start = %v", n, v)
		}
	}
	dctx, cancel := context.WithCancel(ctx)
	d.Start(dctx)
	ev := NewEvaluator(st, m, zerolog.Nop(), d, "node-1", time.Minute)
	ev.SetRules([]Spec{{Rule: rule}})
	ev.EvaluateOnce(ctx, now)

	// Both receivers down: attempts fail, nothing counts as sent, both stay pending.
	waitFor(t, "failed attempts on both receivers", func() bool {
		return testutil.ToFloat64(m.NotificationAttemptFailures.WithLabelValues("pagerduty")) >= 2 &&
			testutil.ToFloat64(m.NotificationAttemptFailures.WithLabelValues("sentry")) >= 2
	})
	waitFor(t, "the pending gauge", func() bool {
		return testutil.ToFloat64(m.NotificationsPending.WithLabelValues("pagerduty")) == 1 &&
			testutil.ToFloat64(m.NotificationsPending.WithLabelValues("sentry")) == 1
	})
	for _, n := range []string{"pagerduty", "sentry"} {
		if v := testutil.ToFloat64(m.NotificationsSent.WithLabelValues(n)); v != 0 {
			t.Fatalf("%s counted %v as sent while down", n, v)
		}
	}

	// opsd restarts while the notifications are owed.
	d.Close(5 * time.Second)
	cancel()
	st.Close()
	st, m, d = open()
	defer st.Close()
	pending, err := st.PendingOutbox(ctx)
	if err != nil || len(pending) != 2 {
		t.Fatalf("after restart: %d pending (%v), want 2", len(pending), err)
	}
	ev = NewEvaluator(st, m, zerolog.Nop(), d, "node-1", time.Minute)
	ev.SetRules([]Spec{{Rule: rule}})
	ev.EvaluateOnce(ctx, now.Add(time.Minute)) // still firing: no new notification
	pd.Start(t)
	sn.Start(t)
	dctx, cancel = context.WithCancel(ctx)
	defer cancel()
	d.Start(dctx)
	defer d.Close(5 * time.Second)
	waitFor(t, "delivery after the receivers came back", func() bool {
		return testutil.ToFloat64(m.NotificationsSent.WithLabelValues("pagerduty")) == 1 &&
			testutil.ToFloat64(m.NotificationsSent.WithLabelValues("sentry")) == 1
	})
	if got := pd.Bodies(); len(got) != 1 || !strings.Contains(got[0], `"event_action":"trigger"`) || !strings.Contains(got[0], `"dedup_key":"wopr-platform:gateway-error-rate"`) {
		t.Fatalf("pagerduty got %q", got)
	}
	if got := sn.Bodies(); len(got) != 1 || !strings.Contains(got[0], "Alert: gateway-error-rate") {
		t.Fatalf("sentry got %q", got)
	}
	waitFor(t, "the pending gauge back at 0", func() bool {
		return testutil.ToFloat64(m.NotificationsPending.WithLabelValues("pagerduty")) == 0 &&
			testutil.ToFloat64(m.NotificationsPending.WithLabelValues("sentry")) == 0
	})

	// PagerDuty goes down again; the resolution waits for it and arrives after the firing.
	pd.Stop()
	gw.fill(t, now.Add(2*time.Minute), 100, 0, 0, false)
	ev.EvaluateOnce(ctx, now.Add(2*time.Minute))
	waitFor(t, "the resolution at sentry", func() bool { return len(sn.Bodies()) == 2 })
	waitFor(t, "a failed attempt of the resolution", func() bool {
		return testutil.ToFloat64(m.NotificationAttemptFailures.WithLabelValues("pagerduty")) >= 1
	})
	pd.Start(t)
	waitFor(t, "the resolution at pagerduty", func() bool { return len(pd.Bodies()) == 2 })
	if got := pd.Bodies(); !strings.Contains(got[1], `"event_action":"resolve"`) {
		t.Fatalf("pagerduty second event %q", got[1])
	}
	if !strings.Contains(sn.Bodies()[1], "Resolved: gateway-error-rate") {
		t.Fatalf("sentry second event %q", sn.Bodies()[1])
	}
}

// TestOutboxGivesUp: a receiver that never accepts ends in "failed" after the last attempt,
// counted by the failed gauge and counter, never as sent.
func TestOutboxGivesUp(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	st, err := state.Open(ctx, filepath.Join(dir, "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	pd := newPagerDuty(t)
	pd.fail.Store(1 << 20) // always 503
	m := metrics.New(prometheus.NewRegistry(), "test")
	d := NewDispatcher([]Notifier{PagerDuty{URL: pd.URL, RoutingKey: "rk"}}, st, m, zerolog.Nop())
	d.SetRetry(3, time.Millisecond)
	items, _ := d.Items(Event{Alert: "disk", Firing: true, At: time.Now()})
	if _, err := st.SaveAlertAndEnqueue(ctx, state.AlertState{Name: "disk", Firing: true, UpdatedAt: time.Now()}, items, 0); err != nil {
		t.Fatal(err)
	}
	dctx, cancel := context.WithCancel(ctx)
	defer cancel()
	d.Start(dctx)
	defer d.Close(time.Second)
	waitFor(t, "giving up", func() bool { return testutil.ToFloat64(m.NotificationsGivenUp.WithLabelValues("pagerduty")) == 1 })
	if v := testutil.ToFloat64(m.NotificationsFailed.WithLabelValues("pagerduty")); v != 1 {
		t.Fatalf("failures counter = %v", v)
	}
	if v := testutil.ToFloat64(m.NotificationAttemptFailures.WithLabelValues("pagerduty")); v != 3 {
		t.Fatalf("attempt failures = %v, want 3", v)
	}
	if v := testutil.ToFloat64(m.NotificationsSent.WithLabelValues("pagerduty")); v != 0 {
		t.Fatalf("sent = %v", v)
	}
	if v := testutil.ToFloat64(m.NotificationsPending.WithLabelValues("pagerduty")); v != 0 {
		t.Fatalf("pending = %v", v)
	}
}

// TestPagerDutyDedupKeyPerNode: a per-node alert's dedup key carries the node, so two nodes'
// disk alerts are two incidents; a platform alert's key does not.
func TestPagerDutyDedupKeyPerNode(t *testing.T) {
	pd := newPagerDuty(t)
	n := PagerDuty{URL: pd.URL, RoutingKey: "rk"}
	ctx := context.Background()
	for _, e := range []Event{
		{Alert: "disk", Firing: true, Node: "node-1", PerNode: true},
		{Alert: "disk", Firing: true, Node: "node-2", PerNode: true},
		{Alert: "gateway-error-rate", Firing: true, Node: "node-1"},
	} {
		if err := n.Notify(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	var keys []string
	for _, e := range pd.got() {
		keys = append(keys, e["dedup_key"].(string))
	}
	if want := "wopr-platform:disk:node-1 wopr-platform:disk:node-2 wopr-platform:gateway-error-rate"; strings.Join(keys, " ") != want {
		t.Fatalf("dedup keys %v, want %s", keys, want)
	}
}

// openState opens a new state database in the test's temp dir, closed at the end of the test.
func openState(t *testing.T) *state.Store {
	t.Helper()
	st, err := state.Open(context.Background(), filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}
