package jobs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"
)

// Noop is a job that waits and optionally fails: it makes schedules testable without side effects.
type Noop struct {
	JobName string
	Sleep   time.Duration
	Fail    bool
}

// Name returns the job's name.
func (n *Noop) Name() string { return n.JobName }

// Kind returns "noop".
func (n *Noop) Kind() string { return "noop" }

// Run sleeps (cancellable) and returns.
func (n *Noop) Run(ctx context.Context) (Result, error) {
	var t Timer
	t.Start("sleep")
	select {
	case <-time.After(n.Sleep):
	case <-ctx.Done():
		return Result{Phases: t.Phases()}, fmt.Errorf("noop: %w", ctx.Err())
	}
	if n.Fail {
		return Result{Phases: t.Phases()}, errors.New("noop: configured to fail")
	}
	return Result{Phases: t.Phases(), Summary: "ok"}, nil
}

// HTTPPing requests a URL: a dead-man's switch (healthchecks.io, Cronitor, an uptime monitor's
// push URL) that notices when opsd itself stops running.
type HTTPPing struct {
	JobName        string
	URL            string
	Method         string
	ExpectedStatus int
	Client         *http.Client
}

// Name returns the job's name.
func (h *HTTPPing) Name() string { return h.JobName }

// Kind returns "http_ping".
func (h *HTTPPing) Kind() string { return "http_ping" }

// Run sends the request; a transport error or an unexpected status fails the run. The URL is
// never part of the error (it often carries a token).
func (h *HTTPPing) Run(ctx context.Context) (Result, error) {
	client := h.Client
	if client == nil {
		client = &http.Client{Timeout: 30 * time.Second}
	}
	var t Timer
	t.Start("request")
	req, err := http.NewRequestWithContext(ctx, h.Method, h.URL, nil)
	if err != nil {
		return Result{}, errors.New("http_ping: invalid request")
	}
	req.Header.Set("User-Agent", "opsd")
	// One request every few minutes: a kept-alive connection would only wake the idle daemon
	// when the transport closes it, and hold a socket (and TLS state) in between.
	req.Close = true
	resp, err := client.Do(req)
	if err != nil {
		var ue interface{ Unwrap() error }
		if errors.As(err, &ue) {
			err = ue.Unwrap() // drop the URL that *url.Error carries
		}
		return Result{Phases: t.Phases()}, fmt.Errorf("http_ping: request failed: %w", err)
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	ok := resp.StatusCode >= 200 && resp.StatusCode < 300
	if h.ExpectedStatus != 0 {
		ok = resp.StatusCode == h.ExpectedStatus
	}
	if !ok {
		return Result{Phases: t.Phases()}, fmt.Errorf("http_ping: unexpected status %d", resp.StatusCode)
	}
	return Result{Phases: t.Phases(), Summary: fmt.Sprintf("status %d", resp.StatusCode)}, nil
}
