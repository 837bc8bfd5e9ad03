package telemetry

import (
	"context"
	"fmt"
	"time"

	"github.com/getsentry/sentry-go"
)

// SentryOptions configure the Sentry client.
type SentryOptions struct {
	DSN         string
	Environment string
	Release     string
	Node        string
	SampleRate  float64
}

// Sentry reports job failures and alerts. The zero value and a Sentry built without a DSN are
// no-ops. Every event passes through the redactor before it is sent.
type Sentry struct {
	hub    *sentry.Hub
	node   string
	alert  *alertClient // synchronous delivery of alert notifications
	redact *Redactor
}

// NewSentry creates a Sentry client; with an empty DSN it returns a no-op.
func NewSentry(o SentryOptions, r *Redactor) (*Sentry, error) {
	if o.DSN == "" {
		return &Sentry{node: o.Node, redact: r}, nil
	}
	rate := o.SampleRate
	if rate == 0 {
		rate = 1
	}
	client, err := sentry.NewClient(sentry.ClientOptions{
		Dsn:         o.DSN,
		Environment: o.Environment,
		Release:     o.Release,
		ServerName:  o.Node,
		SampleRate:  rate,
		BeforeSend: func(e *sentry.Event, _ *sentry.EventHint) *sentry.Event {
			scrubEvent(e, r)
			return e
		},
	})
	if err != nil {
		// The DSN itself must not appear in the error.
		return nil, fmt.Errorf("init sentry: invalid DSN")
	}
	alert, err := newAlertClient(o, r)
	if err != nil {
		return nil, err
	}
	return &Sentry{hub: sentry.NewHub(client, sentry.NewScope()), node: o.Node, alert: alert, redact: r}, nil
}

// Redactor returns the redactor every event passes through (nil for a nil Sentry), so other
// channels that carry the same text (alert notifications) redact the same secrets.
func (s *Sentry) Redactor() *Redactor {
	if s == nil {
		return nil
	}
	return s.redact
}

// Enabled reports whether events are sent.
func (s *Sentry) Enabled() bool { return s != nil && s.hub != nil }

func scrubEvent(e *sentry.Event, r *Redactor) {
	e.Message = r.Redact(e.Message)
	for i := range e.Exception {
		e.Exception[i].Value = r.Redact(e.Exception[i].Value)
	}
	for k, v := range e.Tags {
		e.Tags[k] = r.Redact(v)
	}
	for _, ctx := range e.Contexts {
		for k, v := range ctx {
			if s, ok := v.(string); ok {
				ctx[k] = r.Redact(s)
			}
		}
	}
	for _, b := range e.Breadcrumbs {
		b.Message = r.Redact(b.Message)
	}
	e.Request = nil
}

// JobFailure is a failed job run (or one failed target of it).
type JobFailure struct {
	Job, Kind, Target string
	Err               error
}

// CaptureJobFailure sends an error event tagged with job, kind, node, target and source.
func (s *Sentry) CaptureJobFailure(f JobFailure) {
	if !s.Enabled() {
		return
	}
	s.hub.WithScope(func(scope *sentry.Scope) {
		scope.SetLevel(sentry.LevelError)
		scope.SetTags(map[string]string{"job": f.Job, "kind": f.Kind, "node": s.node, "source": "opsd"})
		if f.Target != "" {
			scope.SetTag("target", f.Target)
		}
		scope.SetFingerprint([]string{"opsd-job", f.Job, f.Target})
		s.hub.CaptureException(f.Err)
	})
}

// CaptureMessage sends a message at the given level with tags and a fingerprint.
func (s *Sentry) CaptureMessage(level sentry.Level, msg string, tags map[string]string, fingerprint []string) {
	if !s.Enabled() {
		return
	}
	s.captureMessage(s.hub, level, msg, tags, fingerprint)
}

// captureMessage sends a message through hub at the given level, tagged with the node, the
// source and tags, with fingerprint when not nil.
func (s *Sentry) captureMessage(hub *sentry.Hub, level sentry.Level, msg string, tags map[string]string, fingerprint []string) {
	hub.WithScope(func(scope *sentry.Scope) {
		scope.SetLevel(level)
		scope.SetTag("node", s.node)
		scope.SetTag("source", "opsd")
		scope.SetTags(tags)
		if fingerprint != nil {
			scope.SetFingerprint(fingerprint)
		}
		hub.CaptureMessage(msg)
	})
}

// Flush waits (bounded by ctx) until queued events are sent.
func (s *Sentry) Flush(ctx context.Context) bool {
	if !s.Enabled() {
		return true
	}
	timeout := 5 * time.Second
	if dl, ok := ctx.Deadline(); ok {
		timeout = time.Until(dl)
	}
	return s.hub.Flush(timeout)
}

// Monitor is a Sentry cron monitor: a scheduled job that checks in, so Sentry itself notices a
// job that never ran.
type Monitor struct {
	Slug     string
	Cron     string        // 5-field cron, or
	Every    time.Duration // a fixed interval
	Timezone string
	// MaxRuntime: an in-progress check-in older than this counts as failed.
	MaxRuntime time.Duration
}

func (m Monitor) config() *sentry.MonitorConfig {
	c := &sentry.MonitorConfig{Timezone: m.Timezone, CheckInMargin: 5, MaxRuntime: ceilMinutes(m.MaxRuntime)}
	if m.Cron != "" {
		c.Schedule = sentry.CrontabSchedule(m.Cron)
	} else {
		c.Schedule = intervalSchedule(m.Every)
	}
	return c
}

// intervalSchedule expresses a fixed interval in Sentry's units, whose smallest is the minute:
// a whole number of days or hours is sent in that unit, anything else in minutes rounded up
// (@every 90s is every 2 minutes: a check-in every 90s is never late; rounding down to 1 minute
// made every other one look missed).
func intervalSchedule(d time.Duration) sentry.MonitorSchedule {
	switch {
	case d >= 24*time.Hour && d%(24*time.Hour) == 0:
		return sentry.IntervalSchedule(int64(d/(24*time.Hour)), sentry.MonitorScheduleUnitDay)
	case d >= time.Hour && d%time.Hour == 0:
		return sentry.IntervalSchedule(int64(d/time.Hour), sentry.MonitorScheduleUnitHour)
	}
	return sentry.IntervalSchedule(ceilMinutes(d), sentry.MonitorScheduleUnitMinute)
}

// ceilMinutes rounds a duration up to whole minutes, at least 1.
func ceilMinutes(d time.Duration) int64 {
	return max(int64((d+time.Minute-1)/time.Minute), 1)
}

// CheckInStart sends an in-progress check-in and returns its id ("" when Sentry is off).
func (s *Sentry) CheckInStart(m Monitor) string {
	if !s.Enabled() {
		return ""
	}
	id := s.hub.CaptureCheckIn(&sentry.CheckIn{MonitorSlug: m.Slug, Status: sentry.CheckInStatusInProgress}, m.config())
	if id == nil {
		return ""
	}
	return string(*id)
}

// CheckInFinish closes a check-in as ok or error.
func (s *Sentry) CheckInFinish(m Monitor, id string, ok bool, d time.Duration) {
	if !s.Enabled() || id == "" {
		return
	}
	status := sentry.CheckInStatusOK
	if !ok {
		status = sentry.CheckInStatusError
	}
	s.hub.CaptureCheckIn(&sentry.CheckIn{ID: sentry.EventID(id), MonitorSlug: m.Slug, Status: status, Duration: d}, m.config())
}
