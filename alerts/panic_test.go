package alerts

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"

	"github.com/wopr-network/opsd/internal/metrics"
	"github.com/wopr-network/opsd/internal/state"
)

// panicky is a notifier with a bug: its first call panics, later calls reach the receiver.
type panicky struct {
	PagerDuty
	calls *atomic.Int32
}

func (p panicky) Notify(ctx context.Context, e Event) error {
	if p.calls.Add(1) == 1 {
		var m map[string]int
		m["boom"]++ // a nil map write: the kind of bug a notifier could have
	}
	return p.PagerDuty.Notify(ctx, e)
}

// TestNotifierPanicIsAFailedAttempt: a panic in a notifier fails that delivery attempt (counted,
// retried) instead of crashing the daemon, and the notification reaches the receiver next time.
func TestNotifierPanicIsAFailedAttempt(t *testing.T) {
	ctx := context.Background()
	st := openState(t)
	m := metrics.New(prometheus.NewRegistry(), "test")
	pd := newPagerDuty(t)
	var calls atomic.Int32
	d := NewDispatcher([]Notifier{panicky{PagerDuty: PagerDuty{URL: pd.URL, RoutingKey: "rk"}, calls: &calls}}, st, m, zerolog.Nop())
	d.SetRetry(4, time.Minute)
	now := time.Now()
	clock := now
	d.now = func() time.Time { return clock }
	if err := d.Enqueue(ctx, state.AlertState{Name: "backup-stale", Firing: true, UpdatedAt: now},
		Event{Alert: "backup-stale", Firing: true, Message: "stale", Severity: "critical", At: now}); err != nil {
		t.Fatal(err)
	}
	d.Deliver(ctx) // panics inside the notifier: must return
	if got := testutil.ToFloat64(m.NotificationAttemptFailures.WithLabelValues("pagerduty")); got != 1 {
		t.Fatalf("attempt failures after the panic: %v, want 1", got)
	}
	if n := len(pd.got()); n != 0 {
		t.Fatalf("the receiver got %d events from the panicking attempt", n)
	}
	clock = clock.Add(time.Hour) // past the backoff
	d.Deliver(ctx)
	if n := len(pd.got()); n != 1 {
		t.Fatalf("after the retry the receiver got %d events, want 1", n)
	}
	if got := testutil.ToFloat64(m.NotificationsSent.WithLabelValues("pagerduty")); got != 1 {
		t.Fatalf("sent: %v, want 1", got)
	}
}
