package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wopr-network/opsd/config"
)

// pdReceiver is a real local HTTP server standing in for PagerDuty's Events API, stopped and
// started again on the same address during the test; it records the events it accepted.
type pdReceiver struct {
	addr   string
	mu     sync.Mutex
	events []map[string]any
	srv    *http.Server
}

func (p *pdReceiver) start(t *testing.T) {
	t.Helper()
	var ln net.Listener
	var err error
	for i := 0; i < 50; i++ {
		if ln, err = net.Listen("tcp", p.addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	p.addr = ln.Addr().String()
	p.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var ev map[string]any
		b, _ := io.ReadAll(r.Body)
		json.Unmarshal(b, &ev)
		p.mu.Lock()
		p.events = append(p.events, ev)
		p.mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
	})}
	go p.srv.Serve(ln)
}

func (p *pdReceiver) stop() { p.srv.Close() }

func (p *pdReceiver) got() []map[string]any {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]map[string]any(nil), p.events...)
}

// TestAlertOwedAcrossDaemonRestart: a firing raised while PagerDuty is down stays pending (the
// gauge says so, nothing counts as sent), survives a restart of opsd, and is delivered once
// PagerDuty is back, with the node in the dedup key of this per-node alert.
func TestAlertOwedAcrossDaemonRestart(t *testing.T) {
	pd := &pdReceiver{addr: "127.0.0.1:0"}
	pd.start(t)
	pd.stop()
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "opsd.yaml")
	writeConfig(t, cfgPath, daemonConfig(dir, "@every 1h")+fmt.Sprintf(`alerts:
  interval: 1s
  rules:
    - name: disk-full
      kind: system
      resource: disk
      disk_path: %s
      threshold: 0
  notify:
    pagerduty:
      routing_key: rk-e2e-secret
      url: http://%s/v2/enqueue
`, dir, pd.addr))
	start := func() (*Main, string) {
		cfg, err := config.Load(cfgPath)
		if err != nil {
			t.Fatal(err)
		}
		m, err := NewMain(context.Background(), cfg, Options{Stderr: &syncBuffer{}, Listen: "127.0.0.1:0"})
		if err != nil {
			t.Fatal(err)
		}
		if err := m.Run(context.Background()); err != nil {
			t.Fatal(err)
		}
		return m, "http://" + m.Addr().String()
	}
	metric := func(base, line string) bool {
		_, body := get(t, base+"/metrics")
		return strings.Contains(body, line)
	}

	m, base := start()
	if !metric(base, `opsd_alert_notifications_pending{notifier="pagerduty"} `) {
		t.Fatal("the pending gauge does not exist from the start")
	}
	eventually(t, "the firing pending while PagerDuty is down", 20*time.Second, func() bool {
		return metric(base, `opsd_alert_notifications_pending{notifier="pagerduty"} 1`) &&
			!metric(base, `opsd_alert_notification_attempt_failures_total{notifier="pagerduty"} 0`)
	})
	if !metric(base, `opsd_alert_notifications_total{notifier="pagerduty"} 0`) {
		t.Fatal("a notification PagerDuty never accepted counted as sent")
	}
	m.Close(context.Background())

	pd.start(t)
	defer pd.stop()
	m, base = start()
	defer m.Close(context.Background())
	eventually(t, "delivery after the restart", 20*time.Second, func() bool {
		return metric(base, `opsd_alert_notifications_total{notifier="pagerduty"} 1`) &&
			metric(base, `opsd_alert_notifications_pending{notifier="pagerduty"} 0`)
	})
	got := pd.got()
	if len(got) != 1 || got[0]["event_action"] != "trigger" || got[0]["dedup_key"] != "wopr-platform:disk-full:e2e" {
		t.Fatalf("PagerDuty received %v", got)
	}
}
