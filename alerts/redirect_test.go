package alerts

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"

	"github.com/wopr-network/opsd/internal/metrics"
	"github.com/wopr-network/opsd/internal/state"
)

// redirecting is a local receiver whose configured path answers a POST with a redirect to
// another path, as a web framework does for a missing trailing slash or a moved endpoint; the
// other path answers a GET with 200 (a landing page) and records what was POSTed to it.
type redirecting struct {
	*httptest.Server
	mu     sync.Mutex
	posted []string
}

func newRedirecting(t *testing.T, status int) *redirecting {
	r := &redirecting{}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path == "/hook" {
			http.Redirect(w, req, "/hook/", status)
			return
		}
		b, _ := io.ReadAll(req.Body)
		if req.Method == http.MethodPost {
			r.mu.Lock()
			r.posted = append(r.posted, string(b))
			r.mu.Unlock()
			w.WriteHeader(http.StatusAccepted)
			return
		}
		io.WriteString(w, "<html>hooks live here</html>")
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *redirecting) got() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.posted...)
}

// TestRedirectedNotificationIsNotCountedSent: a receiver answering the POST with 301, 302 or
// 303 makes Go's client follow it with a GET without the body; the 200 of that GET must not
// count the notification as sent (it never arrived). 307 and 308 resend the body: delivered.
func TestRedirectedNotificationIsNotCountedSent(t *testing.T) {
	for _, status := range []int{http.StatusMovedPermanently, http.StatusFound, http.StatusSeeOther, http.StatusTemporaryRedirect, http.StatusPermanentRedirect} {
		t.Run(http.StatusText(status), func(t *testing.T) {
			ctx := context.Background()
			st := openState(t)
			m := metrics.New(prometheus.NewRegistry(), "test")
			wh, pd := newRedirecting(t, status), newRedirecting(t, status)
			d := NewDispatcher([]Notifier{Webhook{URL: wh.URL + "/hook"}, PagerDuty{URL: pd.URL + "/hook", RoutingKey: "rk"}}, st, m, zerolog.Nop())
			d.SetRetry(2, time.Millisecond)
			items, _ := d.Items(Event{Alert: "disk", Firing: true, Message: "disk full", Severity: "error", Node: "node-1", At: time.Now()})
			if _, err := st.SaveAlertAndEnqueue(ctx, state.AlertState{Name: "disk", Firing: true, UpdatedAt: time.Now()}, items, 0); err != nil {
				t.Fatal(err)
			}
			for range 3 {
				d.Deliver(ctx)
			}
			for _, c := range []struct {
				name string
				r    *redirecting
			}{{"webhook", wh}, {"pagerduty", pd}} {
				sent := testutil.ToFloat64(m.NotificationsSent.WithLabelValues(c.name))
				if got := len(c.r.got()); sent != float64(got) {
					t.Errorf("%s: %v counted as sent, %d received", c.name, sent, got)
				}
			}
		})
	}
}
