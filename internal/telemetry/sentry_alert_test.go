package telemetry

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/getsentry/sentry-go"
)

// TestDeliverMessageReportsSentrysAnswer: an alert message counts as delivered only when Sentry
// answered 2xx; a 5xx or a server that is gone is an error (the SDK's own transports would
// have said nothing).
func TestDeliverMessageReportsSentrysAnswer(t *testing.T) {
	var status atomic.Int32
	status.Store(http.StatusServiceUnavailable)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(int(status.Load()))
	}))
	dsn := strings.Replace(srv.URL, "http://", "http://publickey123@", 1) + "/42"
	s, err := NewSentry(SentryOptions{DSN: dsn, Node: "n1", SampleRate: 0.0001}, NewRedactor())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := s.DeliverMessage(ctx, sentry.LevelWarning, "Alert: x", nil, nil); err == nil || !strings.Contains(err.Error(), "503") {
		t.Fatalf("a 503 counted as delivered: %v", err)
	}
	status.Store(http.StatusOK)
	// Never sampled away, whatever sentry.sample_rate says for errors.
	for i := 0; i < 5; i++ {
		if err := s.DeliverMessage(ctx, sentry.LevelWarning, "Alert: x", nil, nil); err != nil {
			t.Fatalf("accepted message: %v", err)
		}
	}
	srv.Close()
	if err := s.DeliverMessage(ctx, sentry.LevelWarning, "Alert: x", nil, nil); err == nil || strings.Contains(err.Error(), "publickey123") {
		t.Fatalf("a stopped Sentry: %v", err)
	}
}

// TestDeliverMessageRedirectedIsNotDelivered: an ingest URL answering the POST with 301, 302 or
// 303 makes the client follow with a GET without the envelope; the 200 of that GET must not
// count the alert as delivered (it never reached Sentry).
func TestDeliverMessageRedirectedIsNotDelivered(t *testing.T) {
	var posted atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/api/") {
			http.Redirect(w, r, "/moved"+r.URL.Path, http.StatusMovedPermanently)
			return
		}
		if r.Method == http.MethodPost {
			posted.Add(1)
		}
		w.WriteHeader(http.StatusOK)
	}))
	defer srv.Close()
	dsn := strings.Replace(srv.URL, "http://", "http://publickey123@", 1) + "/42"
	s, err := NewSentry(SentryOptions{DSN: dsn, Node: "n1"}, NewRedactor())
	if err != nil {
		t.Fatal(err)
	}
	err = s.DeliverMessage(context.Background(), sentry.LevelWarning, "Alert: x", nil, nil)
	if err == nil && posted.Load() == 0 {
		t.Fatal("counted as delivered; Sentry received nothing")
	}
}
