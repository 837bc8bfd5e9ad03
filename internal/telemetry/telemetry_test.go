package telemetry

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/getsentry/sentry-go"

	"github.com/wopr-network/opsd/internal/telemetry/sentrytest"
)

func TestSentryJobFailureTaggedAndScrubbed(t *testing.T) {
	srv := sentrytest.New(t)
	const secret = "SUPERSECRETKEY9876"
	red := NewRedactor(secret)
	s, err := NewSentry(SentryOptions{DSN: srv.DSN(), Environment: "test", Node: "node-7"}, red)
	if err != nil {
		t.Fatal(err)
	}
	s.CaptureJobFailure(JobFailure{Job: "platform-db-backup", Kind: "sqlite_backup", Target: "billing",
		Err: errors.New("upload failed: access key " + secret + " rejected")})
	s.CaptureMessage(sentry.LevelWarning, "Alert: stale-backups — 2 targets stale", map[string]string{"alert": "stale-backups"}, []string{"opsd-alert", "stale-backups"})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if !s.Flush(ctx) {
		t.Fatal("flush timed out")
	}
	body := srv.All()
	for _, want := range []string{`"job":"platform-db-backup"`, `"kind":"sqlite_backup"`, `"target":"billing"`, `"node":"node-7"`, `"source":"opsd"`,
		`"level":"error"`, `upload failed: access key [redacted] rejected`, `"level":"warning"`, `Alert: stale-backups — 2 targets stale`} {
		if !strings.Contains(body, want) {
			t.Errorf("sentry envelope lacks %s:\n%s", want, body)
		}
	}
	if strings.Contains(body, secret) {
		t.Fatal("the secret reached Sentry")
	}
}

func TestSentryNoDSNIsNoop(t *testing.T) {
	s, err := NewSentry(SentryOptions{}, nil)
	if err != nil || s.Enabled() {
		t.Fatalf("no DSN: %v enabled=%v", err, s.Enabled())
	}
	s.CaptureJobFailure(JobFailure{Job: "x", Err: errors.New("boom")}) // must not panic
	if _, err := NewSentry(SentryOptions{DSN: "::not a dsn with secret"}, nil); err == nil || strings.Contains(err.Error(), "secret") {
		t.Fatalf("bad DSN error: %v", err)
	}
}

func TestLoggerRedacts(t *testing.T) {
	var buf bytes.Buffer
	red := NewRedactor("tok-abcdef-123456")
	log := NewLogger(&buf, "info", "json", red)
	log.Error().Err(errors.New("GET https://hc.example/tok-abcdef-123456 failed")).Str("job", "ping").Msg("run failed")
	if strings.Contains(buf.String(), "tok-abcdef-123456") || !strings.Contains(buf.String(), "[redacted]") {
		t.Fatalf("log line: %s", buf.String())
	}
	red.Set([]string{"newsecret-xyz"})
	buf.Reset()
	log.Info().Msg("newsecret-xyz")
	if strings.Contains(buf.String(), "newsecret-xyz") {
		t.Fatal("secrets set on reload are not redacted")
	}
}
