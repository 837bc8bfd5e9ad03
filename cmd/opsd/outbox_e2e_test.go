package main

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wopr-network/opsd/alerts/alertstest"
)

// TestAlertOwedAcrossDaemonRestart: a firing raised while PagerDuty is down stays pending (the
// gauge says so, nothing counts as sent), survives a restart of opsd, and is delivered once
// PagerDuty is back, with the node in the dedup key of this per-node alert.
func TestAlertOwedAcrossDaemonRestart(t *testing.T) {
	pd := alertstest.New(t, nil)
	pd.Stop()
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
`, dir, pd.Addr()))
	metric := func(base, line string) bool {
		_, body := get(t, base+"/metrics")
		return strings.Contains(body, line)
	}

	m, base := runMain(t, cfgPath, Options{})
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

	pd.Start(t)
	m, base = runMain(t, cfgPath, Options{})
	defer m.Close(context.Background())
	eventually(t, "delivery after the restart", 20*time.Second, func() bool {
		return metric(base, `opsd_alert_notifications_total{notifier="pagerduty"} 1`) &&
			metric(base, `opsd_alert_notifications_pending{notifier="pagerduty"} 0`)
	})
	got := pd.Events()
	if len(got) != 1 || got[0]["event_action"] != "trigger" || got[0]["dedup_key"] != "wopr-platform:disk-full:e2e" {
		t.Fatalf("PagerDuty received %v", got)
	}
}
