package telemetry

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/getsentry/sentry-go"
)

// alertClient sends alert messages synchronously and learns whether Sentry accepted them: the
// SDK's own transports queue events and never say what the server answered, which would count
// a notification as sent while Sentry was down.
type alertClient struct {
	mu  sync.Mutex // one delivery at a time: rec holds its outcome
	hub *sentry.Hub
	rec *recordingTransport
}

// recordingTransport is the HTTP transport under the SDK's synchronous transport: it runs the
// request under the delivery's context and records the answer.
type recordingTransport struct {
	base   http.RoundTripper
	ctx    context.Context
	status int
	method string // the last request's: a 301, 302 or 303 followed turns the POST into a GET
	err    error
	called bool
}

func (t *recordingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	t.called, t.method = true, req.Method
	if t.ctx != nil {
		req = req.WithContext(t.ctx)
	}
	resp, err := t.base.RoundTrip(req)
	if err != nil {
		t.err = err
		return nil, err
	}
	t.status = resp.StatusCode
	return resp, nil
}

func newAlertClient(o SentryOptions, r *Redactor) (*alertClient, error) {
	rec := &recordingTransport{base: http.DefaultTransport.(*http.Transport).Clone()}
	tr := sentry.NewHTTPSyncTransport()
	tr.Timeout = 30 * time.Second
	client, err := sentry.NewClient(sentry.ClientOptions{
		Dsn:         o.DSN,
		Environment: o.Environment,
		Release:     o.Release,
		ServerName:  o.Node,
		SampleRate:  1, // alerts are never sampled away
		Transport:   tr,
		HTTPClient:  &http.Client{Transport: rec, Timeout: 30 * time.Second},
		BeforeSend: func(e *sentry.Event, _ *sentry.EventHint) *sentry.Event {
			scrubEvent(e, r)
			return e
		},
	})
	if err != nil {
		return nil, errors.New("init sentry: invalid DSN")
	}
	return &alertClient{hub: sentry.NewHub(client, sentry.NewScope()), rec: rec}, nil
}

// DeliverMessage sends a message at the given level with tags and a fingerprint and waits for
// Sentry's answer: nil only when Sentry accepted it (a 2xx status). Without a DSN it is a no-op.
func (s *Sentry) DeliverMessage(ctx context.Context, level sentry.Level, msg string, tags map[string]string, fingerprint []string) error {
	if !s.Enabled() || s.alert == nil {
		return nil
	}
	a := s.alert
	a.mu.Lock()
	defer a.mu.Unlock()
	*a.rec = recordingTransport{base: a.rec.base, ctx: ctx}
	s.captureMessage(a.hub, level, msg, tags, fingerprint)
	switch {
	case a.rec.err != nil:
		var ue interface{ Unwrap() error }
		err := a.rec.err
		if errors.As(err, &ue) {
			err = ue.Unwrap() // drop the URL
		}
		return fmt.Errorf("sentry: send: %w", err)
	case !a.rec.called:
		return errors.New("sentry: event not sent (rate limited or dropped)")
	case a.rec.method != http.MethodPost:
		return errors.New("sentry: redirected to a GET (the event was not delivered; fix the DSN)")
	case a.rec.status < 200 || a.rec.status > 299:
		return fmt.Errorf("sentry: status %d", a.rec.status)
	}
	return nil
}
