package alerts

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"

	"github.com/wopr-network/opsd/internal/metrics"
	"github.com/wopr-network/opsd/internal/state"
)

// strictPagerDuty is a local HTTP server standing in for the Events API v2 that enforces its
// documented contract (developer.pagerduty.com, "Send an Alert Event" and "Response Codes &
// Retry Logic"): routing_key and event_action are required; a trigger needs payload.summary (at
// most 1024 characters), payload.source and a payload.severity of critical, error, warning or
// info; dedup_key is at most 255 characters; a body over 512 KB is refused. An event that breaks
// it gets 400 (not to be retried); an accepted one 202. It records the accepted events.
type strictPagerDuty struct {
	*httptest.Server
	mu       sync.Mutex
	accepted []map[string]any
	rejected int
}

func newStrictPagerDuty(t *testing.T) *strictPagerDuty {
	p := &strictPagerDuty{}
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(io.LimitReader(r.Body, 512<<10+1))
		if why := pdInvalid(b); why != "" {
			p.mu.Lock()
			p.rejected++
			p.mu.Unlock()
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprintf(w, `{"status":"invalid event","message":"Event object is invalid","errors":[%q]}`, why)
			return
		}
		var ev map[string]any
		json.Unmarshal(b, &ev)
		p.mu.Lock()
		p.accepted = append(p.accepted, ev)
		p.mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
		io.WriteString(w, `{"status":"success","message":"Event processed"}`)
	}))
	t.Cleanup(p.Close)
	return p
}

// pdInvalid says why the Events API would refuse body, or "" when it accepts it.
func pdInvalid(b []byte) string {
	if len(b) > 512<<10 {
		return "payload too large"
	}
	var ev struct {
		RoutingKey  string `json:"routing_key"`
		EventAction string `json:"event_action"`
		DedupKey    string `json:"dedup_key"`
		Payload     *struct {
			Summary  string `json:"summary"`
			Source   string `json:"source"`
			Severity string `json:"severity"`
		} `json:"payload"`
	}
	if err := json.Unmarshal(b, &ev); err != nil {
		return "invalid JSON"
	}
	switch {
	case ev.RoutingKey == "":
		return "routing_key is required"
	case ev.EventAction != "trigger" && ev.EventAction != "acknowledge" && ev.EventAction != "resolve":
		return "invalid event_action"
	case utf8.RuneCountInString(ev.DedupKey) > 255:
		return "dedup_key is longer than 255 characters"
	case ev.EventAction != "trigger":
		return ""
	case ev.Payload == nil || ev.Payload.Summary == "":
		return "payload.summary is required"
	case utf8.RuneCountInString(ev.Payload.Summary) > 1024:
		return "payload.summary is longer than 1024 characters"
	case ev.Payload.Source == "":
		return "payload.source is required"
	}
	switch ev.Payload.Severity {
	case "critical", "error", "warning", "info":
		return ""
	}
	return "invalid payload.severity"
}

func (p *strictPagerDuty) got() (accepted []map[string]any, rejected int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]map[string]any(nil), p.accepted...), p.rejected
}

// TestPagerDutyLongMessageIsAccepted: a stale_backups alert over many targets has a message far
// longer than the 1024 characters the Events API allows in payload.summary. The trigger must
// still be accepted (and its resolution after it), not refused with 400 on every attempt until
// delivery is given up, the incident never opened.
func TestPagerDutyLongMessageIsAccepted(t *testing.T) {
	ctx := context.Background()
	st := openState(t)
	m := metrics.New(prometheus.NewRegistry(), "test")
	pd := newStrictPagerDuty(t)
	d := NewDispatcher([]Notifier{PagerDuty{URL: pd.URL, RoutingKey: "rk"}}, st, m, zerolog.Nop())
	d.SetRetry(3, time.Millisecond)
	dctx, cancel := context.WithCancel(ctx)
	defer cancel()
	d.Start(dctx)
	defer d.Close(time.Second)

	now := time.Now()
	for i := range 200 {
		st.RecordBackup(ctx, state.BackupAttempt{Target: fmt.Sprintf("tenant-container-%03d-ünïcode", i), Kind: "container", At: now, Error: "disk full"})
	}
	rule := &StateRule{RuleName: "stale-backups", Kind: "stale_backups", State: st, StaleAfter: func() time.Duration { return 24 * time.Hour }}
	ev := NewEvaluator(st, m, zerolog.Nop(), d, "node-1", time.Minute)
	ev.SetRules([]Spec{{Rule: rule, PerNode: true}})
	ev.EvaluateOnce(ctx, now)
	if s := ev.Statuses(); len(s) != 1 || !s[0].Firing || utf8.RuneCountInString(s[0].Message) <= 1024 {
		t.Fatalf("want a firing alert with a message over 1024 characters: %+v", s)
	}
	waitFor(t, "the trigger accepted or given up", func() bool {
		return testutil.ToFloat64(m.NotificationsSent.WithLabelValues("pagerduty"))+testutil.ToFloat64(m.NotificationsFailed.WithLabelValues("pagerduty")) >= 1
	})
	accepted, rejected := pd.got()
	if len(accepted) != 1 || rejected != 0 {
		t.Fatalf("PagerDuty accepted %d events and refused %d, want the trigger accepted", len(accepted), rejected)
	}
	payload := accepted[0]["payload"].(map[string]any)
	if s := payload["summary"].(string); len(s) < 900 || s[:len("stale-backups — 200 stale backup targets: ")] != "stale-backups — 200 stale backup targets: " {
		t.Fatalf("summary %q", s)
	}
}

// TestPagerDutyDelayedTriggerKeepsItsTime: a trigger held in the outbox while PagerDuty was
// unreachable carries, when it is finally accepted, the time the alert fired
// (payload.timestamp, which the Events API documents for events a tool holds before sending),
// not the time of delivery.
func TestPagerDutyDelayedTriggerKeepsItsTime(t *testing.T) {
	ctx := context.Background()
	st := openState(t)
	m := metrics.New(prometheus.NewRegistry(), "test")
	pd := newStrictPagerDuty(t)
	d := NewDispatcher([]Notifier{PagerDuty{URL: pd.URL, RoutingKey: "rk"}}, st, m, zerolog.Nop())
	fired := time.Now().Add(-time.Hour).UTC().Truncate(time.Millisecond) // PagerDuty was down meanwhile
	items, _ := d.Items(Event{Alert: "disk", Firing: true, Message: "disk full", Severity: "error", Node: "node-1", PerNode: true, At: fired})
	if _, err := st.SaveAlertAndEnqueue(ctx, state.AlertState{Name: "disk", Firing: true, UpdatedAt: fired}, items, 0); err != nil {
		t.Fatal(err)
	}
	d.Deliver(ctx)
	accepted, _ := pd.got()
	if len(accepted) != 1 {
		t.Fatalf("accepted %d events", len(accepted))
	}
	ts, _ := accepted[0]["payload"].(map[string]any)["timestamp"].(string)
	if at, err := time.Parse(time.RFC3339Nano, ts); err != nil || !at.Equal(fired) {
		t.Fatalf("payload.timestamp %q, want the firing's time %s", ts, fired.Format(time.RFC3339Nano))
	}
}

// TestPagerDutyLongAlertNameIsAccepted: alert names and node ids have no length limit in the
// config, but the Events API refuses (400) a dedup_key over 255 characters. An alert with a long
// name must still reach PagerDuty, its trigger and resolve sharing one dedup key of at most 255
// characters, distinct from another node's.
func TestPagerDutyLongAlertNameIsAccepted(t *testing.T) {
	pd := newStrictPagerDuty(t)
	n := PagerDuty{URL: pd.URL, RoutingKey: "rk"}
	ctx := context.Background()
	name := "sev1-" + strings.Repeat("tenant-gateway-error-rate-", 10)
	for _, e := range []Event{
		{Alert: name, Firing: true, Message: "m", Severity: "critical", Node: "node-1", PerNode: true},
		{Alert: name, Firing: false, Message: "m", Severity: "critical", Node: "node-1", PerNode: true},
		{Alert: name, Firing: true, Message: "m", Severity: "critical", Node: "node-2", PerNode: true},
	} {
		if err := n.Notify(ctx, e); err != nil {
			t.Fatalf("%s on %s: %v", name, e.Node, err)
		}
	}
	accepted, _ := pd.got()
	k0, k1, k2 := accepted[0]["dedup_key"], accepted[1]["dedup_key"], accepted[2]["dedup_key"]
	if k0 != k1 || k0 == k2 {
		t.Fatalf("dedup keys %q %q %q: want the trigger's and the resolve's equal, another node's distinct", k0, k1, k2)
	}
}

// TestPagerDutyRefusedEventIsGivenUpAtOnce: an event the Events API refuses as invalid (400,
// documented as not to be retried) is given up after its one attempt, counted as failed, and does
// not hold the alert's resolution behind it.
func TestPagerDutyRefusedEventIsGivenUpAtOnce(t *testing.T) {
	ctx := context.Background()
	var mu sync.Mutex
	var triggers, resolves int
	pd := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var ev struct {
			Action string `json:"event_action"`
		}
		json.NewDecoder(r.Body).Decode(&ev)
		mu.Lock()
		defer mu.Unlock()
		if ev.Action == "trigger" {
			triggers++
			w.WriteHeader(http.StatusBadRequest)
			io.WriteString(w, `{"status":"invalid event","message":"Event object is invalid"}`)
			return
		}
		resolves++
		w.WriteHeader(http.StatusAccepted)
	}))
	defer pd.Close()
	now := time.Now()
	st, m, ev := staleAlertToPagerDuty(t, pd.URL, now)
	ev.EvaluateOnce(ctx, now.Add(-time.Minute))
	st.RecordBackup(ctx, state.BackupAttempt{Target: "auth", Kind: "sqlite", At: now.Add(-30 * time.Second), Success: true, SizeBytes: 1})
	ev.EvaluateOnce(ctx, now)
	waitFor(t, "the resolution accepted", func() bool {
		return testutil.ToFloat64(m.NotificationsSent.WithLabelValues("pagerduty")) >= 1
	})
	mu.Lock()
	defer mu.Unlock()
	if triggers != 1 || resolves != 1 || testutil.ToFloat64(m.NotificationsFailed.WithLabelValues("pagerduty")) != 1 {
		t.Fatalf("PagerDuty saw %d trigger attempts and %d resolutions, %v given up; want the refused trigger tried once and given up", triggers, resolves, testutil.ToFloat64(m.NotificationsFailed.WithLabelValues("pagerduty")))
	}
}

// TestRetryAfterIsHonoured: a receiver that answers 429 with Retry-After (PagerDuty's rate
// limiting) gets the next attempt no sooner than it asked, not on the dispatcher's shorter
// backoff; a date and an absurd wait are read too (the wait is bounded at an hour).
func TestRetryAfterIsHonoured(t *testing.T) {
	ctx := context.Background()
	rate := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "120")
		w.WriteHeader(http.StatusTooManyRequests)
	}))
	defer rate.Close()
	now := time.Now()
	st, _, ev := staleAlertToPagerDuty(t, rate.URL, now)
	ev.EvaluateOnce(ctx, now)
	var item state.OutboxItem
	waitFor(t, "the first attempt", func() bool {
		items, _ := st.OutboxItems(ctx, 10)
		if len(items) == 1 && items[0].Attempts == 1 {
			item = items[0]
			return true
		}
		return false
	})
	if wait := item.NextAttemptAt.Sub(now); wait < 119*time.Second {
		t.Fatalf("next attempt in %s after a 429 asking for 120s", wait)
	}
	if got := retryAfter(now.Add(30*time.Second).UTC().Format(http.TimeFormat), now); got < 29*time.Second || got > 30*time.Second {
		t.Fatalf("Retry-After as a date: %s", got)
	}
	if got := retryAfter("999999", now); got != maxRetryAfter {
		t.Fatalf("Retry-After of days: %s", got)
	}
}

// staleAlertToPagerDuty is a state database with one failed backup (auth, two minutes before
// now), a dispatcher delivering to PagerDuty at url (retries every millisecond at first) and an
// evaluator of the stale_backups rule; everything stops when the test ends.
func staleAlertToPagerDuty(t *testing.T, url string, now time.Time) (*state.Store, *metrics.Metrics, *Evaluator) {
	t.Helper()
	ctx := context.Background()
	st := openState(t)
	m := metrics.New(prometheus.NewRegistry(), "test")
	d := NewDispatcher([]Notifier{PagerDuty{URL: url, RoutingKey: "rk"}}, st, m, zerolog.Nop())
	d.SetRetry(100, time.Millisecond)
	dctx, cancel := context.WithCancel(ctx)
	d.Start(dctx)
	t.Cleanup(func() {
		d.Close(time.Second)
		cancel()
	})
	st.RecordBackup(ctx, state.BackupAttempt{Target: "auth", Kind: "sqlite", At: now.Add(-2 * time.Minute), Error: "disk full"})
	ev := NewEvaluator(st, m, zerolog.Nop(), d, "node-1", time.Minute)
	ev.SetRules([]Spec{{Rule: &StateRule{RuleName: "stale-backups", Kind: "stale_backups", State: st, StaleAfter: func() time.Duration { return 24 * time.Hour }}, PerNode: true}})
	return st, m, ev
}
