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

// TestRemovedAlertRuleIsResolvedByTheDaemon: two per-node rules fire and reach a real local
// HTTP server standing in for PagerDuty; one is taken out of the job file and the daemon
// reloaded, the other is taken out while the daemon is stopped and it starts on the same state
// database. Each one's incident is resolved under the key it was opened with, and the state
// rows of both are gone; the rule that stays is still open.
func TestRemovedAlertRuleIsResolvedByTheDaemon(t *testing.T) {
	pd := alertstest.New(t, nil)
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "opsd.yaml")
	rule := func(name string) string {
		return fmt.Sprintf(`    - name: %s
      kind: system
      resource: disk
      disk_path: %s
      threshold: 0
`, name, dir)
	}
	write := func(names ...string) {
		var rules strings.Builder
		for _, n := range names {
			rules.WriteString(rule(n))
		}
		writeConfig(t, cfgPath, daemonConfig(dir, "@every 1h")+fmt.Sprintf(`alerts:
  interval: 1s
  rules:
%s  notify:
    pagerduty:
      routing_key: rk-e2e-secret
      url: http://%s/v2/enqueue
`, rules.String(), pd.Addr()))
	}
	open := func() map[string]bool {
		o := map[string]bool{}
		for _, e := range pd.Events() {
			k, _ := e["dedup_key"].(string)
			o[k] = e["event_action"] == "trigger"
		}
		for k, v := range o {
			if !v {
				delete(o, k)
			}
		}
		return o
	}
	stateRows := func(m *Main) []string {
		rows, err := m.state.Alerts(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for n := range rows {
			names = append(names, n)
		}
		return names
	}

	write("disk-full", "disk-high", "disk-watch")
	m, base := runMain(t, cfgPath, Options{})
	eventually(t, "three incidents open at PagerDuty", 20*time.Second, func() bool { return len(open()) == 3 })

	// A live reload without disk-full.
	write("disk-high", "disk-watch")
	if code, body := post(t, base+"/-/reload", token); code != 200 {
		t.Fatalf("reload: %d %s", code, body)
	}
	eventually(t, "disk-full resolved after the reload", 20*time.Second, func() bool { return !open()["wopr-platform:disk-full:e2e"] })
	if rows := stateRows(m); len(rows) != 2 {
		t.Fatalf("alert state rows after the reload: %v", rows)
	}
	m.Close(context.Background())

	// A restart without disk-high.
	write("disk-watch")
	m, _ = runMain(t, cfgPath, Options{})
	defer m.Close(context.Background())
	eventually(t, "disk-high resolved after the restart", 20*time.Second, func() bool { return !open()["wopr-platform:disk-high:e2e"] })
	if o := open(); len(o) != 1 || !o["wopr-platform:disk-watch:e2e"] {
		t.Fatalf("open incidents: %v", o)
	}
	if rows := stateRows(m); len(rows) != 1 || rows[0] != "disk-watch" {
		t.Fatalf("alert state rows after the restart: %v", rows)
	}
	for _, e := range pd.Events() {
		if e["event_action"] == "resolve" && e["dedup_key"] != "wopr-platform:disk-full:e2e" && e["dedup_key"] != "wopr-platform:disk-high:e2e" {
			t.Fatalf("unexpected resolve: %v", e)
		}
	}
}
