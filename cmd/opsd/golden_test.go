package main

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/wopr-network/opsd/internal/demo"
)

var update = flag.Bool("update", false, "rewrite testdata/metrics.golden from this run")

// goldenVaries are the samples whose value depends on the clock, the machine or the data's
// bytes: timestamps, durations, sizes, throughput, histogram buckets and sums (series, names,
// help and types are always compared).
var goldenVaries = regexp.MustCompile(`(_timestamp_seconds|_duration_seconds|_phase_seconds|_rto_seconds|_bytes|_bytes_uploaded_total|_bytes_freed_total|_bytes_per_second|_bucket|_sum)$`)

// normalizeScrape drops the Go and process collectors, replaces varying values with
// "<varies>" and the Go version label with "<go>", so the rest of the exposition (names, help,
// types, label sets, counts and states) can be compared byte for byte.
func normalizeScrape(body string) string {
	goVersion := regexp.MustCompile(`goversion="[^"]*"`)
	var out []string
	for _, line := range strings.Split(strings.TrimSpace(body), "\n") {
		name := line
		if strings.HasPrefix(line, "# ") {
			name = strings.Fields(line)[2]
		} else if i := strings.IndexAny(line, "{ "); i > 0 {
			name = line[:i]
		}
		if strings.HasPrefix(name, "go_") || strings.HasPrefix(name, "process_") || strings.HasPrefix(name, "promhttp_") {
			continue
		}
		line = goVersion.ReplaceAllString(line, `goversion="<go>"`)
		// Successful storage calls are counted but how many a job makes is an implementation
		// detail; their label sets and the error counts stay in the comparison.
		okStorage := name == "opsd_storage_operations_total" && strings.Contains(line, `outcome="ok"`)
		if !strings.HasPrefix(line, "#") && (goldenVaries.MatchString(name) || okStorage) {
			line = line[:strings.LastIndex(line, " ")] + " <varies>"
		}
		out = append(out, line)
	}
	return strings.Join(out, "\n") + "\n"
}

// TestMetricsGolden runs a fixed scenario (one run of each job kind that needs no Docker, a
// failing job, an alert that fires and is delivered) and compares its /metrics exposition with
// testdata/metrics.golden, so a renamed metric or label is a visible diff. Regenerate with
// `go test ./cmd/opsd -run TestMetricsGolden -update`.
func TestMetricsGolden(t *testing.T) {
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer hook.Close()
	dir := t.TempDir()
	ctx := context.Background()
	paths, err := demo.Create(ctx, dir, 20)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "instances", "bot-1"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "instances", "bot-1", "config.json"), []byte(`{"bot":1}`), 0o644); err != nil {
		t.Fatal(err)
	}
	var dbs strings.Builder
	for _, n := range demo.Names {
		fmt.Fprintf(&dbs, "      - {name: %s, path: %q}\n", n, paths[n])
	}
	cfgPath := filepath.Join(dir, "opsd.yaml")
	writeConfig(t, cfgPath, fmt.Sprintf(`node_id: golden
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
  rules:
    - {name: job-failing, kind: job_failing, failures: 1}
    - {name: stale-backups, kind: stale_backups}
jobs:
  - {name: noop, kind: noop, schedule: "@yearly"}
  - {name: noop-fails, kind: noop, schedule: "@yearly", fail: true}
  - name: platform-db-backup
    kind: sqlite_backup
    schedule: "0 3 * * *"
    databases:
%[4]s  - {name: wopr-home, kind: dir_snapshot, schedule: "0 2 * * *", base_dir: %[1]s/instances}
  - {name: platform-drill, kind: sqlite_drill, schedule: "@monthly"}
  - {name: offsite-verify, kind: offsite_verify, schedule: "@daily"}
  - {name: prune, kind: prune, schedule: "@daily"}
  - {name: containers-hot, kind: container_export, schedule: "@yearly", name_prefix: tenant_opsdgolden_, changed_only: true}
`, dir, token, hook.URL, dbs.String()))
	m, base := startDaemon(t, cfgPath)
	for _, name := range []string{"noop", "noop-fails", "platform-db-backup", "wopr-home", "platform-drill", "offsite-verify", "prune"} {
		spec, _ := m.sched.Spec(name)
		if o := m.runner.Run(ctx, spec.Job, time.Minute, "test"); o.OK() == (name == "noop-fails") {
			t.Fatalf("%s: %v", name, o.Err)
		}
	}
	m.evaluator.EvaluateOnce(ctx, time.Now())
	var body string
	eventually(t, "the alert's notification delivered", 30*time.Second, func() bool {
		_, body = get(t, base+"/metrics")
		return strings.Contains(body, `opsd_alert_notifications_total{notifier="webhook"} 1`)
	})
	got := normalizeScrape(body)
	golden := filepath.Join("testdata", "metrics.golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (generate it with -update)", err)
	}
	if got != string(want) {
		t.Errorf("/metrics differs from %s (rerun with -update if the change is intended):\n%s", golden, lineDiff(string(want), got))
	}
}

// lineDiff lists the lines only in want (-) and only in got (+).
func lineDiff(want, got string) string {
	in := func(s string) map[string]bool {
		m := map[string]bool{}
		for _, l := range strings.Split(s, "\n") {
			m[l] = true
		}
		return m
	}
	w, g := in(want), in(got)
	var b strings.Builder
	for _, l := range strings.Split(want, "\n") {
		if !g[l] {
			fmt.Fprintf(&b, "- %s\n", l)
		}
	}
	for _, l := range strings.Split(got, "\n") {
		if !w[l] {
			fmt.Fprintf(&b, "+ %s\n", l)
		}
	}
	return b.String()
}
