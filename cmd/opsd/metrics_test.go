package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// parseScrape parses a /metrics body in the text format.
func parseScrape(t *testing.T, body string) map[string]*dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return fams
}

// series renders a sample's labels as {a="1",b="2"} (sorted by name, as the exposition does).
func series(m *dto.Metric) string {
	var parts []string
	for _, l := range m.GetLabel() {
		parts = append(parts, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
	}
	sort.Strings(parts)
	return "{" + strings.Join(parts, ",") + "}"
}

// freshConfig has one job of each family of counters and a webhook notifier; nothing runs
// during the test (every schedule is far away), so the scrape shows the state at start.
func freshConfig(dir, hook string) string {
	return fmt.Sprintf(`node_id: fresh
http:
  admin_token: %[2]s
state:
  path: %[1]s/state.db
storage:
  backend: local
  local:
    path: %[1]s/store
alerts:
  interval: 1h
  notify:
    webhook: {url: %[3]s}
  rules:   # one rule that cannot fire: no notification goes out during the test
    - {name: never, kind: system, resource: memory, op: ">", threshold: 2}
jobs:
  - {name: noop, kind: noop, schedule: "@yearly"}
  - {name: prune, kind: prune, schedule: "@yearly"}
  - {name: containers-hot, kind: container_export, schedule: "@yearly", name_prefix: tenant_opsdfresh_, changed_only: true}
  - {name: offsite-verify, kind: offsite_verify, schedule: "@yearly"}
`, dir, token, hook)
}

// TestMetricsFreshScrape scrapes a daemon that has not run anything: no metric carries a `job`
// or `instance` label (Prometheus would rename them to exported_job / exported_instance), and
// every counter exists at 0 for every label set known at start, so rate() and increase() see
// the first event.
func TestMetricsFreshScrape(t *testing.T) {
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer hook.Close()
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "opsd.yaml")
	writeConfig(t, cfgPath, freshConfig(dir, hook.URL))
	_, base := startDaemon(t, cfgPath)
	code, body := get(t, base+"/metrics")
	if code != 200 {
		t.Fatalf("/metrics: %d", code)
	}
	fams := parseScrape(t, body)

	for name, f := range fams {
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "job" || l.GetName() == "instance" {
					t.Errorf("%s%s carries the label %q, which Prometheus owns", name, series(m), l.GetName())
				}
			}
		}
	}

	// Every counter family opsd defines has series at start, all at 0.
	for name, f := range fams {
		if !strings.HasPrefix(name, "opsd_") || f.GetType() != dto.MetricType_COUNTER {
			continue
		}
		if len(f.GetMetric()) == 0 {
			t.Errorf("counter %s has no series at start", name)
		}
		for _, m := range f.GetMetric() {
			if v := m.GetCounter().GetValue(); v != 0 {
				t.Errorf("%s%s = %v at start, want 0", name, series(m), v)
			}
		}
	}
	want := map[string][]string{
		"opsd_alert_notifications_total":         {`{notifier="webhook"}`},
		"opsd_alert_notification_failures_total": {`{notifier="webhook"}`},
		"opsd_backup_skipped_total":              {`{job_name="containers-hot",reason="unchanged"}`},
		"opsd_storage_operations_total": {`{operation="put",outcome="error"}`, `{operation="get",outcome="error"}`,
			`{operation="list",outcome="error"}`, `{operation="delete",outcome="error"}`, `{operation="put",outcome="ok"}`},
		"opsd_job_runs_total": {`{job_name="noop",kind="noop",outcome="success"}`, `{job_name="noop",kind="noop",outcome="failure"}`,
			`{job_name="prune",kind="prune",outcome="timeout"}`, `{job_name="offsite-verify",kind="offsite_verify",outcome="canceled"}`},
		"opsd_job_skipped_total":           {`{job_name="noop",kind="noop",reason="overlap"}`},
		"opsd_backup_bytes_uploaded_total": {`{job_name="containers-hot",kind="container_export"}`},
		"opsd_prune_deleted_objects_total": {`{job_name="prune"}`},
		"opsd_prune_bytes_freed_total":     {`{job_name="prune"}`},
		"opsd_config_reloads_total":        {`{outcome="success"}`, `{outcome="failure"}`, `{outcome="unchanged"}`},
	}
	for name, sets := range want {
		f, ok := fams[name]
		if !ok {
			t.Errorf("%s is absent at start", name)
			continue
		}
		have := map[string]bool{}
		for _, m := range f.GetMetric() {
			have[series(m)] = true
		}
		for _, s := range sets {
			if !have[s] {
				t.Errorf("%s%s is absent at start", name, s)
			}
		}
	}
	if f := fams["opsd_job_duration_seconds"]; f == nil || len(f.GetMetric()) != 4 {
		t.Errorf("opsd_job_duration_seconds: want one histogram per job at start, got %v", f)
	}
}
