package alerts

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/wopr-network/opsd/config"
	"github.com/wopr-network/opsd/internal/metrics"
	"github.com/wopr-network/opsd/internal/telemetry"
)

// TestNotificationsAreRedacted: an alert whose message carries error text with secrets (the
// platform database's DSN with its password, the webhook's token, and a DSN the config does not
// name) reaches PagerDuty and the webhook, built from the config as the daemon builds them,
// with every secret replaced: in the summary, in custom_details and in the webhook's body, on
// the trigger and on the resolve, and also where the 1024-character summary is cut in the
// middle of a secret.
func TestNotificationsAreRedacted(t *testing.T) {
	ctx := context.Background()
	st := openState(t)
	const (
		pgPassword = "pg-Pa55word-7731"
		dsn        = "postgresql://wopr:" + pgPassword + "@postgres:5432/wopr_platform"
		hookToken  = "hook-token-abcdef123456"
		unlisted   = "unlisted-Secret-99" // in a DSN the config does not name
	)
	pd := newOutageServer(t, pdInvalid)
	hook := newOutageServer(t, nil)
	cfg := config.Default()
	cfg.Alerts.PostgresDSN = config.Secret(dsn)
	cfg.Alerts.Notify.PagerDuty = config.PagerDuty{URL: pd.URL(), RoutingKey: "R0UTINGKEY0123456789"}
	cfg.Alerts.Notify.Webhook = config.Webhook{URL: config.Secret(hook.URL() + "/hook"), Token: config.Secret(hookToken)}
	// The daemon's wiring: one redactor over the config's secrets, given to Sentry.
	sn, err := telemetry.NewSentry(telemetry.SentryOptions{Node: "node-1"}, telemetry.NewRedactor(cfg.Secrets()...))
	if err != nil {
		t.Fatal(err)
	}
	m := metrics.New(prometheus.NewRegistry(), "test")
	d := NewDispatcher(Notifiers(cfg.Alerts.Notify, sn), st, m, zerolog.Nop())
	if len(d.names) != 2 {
		t.Fatalf("notifiers %v", d.names)
	}
	leak := &flapRule{name: "gateway-error-rate"}
	cut := &flapRule{name: "credit-deduction-spike"}
	ev := NewEvaluator(st, m, zerolog.Nop(), d, "node-1", time.Minute)
	ev.SetRules([]Spec{{Rule: leak}, {Rule: cut}})
	errText := "query gateway_metrics: connect " + dsn + ": auth with token " + hookToken + " refused; fallback postgres://reader:" + unlisted + "@replica:5432/x failed"
	// The summary is "credit-deduction-spike — <message>", cut at 1024 bytes: unredacted, the
	// password would straddle the cut with its first 11 characters before it.
	prefix := "credit-deduction-spike — "
	pad := strings.Repeat("x", 1010-len(prefix)-len("password "))
	leak.set(true, errText)
	cut.set(true, pad+"password "+pgPassword+" was refused")
	now := time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC)
	ev.EvaluateOnce(ctx, now)
	leak.set(false, "recovered after "+errText)
	cut.set(false, "recovered after "+errText)
	ev.EvaluateOnce(ctx, now.Add(time.Minute))
	d.Deliver(ctx)
	if len(pd.Events()) != 4 || len(hook.Events()) != 4 {
		t.Fatalf("pagerduty accepted %d, webhook %d, want 4 each", len(pd.Events()), len(hook.Events()))
	}
	for name, srv := range map[string]*outageServer{"pagerduty": pd, "webhook": hook} {
		srv.mu.Lock()
		raw := append([]string(nil), srv.raw...)
		srv.mu.Unlock()
		for _, b := range raw {
			for _, secret := range []string{pgPassword, hookToken, unlisted, pgPassword[:8]} {
				if strings.Contains(b, secret) {
					t.Errorf("%s received %q: %s", name, secret, b)
				}
			}
		}
		if !strings.Contains(strings.Join(raw, ""), "connect [redacted]: auth with token [redacted] refused; fallback postgres://reader:[redacted]@replica:5432/x failed") {
			t.Errorf("%s: the redacted DSN is not in what it received: %v", name, raw)
		}
	}
	sum := pd.Events()[1]["payload"].(map[string]any)["summary"].(string)
	if !strings.HasPrefix(sum, prefix+pad+"password [redacted] ") || len(sum) > 1024 {
		t.Fatalf("summary ends %q", sum[len(sum)-60:])
	}
}

// TestRedactionKeepsTheIncidentKey: the alert's name and node, which make the incident's key at
// the receivers, are not rewritten by the redactor, so a trigger and its resolve share a key
// even when the config's secrets change between them (here a secret that occurs in the node id
// exists only at the resolve).
func TestRedactionKeepsTheIncidentKey(t *testing.T) {
	trigger := redactEvent(Event{Alert: "disk-space", Node: "prod-7", PerNode: true, Firing: true, Message: "full"}, telemetry.NewRedactor())
	resolve := redactEvent(Event{Alert: "disk-space", Node: "prod-7", PerNode: true, Message: "ok"}, telemetry.NewRedactor("prod"))
	if trigger.key() != resolve.key() {
		t.Fatalf("trigger key %q, resolve key %q", trigger.key(), resolve.key())
	}
}
