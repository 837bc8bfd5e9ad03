package alerts

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/getsentry/sentry-go"
	"github.com/rs/zerolog"

	"github.com/wopr-network/opsd/internal/metrics"
	"github.com/wopr-network/opsd/internal/telemetry"
)

// Notifier delivers alert events.
type Notifier interface {
	Name() string
	Notify(ctx context.Context, e Event) error
}

// Dispatcher queues events for every notifier and delivers them in the background with
// exponential backoff, so a slow or failing endpoint never blocks evaluation.
type Dispatcher struct {
	notifiers []Notifier
	metrics   *metrics.Metrics
	log       zerolog.Logger
	queue     chan Event
	attempts  int
	backoff   time.Duration
	wg        sync.WaitGroup
	stop      chan struct{}
	cancel    context.CancelFunc
}

// NewDispatcher returns a dispatcher; Start it to deliver.
func NewDispatcher(ns []Notifier, m *metrics.Metrics, log zerolog.Logger) *Dispatcher {
	for _, n := range ns {
		m.NotificationsSent.WithLabelValues(n.Name())
		m.NotificationsFailed.WithLabelValues(n.Name())
	}
	return &Dispatcher{notifiers: ns, metrics: m, log: log, queue: make(chan Event, 256), attempts: 6, backoff: time.Second, stop: make(chan struct{})}
}

// SetRetry changes the retry policy (tests).
func (d *Dispatcher) SetRetry(attempts int, backoff time.Duration) {
	d.attempts, d.backoff = attempts, backoff
}

// Send queues an event; when the queue is full the event is dropped and logged.
func (d *Dispatcher) Send(e Event) {
	select {
	case d.queue <- e:
	default:
		d.log.Error().Str("alert", e.Alert).Msg("notification queue full: event dropped")
	}
}

// Start delivers queued events until Close.
func (d *Dispatcher) Start(ctx context.Context) {
	ctx, d.cancel = context.WithCancel(ctx)
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		for {
			select {
			case e := <-d.queue:
				d.deliver(ctx, e)
			case <-d.stop:
				// Drain what is queued, bounded by ctx.
				for {
					select {
					case e := <-d.queue:
						d.deliver(ctx, e)
					default:
						return
					}
				}
			case <-ctx.Done():
				return
			}
		}
	}()
}

// Close delivers what is queued, giving up (and cancelling deliveries) after timeout.
func (d *Dispatcher) Close(timeout time.Duration) {
	close(d.stop)
	done := make(chan struct{})
	go func() { d.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(timeout):
		d.cancel()
		<-done
	}
}

func (d *Dispatcher) deliver(ctx context.Context, e Event) {
	var wg sync.WaitGroup
	for _, n := range d.notifiers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			wait := d.backoff
			for attempt := 1; ; attempt++ {
				err := n.Notify(ctx, e)
				if err == nil {
					d.metrics.NotificationsSent.WithLabelValues(n.Name()).Inc()
					return
				}
				if attempt >= d.attempts || ctx.Err() != nil {
					d.metrics.NotificationsFailed.WithLabelValues(n.Name()).Inc()
					d.log.Error().Err(err).Str("alert", e.Alert).Str("notifier", n.Name()).Msg("notification failed")
					return
				}
				select {
				case <-time.After(wait):
				case <-ctx.Done():
				}
				wait *= 2
			}
		}()
	}
	wg.Wait()
}

// SentryNotifier sends firings as warning messages "Alert: <name> — <message>" with a per-alert
// fingerprint, and resolutions as info messages.
type SentryNotifier struct{ Sentry *telemetry.Sentry }

// Name returns "sentry".
func (SentryNotifier) Name() string { return "sentry" }

// Notify sends the event.
func (s SentryNotifier) Notify(ctx context.Context, e Event) error {
	tags := map[string]string{"alert": e.Alert, "severity": e.Severity}
	if e.Firing {
		s.Sentry.CaptureMessage(sentry.LevelWarning, fmt.Sprintf("Alert: %s — %s", e.Alert, e.Message), tags, []string{"opsd-alert", e.Alert})
	} else {
		s.Sentry.CaptureMessage(sentry.LevelInfo, fmt.Sprintf("Resolved: %s — %s", e.Alert, e.Message), tags, []string{"opsd-alert-resolved", e.Alert})
	}
	if !s.Sentry.Flush(ctx) {
		return errors.New("sentry: flush timed out")
	}
	return nil
}

// PagerDuty sends Events API v2 trigger and resolve events with the dedup key
// "wopr-platform:<alert>".
type PagerDuty struct {
	URL        string // default https://events.pagerduty.com/v2/enqueue
	RoutingKey string
	Client     *http.Client
}

// Name returns "pagerduty".
func (PagerDuty) Name() string { return "pagerduty" }

// Notify sends the event.
func (p PagerDuty) Notify(ctx context.Context, e Event) error {
	action := "resolve"
	if e.Firing {
		action = "trigger"
	}
	body := map[string]any{
		"routing_key":  p.RoutingKey,
		"event_action": action,
		"dedup_key":    "wopr-platform:" + e.Alert,
	}
	if e.Firing {
		body["payload"] = map[string]any{
			"summary":        fmt.Sprintf("%s — %s", e.Alert, e.Message),
			"source":         e.Node,
			"severity":       e.Severity,
			"component":      "opsd",
			"custom_details": map[string]any{"value": e.Value, "threshold": e.Threshold},
		}
	}
	url := p.URL
	if url == "" {
		url = "https://events.pagerduty.com/v2/enqueue"
	}
	return postJSON(ctx, p.Client, url, "", body)
}

// Webhook POSTs the event as JSON.
type Webhook struct {
	URL    string
	Token  string
	Client *http.Client
}

// Name returns "webhook".
func (Webhook) Name() string { return "webhook" }

// Notify sends the event.
func (w Webhook) Notify(ctx context.Context, e Event) error {
	return postJSON(ctx, w.Client, w.URL, w.Token, e)
}

func postJSON(ctx context.Context, c *http.Client, url, token string, v any) error {
	if c == nil {
		c = &http.Client{Timeout: 15 * time.Second}
	}
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(b))
	if err != nil {
		return errors.New("invalid notification URL")
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		var ue interface{ Unwrap() error }
		if errors.As(err, &ue) {
			err = ue.Unwrap() // drop the URL: it may carry a key
		}
		return fmt.Errorf("post notification: %w", err)
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode >= 300 {
		return fmt.Errorf("post notification: status %d", resp.StatusCode)
	}
	return nil
}
