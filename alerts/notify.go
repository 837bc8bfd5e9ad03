package alerts

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/getsentry/sentry-go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/wopr-network/opsd/internal/artifact"
	"github.com/wopr-network/opsd/internal/metrics"
	"github.com/wopr-network/opsd/internal/state"
	"github.com/wopr-network/opsd/internal/telemetry"
)

// Notifier delivers alert events.
type Notifier interface {
	Name() string
	Notify(ctx context.Context, e Event) error
}

// RetryPolicy is how the dispatcher retries a notification the receiver did not accept: the
// wait doubles from Backoff up to MaxBackoff, and delivery is given up after Attempts attempts.
type RetryPolicy struct {
	Attempts   int
	Backoff    time.Duration
	MaxBackoff time.Duration
}

// DefaultRetry retries for about a day: 10s, 20s, 40s ... then every 15 minutes.
var DefaultRetry = RetryPolicy{Attempts: 100, Backoff: 10 * time.Second, MaxBackoff: 15 * time.Minute}

func (p RetryPolicy) wait(attempts int) time.Duration {
	w := p.Backoff
	for i := 1; i < attempts && w < p.MaxBackoff; i++ {
		w *= 2
	}
	return min(w, p.MaxBackoff)
}

// Dispatcher delivers alert notifications at least once. The evaluator writes every notification
// into the state database's outbox in the same transaction as the alert's new state; the
// dispatcher delivers what is pending in the background, one notifier at a time in queue order
// (a resolution never overtakes its firing), marks a row sent only when the receiver accepted it,
// and otherwise retries with exponential backoff. The outbox survives restarts, so a
// notification owed when opsd stopped is delivered after it starts again.
type Dispatcher struct {
	notifiers map[string]Notifier
	names     []string
	state     *state.Store
	metrics   *metrics.Metrics
	log       zerolog.Logger
	now       func() time.Time

	mu         sync.Mutex
	policy     RetryPolicy
	maxPending int
	episodes   map[string]*dropEpisode // notifiers whose outbox is being coalesced or capped

	wake   chan struct{}
	stop   chan struct{}
	wg     sync.WaitGroup
	cancel context.CancelFunc
}

// NewDispatcher returns a dispatcher over the state database's outbox; Start it to deliver.
func NewDispatcher(ns []Notifier, st *state.Store, m *metrics.Metrics, log zerolog.Logger) *Dispatcher {
	d := &Dispatcher{notifiers: map[string]Notifier{}, state: st, metrics: m, log: log, now: time.Now, policy: DefaultRetry,
		maxPending: DefaultOutboxCap, episodes: map[string]*dropEpisode{}, wake: make(chan struct{}, 1), stop: make(chan struct{})}
	for _, n := range ns {
		d.notifiers[n.Name()] = n
		d.names = append(d.names, n.Name())
		m.NotificationsSent.WithLabelValues(n.Name())
		m.NotificationsFailed.WithLabelValues(n.Name())
		m.NotificationsPending.WithLabelValues(n.Name())
		m.NotificationsGivenUp.WithLabelValues(n.Name())
		m.NotificationAttemptFailures.WithLabelValues(n.Name())
		m.NotificationsDropped.WithLabelValues(n.Name(), dropSuperseded)
		m.NotificationsDropped.WithLabelValues(n.Name(), dropOverflow)
	}
	return d
}

// DefaultOutboxCap is how many notifications may wait for one receiver. Superseded
// notifications of an incident are coalesced first (at most two wait per incident, see
// state.SaveAlertAndEnqueue), so the cap is only reached with that many incidents; beyond it the
// oldest pending notifications are dropped and counted.
const DefaultOutboxCap = 500

// The reasons of opsd_alert_notifications_dropped_total.
const (
	dropSuperseded = "superseded"
	dropOverflow   = "overflow"
)

// dropEpisode is what was removed from one notifier's outbox since it last had nothing pending
// (one warning per episode, one summary at its end).
type dropEpisode struct {
	superseded, overflow int
	warnedOverflow       bool
}

// SetOutboxCap changes how many notifications may wait for one receiver (at least 2).
func (d *Dispatcher) SetOutboxCap(n int) {
	d.mu.Lock()
	d.maxPending = max(n, 2)
	d.mu.Unlock()
}

func (d *Dispatcher) outboxCap() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.maxPending
}

// Enqueue stores an alert's new state and the notifications its events owe, in one transaction
// (see state.SaveAlertAndEnqueue: superseded notifications of the same incident are coalesced and
// each receiver's outbox is capped), and counts what that removed.
func (d *Dispatcher) Enqueue(ctx context.Context, st state.AlertState, events ...Event) error {
	items, err := d.itemsOf(events)
	if err != nil {
		return err
	}
	dropped, err := d.state.SaveAlertAndEnqueue(ctx, st, items, d.outboxCap())
	if err != nil {
		return err
	}
	d.noteDropped(dropped)
	return nil
}

// EnqueueRemoval deletes the state of an alert whose rule was removed from the config and
// queues the notifications its events owe (its incident's resolution), in one transaction,
// bounded like Enqueue.
func (d *Dispatcher) EnqueueRemoval(ctx context.Context, name string, events ...Event) error {
	items, err := d.itemsOf(events)
	if err != nil {
		return err
	}
	dropped, err := d.state.DeleteAlertAndEnqueue(ctx, name, items, d.outboxCap())
	if err != nil {
		return err
	}
	d.noteDropped(dropped)
	return nil
}

func (d *Dispatcher) itemsOf(events []Event) ([]state.OutboxItem, error) {
	var items []state.OutboxItem
	for _, e := range events {
		it, err := d.Items(e)
		if err != nil {
			return nil, err
		}
		items = append(items, it...)
	}
	return items, nil
}

// noteDropped counts notifications removed from the outbox and warns once per notifier and
// episode (until its outbox is empty again; see endEpisodes).
func (d *Dispatcher) noteDropped(dropped map[string]state.OutboxDropped) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for name, n := range dropped {
		if n.Superseded == 0 && n.Overflow == 0 {
			continue
		}
		d.metrics.NotificationsDropped.WithLabelValues(name, dropSuperseded).Add(float64(n.Superseded))
		d.metrics.NotificationsDropped.WithLabelValues(name, dropOverflow).Add(float64(n.Overflow))
		ep := d.episodes[name]
		if ep == nil {
			ep = &dropEpisode{}
			d.episodes[name] = ep
			d.log.Warn().Str("notifier", name).Msg("notifications are waiting for a receiver that does not accept them: " +
				"an incident's superseded notifications are coalesced to its latest state until it does")
		}
		ep.superseded += n.Superseded
		ep.overflow += n.Overflow
		if n.Overflow > 0 && !ep.warnedOverflow {
			ep.warnedOverflow = true
			d.log.Error().Str("notifier", name).Int("cap", d.maxPending).
				Msg("alert outbox full for a receiver: its oldest pending notifications are dropped (opsd_alert_notifications_dropped_total{reason=\"overflow\"})")
		}
	}
}

// endEpisodes closes the drop episode of every notifier with nothing pending, with one summary.
func (d *Dispatcher) endEpisodes(pending map[string]int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for name, ep := range d.episodes {
		if pending[name] > 0 {
			continue
		}
		d.log.Warn().Str("notifier", name).Int("superseded", ep.superseded).Int("overflow", ep.overflow).
			Msg("receiver caught up: notifications were coalesced or dropped while it did not accept them")
		delete(d.episodes, name)
	}
}

// SetRetry changes the retry policy: attempts before giving up and the first wait (doubling,
// up to 15 minutes).
func (d *Dispatcher) SetRetry(attempts int, backoff time.Duration) {
	d.mu.Lock()
	d.policy = RetryPolicy{Attempts: max(attempts, 1), Backoff: backoff, MaxBackoff: max(DefaultRetry.MaxBackoff, backoff)}
	d.mu.Unlock()
}

func (d *Dispatcher) retry() RetryPolicy {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.policy
}

// Items returns the outbox rows an event owes: one per notifier.
func (d *Dispatcher) Items(e Event) ([]state.OutboxItem, error) {
	b, err := json.Marshal(e)
	if err != nil {
		return nil, fmt.Errorf("encode notification: %w", err)
	}
	out := make([]state.OutboxItem, 0, len(d.names))
	action := state.ActionResolve
	if e.Firing {
		action = state.ActionTrigger
	}
	for _, n := range d.names {
		out = append(out, state.OutboxItem{Notifier: n, Alert: e.key(), Action: action, Payload: string(b), CreatedAt: e.At})
	}
	return out, nil
}

// Wake asks for a delivery pass now (something was queued).
func (d *Dispatcher) Wake() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// Start delivers pending notifications until Close. What was pending at the last stop is tried
// at once, whatever its backoff said (the receiver may have come back meanwhile).
func (d *Dispatcher) Start(ctx context.Context) {
	ctx, d.cancel = context.WithCancel(ctx)
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		first := true
		for {
			next := d.deliver(ctx, first)
			first = false
			// Nothing pending: only Wake (an item queued) changes the outbox, so an idle daemon
			// sleeps; the gauges are still refreshed hourly.
			wait := time.Hour
			if !next.IsZero() {
				wait = min(time.Minute, max(next.Sub(d.now()), time.Millisecond)) // and at least every minute while pending
			}
			t := time.NewTimer(wait)
			select {
			case <-d.wake:
			case <-t.C:
			case <-d.stop:
				t.Stop()
				d.Deliver(ctx) // a last pass for what is due, bounded by Close
				return
			case <-ctx.Done():
				t.Stop()
				return
			}
			t.Stop()
		}
	}()
}

// Close makes a last delivery pass, cancelling it after timeout; what is still pending stays in
// the outbox for the next start.
func (d *Dispatcher) Close(timeout time.Duration) {
	if d.cancel == nil {
		return
	}
	close(d.stop)
	done := make(chan struct{})
	go func() { d.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(timeout):
		d.cancel()
		<-done
	}
	d.cancel()
}

// Deliver makes one delivery pass over the outbox: every pending notification that is due is
// tried once. It returns when the next retry is due (zero when nothing is pending).
func (d *Dispatcher) Deliver(ctx context.Context) time.Time { return d.deliver(ctx, false) }

// deliver is Deliver; with all (the first pass after a start), pending notifications are tried
// whatever their backoff says, after the outbox an older opsd may have left unbounded is
// coalesced and capped.
func (d *Dispatcher) deliver(ctx context.Context, all bool) time.Time {
	if all {
		dropped, err := d.state.CompactOutbox(ctx, d.outboxCap())
		if err != nil {
			if ctx.Err() == nil {
				d.log.Error().Err(err).Msg("cannot coalesce the alert outbox")
			}
		} else {
			d.noteDropped(dropped)
		}
	}
	items, err := d.state.PendingOutbox(ctx)
	if err != nil {
		if ctx.Err() == nil {
			d.log.Error().Err(err).Msg("cannot read the alert outbox")
		}
		return d.now().Add(time.Minute)
	}
	byNotifier := map[string][]state.OutboxItem{}
	for _, it := range items {
		byNotifier[it.Notifier] = append(byNotifier[it.Notifier], it)
	}
	var wg sync.WaitGroup
	for name, list := range byNotifier {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d.deliverTo(ctx, name, list, all)
		}()
	}
	wg.Wait()
	d.refresh(ctx)
	if err := d.state.PruneOutbox(ctx, 1000); err != nil && ctx.Err() == nil {
		d.log.Warn().Err(err).Msg("cannot prune the alert outbox")
	}
	items, err = d.state.PendingOutbox(ctx)
	if err != nil {
		return d.now().Add(time.Minute)
	}
	var next time.Time
	for _, it := range items {
		if next.IsZero() || it.NextAttemptAt.Before(next) {
			next = it.NextAttemptAt
		}
	}
	return next
}

// deliverTo tries one notifier's pending rows in queue order; a row not delivered blocks the
// later rows of the same alert (a resolution never reaches a receiver before its firing).
func (d *Dispatcher) deliverTo(ctx context.Context, name string, items []state.OutboxItem, all bool) {
	n, ok := d.notifiers[name]
	blocked := map[string]bool{}
	policy := d.retry()
	for _, it := range items {
		if ctx.Err() != nil {
			return
		}
		now := d.now()
		if !ok {
			d.giveUp(ctx, it, it.Attempts, now, "notifier "+name+" is no longer configured")
			continue
		}
		if blocked[it.Alert] || (!all && it.NextAttemptAt.After(now)) {
			blocked[it.Alert] = true
			continue
		}
		var e Event
		if err := json.Unmarshal([]byte(it.Payload), &e); err != nil {
			d.giveUp(ctx, it, it.Attempts, now, "unreadable notification: "+err.Error())
			continue
		}
		actx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := notify(actx, n, e)
		cancel()
		if ctx.Err() != nil {
			return // shutting down: the row stays pending as it was
		}
		attempts := it.Attempts + 1
		if err == nil {
			if err := d.state.MarkOutboxSent(ctx, it.ID, attempts, d.now()); err != nil {
				// Not recorded: it will be sent again (at least once).
				d.log.Error().Err(err).Str("alert", e.Alert).Str("notifier", name).Msg("cannot record a delivered notification")
				blocked[it.Alert] = true
				continue
			}
			d.metrics.NotificationsSent.WithLabelValues(name).Inc()
			continue
		}
		blocked[it.Alert] = true
		d.metrics.NotificationAttemptFailures.WithLabelValues(name).Inc()
		if refused := (*refusedError)(nil); attempts >= policy.Attempts || errors.As(err, &refused) {
			d.giveUp(ctx, it, attempts, d.now(), err.Error())
			continue
		}
		wait := policy.wait(attempts)
		if se := (*statusError)(nil); errors.As(err, &se) && se.retryAfter > wait {
			wait = se.retryAfter // the receiver said when (429 rate limiting, 503)
		}
		next := d.now().Add(wait)
		d.log.Warn().Err(err).Str("alert", e.Alert).Str("notifier", name).Int("attempt", attempts).Time("retry_at", next).Msg("notification not accepted; will retry")
		if err := d.state.MarkOutboxRetry(ctx, it.ID, attempts, next, err.Error()); err != nil {
			d.log.Error().Err(err).Str("alert", e.Alert).Str("notifier", name).Msg("cannot record a notification attempt")
		}
	}
}

func (d *Dispatcher) giveUp(ctx context.Context, it state.OutboxItem, attempts int, now time.Time, reason string) {
	d.metrics.NotificationsFailed.WithLabelValues(it.Notifier).Inc()
	d.log.Error().Str("alert", it.Alert).Str("notifier", it.Notifier).Int("attempts", attempts).Str("error", reason).Msg("notification failed: giving up")
	if err := d.state.MarkOutboxFailed(ctx, it.ID, attempts, now, reason); err != nil {
		d.log.Error().Err(err).Str("alert", it.Alert).Msg("cannot record a failed notification")
	}
}

// refresh sets the pending and failed gauges from the outbox.
func (d *Dispatcher) refresh(ctx context.Context) {
	for status, g := range map[string]*prometheus.GaugeVec{state.OutboxPending: d.metrics.NotificationsPending, state.OutboxFailed: d.metrics.NotificationsGivenUp} {
		counts, err := d.state.OutboxCounts(ctx, status)
		if err != nil {
			return
		}
		for _, n := range d.names {
			g.WithLabelValues(n).Set(float64(counts[n]))
		}
		for n, c := range counts {
			g.WithLabelValues(n).Set(float64(c))
		}
		if status == state.OutboxPending {
			d.endEpisodes(counts)
		}
	}
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
		return s.Sentry.DeliverMessage(ctx, sentry.LevelWarning, fmt.Sprintf("Alert: %s — %s", e.Alert, e.Message), tags, []string{"opsd-alert", e.key()})
	}
	return s.Sentry.DeliverMessage(ctx, sentry.LevelInfo, fmt.Sprintf("Resolved: %s — %s", e.Alert, e.Message), tags, []string{"opsd-alert-resolved", e.key()})
}

// PagerDuty sends Events API v2 trigger and resolve events with the dedup key
// "wopr-platform:<alert>", or "wopr-platform:<alert>:<node>" for a per-node alert (each node's
// incident is its own).
type PagerDuty struct {
	URL        string // default https://events.pagerduty.com/v2/enqueue
	RoutingKey string
	Client     *http.Client
	// Redactor removes the config's secrets from the event's text (see redactEvent).
	Redactor *telemetry.Redactor
}

// Name returns "pagerduty".
func (PagerDuty) Name() string { return "pagerduty" }

// Notify sends the event.
func (p PagerDuty) Notify(ctx context.Context, e Event) error {
	e = redactEvent(e, p.Redactor) // before the summary is cut: a cut secret no longer matches
	action := "resolve"
	if e.Firing {
		action = "trigger"
	}
	body := map[string]any{
		"routing_key":  p.RoutingKey,
		"event_action": action,
		"dedup_key":    pdDedupKey(e),
	}
	if e.Firing {
		payload := map[string]any{
			// The Events API refuses (400) a summary over 1024 characters: a long message (many
			// stale targets) is cut there and kept whole, within bounds, in custom_details.
			"summary":        truncate(fmt.Sprintf("%s — %s", e.Alert, e.Message), pdSummaryMax),
			"source":         e.Node,
			"severity":       e.Severity,
			"component":      "opsd",
			"custom_details": map[string]any{"value": e.Value, "threshold": e.Threshold, "message": truncate(e.Message, pdDetailsMax)},
		}
		if !e.At.IsZero() {
			payload["timestamp"] = e.At.UTC().Format(time.RFC3339Nano) // when it fired, however late it is delivered
		}
		body["payload"] = payload
	}
	url := p.URL
	if url == "" {
		url = "https://events.pagerduty.com/v2/enqueue"
	}
	err := postJSON(ctx, p.Client, url, "", body)
	if se := (*statusError)(nil); errors.As(err, &se) && se.code == http.StatusBadRequest {
		// The Events API answers 400 to an event it finds invalid and documents it as not to be
		// retried: the same event is refused every time.
		return &refusedError{fmt.Errorf("PagerDuty refused the event as invalid (400; its API says not to retry it): %w", err)}
	}
	return err
}

// The Events API v2 limits: payload.summary is at most 1024 characters, dedup_key 255, a whole
// event at most 512 KB; custom_details' message is kept well below the latter.
const (
	pdSummaryMax  = 1024
	pdDedupKeyMax = 255
	pdDetailsMax  = 64 << 10
)

// pdDedupKey is "wopr-platform:<alert>[:<node>]"; one longer than the Events API's 255
// characters (a long alert name) is cut and ends with a hash of the whole key, so it stays the
// same for the alert's trigger and resolve and distinct between alerts and nodes.
func pdDedupKey(e Event) string {
	k := "wopr-platform:" + e.key()
	if len(k) <= pdDedupKeyMax {
		return k
	}
	sum := sha256.Sum256([]byte(k))
	h := "~" + hex.EncodeToString(sum[:16])
	cut := pdDedupKeyMax - len(h)
	for cut > 0 && !utf8.RuneStart(k[cut]) {
		cut--
	}
	return k[:cut] + h
}

// truncate returns s cut to at most max characters (and bytes), ending with "…" when cut.
func truncate(s string, max int) string {
	if len(s) <= max {
		return s
	}
	cut := max - len("…")
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// Webhook POSTs the event as JSON.
type Webhook struct {
	URL    string
	Token  string
	Client *http.Client
	// Redactor removes the config's secrets from the event's text (see redactEvent).
	Redactor *telemetry.Redactor
}

// Name returns "webhook".
func (Webhook) Name() string { return "webhook" }

// Notify sends the event.
func (w Webhook) Notify(ctx context.Context, e Event) error {
	return postJSON(ctx, w.Client, w.URL, w.Token, redactEvent(e, w.Redactor))
}

// notify calls the notifier, turning a panic in it (a bug in opsd) into a failed attempt: the
// notification is retried and given up as any other, and the daemon keeps running.
func notify(ctx context.Context, n Notifier, e Event) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = artifact.PanicError(p)
		}
	}()
	return n.Notify(ctx, e)
}

// urlPassword matches the password of a URL's user info (a DSN such as
// postgresql://user:password@host/db), for secrets the config does not name (one in an
// environment variable a data source read, or in a database's own error text).
var urlPassword = regexp.MustCompile(`([A-Za-z][A-Za-z0-9+.-]*://[^/\s:@]*:)[^@\s/]+@`)

// redactEvent returns the event with its free text (the message an evaluation or a data
// source's error produced) passed through the redactor Sentry's events use, and any URL password
// masked, so a secret never reaches PagerDuty or a webhook. The alert's name and node are names
// from the job file, not secrets, and they make the incident's dedup key: redacting them would
// give a trigger and its resolve different keys whenever the config's secrets changed between
// the two (a rotated password that happens to occur in a node id), leaving the incident open.
func redactEvent(e Event, r *telemetry.Redactor) Event {
	e.Message = urlPassword.ReplaceAllString(r.Redact(e.Message), "${1}"+telemetry.Redacted+"@")
	return e
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
	if resp.Request != nil && resp.Request.Method != http.MethodPost {
		// A 301, 302 or 303 was followed with a GET without the body: whatever that answered,
		// the notification did not arrive.
		return errors.New("post notification: redirected to a GET (the notification was not delivered; fix the URL)")
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return &statusError{code: resp.StatusCode, retryAfter: retryAfter(resp.Header.Get("Retry-After"), time.Now())}
	}
	return nil
}

// maxRetryAfter bounds how long a receiver's Retry-After can hold a notification back.
const maxRetryAfter = time.Hour

// retryAfter reads a Retry-After header (seconds, or an HTTP date) as a wait, at most
// maxRetryAfter; 0 when there is none.
func retryAfter(h string, now time.Time) time.Duration {
	if h == "" {
		return 0
	}
	var d time.Duration
	if secs, err := strconv.Atoi(strings.TrimSpace(h)); err == nil {
		d = time.Duration(secs) * time.Second
	} else if at, err := http.ParseTime(h); err == nil {
		d = at.Sub(now)
	}
	return min(max(d, 0), maxRetryAfter)
}

// statusError is a receiver's answer other than 2xx, with the wait its Retry-After asked for.
type statusError struct {
	code       int
	retryAfter time.Duration
}

func (e *statusError) Error() string { return fmt.Sprintf("post notification: status %d", e.code) }

// refusedError is an answer that says the same notification will never be accepted: the
// dispatcher gives it up at once instead of retrying it (and holding the alert's later
// notifications behind it) for a day.
type refusedError struct{ err error }

func (e *refusedError) Error() string { return e.err.Error() }
func (e *refusedError) Unwrap() error { return e.err }
