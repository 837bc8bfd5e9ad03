package main

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/wopr-network/opsd/internal/demo"
	"github.com/wopr-network/opsd/internal/docker/dockertest"
)

// TestDashboardsNameOnlyExportedMetrics runs every job kind once on a real daemon, scrapes
// /metrics, and checks that every metric the Grafana dashboard and the alerting rules name is in
// the scrape; `promtool check metrics` must accept the scrape.
func TestDashboardsNameOnlyExportedMetrics(t *testing.T) {
	dc := dockertest.Client(t)
	dockertest.Run(t, dc, dashPrefix+"a", nil, "echo a > /data/a.txt; sleep 3600")
	pd := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(202) }))
	defer pd.Close()
	ping := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer ping.Close()
	dir := t.TempDir()
	paths, _ := demo.Create(context.Background(), dir, 100)
	os.MkdirAll(filepath.Join(dir, "instances", "bot-1"), 0o755)
	var dbs strings.Builder
	for _, n := range demo.Names {
		fmt.Fprintf(&dbs, "      - {name: %s, path: %q}\n", n, paths[n])
	}
	cfgPath := filepath.Join(dir, "opsd.yaml")
	writeConfig(t, cfgPath, fmt.Sprintf(`node_id: dash
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
    pagerduty: {routing_key: rk, url: %[3]s}
jobs:
  - {name: noop, kind: noop, schedule: "@hourly"}
  - {name: ping, kind: http_ping, schedule: "@every 5m", url: %[4]s}
  - name: platform-db-backup
    kind: sqlite_backup
    schedule: "0 3 * * *"
    databases:
%[5]s  - {name: platform-drill, kind: sqlite_drill, schedule: "@monthly"}
  - {name: offsite-verify, kind: offsite_verify, schedule: "@daily"}
  - {name: prune, kind: prune, schedule: "@daily"}
  - {name: containers-nightly, kind: container_export, schedule: "0 2 * * *", name_prefix: `+dashPrefix+`}
  - {name: containers-hot, kind: container_export, schedule: "0 */6 * * *", name_prefix: `+dashPrefix+`, changed_only: true}
  - {name: wopr-home, kind: dir_snapshot, schedule: "0 2 * * *", base_dir: %[1]s/instances}
  - {name: container-drill, kind: container_drill, schedule: "@quarterly"}
`, dir, token, pd.URL, ping.URL, dbs.String()))
	m, base := startDaemon(t, cfgPath)
	ctx := context.Background()
	for _, name := range []string{"noop", "ping", "platform-db-backup", "containers-nightly", "containers-hot", "containers-hot", "wopr-home",
		"platform-drill", "offsite-verify", "prune", "container-drill"} {
		spec, _ := m.sched.Spec(name)
		if o := m.runner.Run(ctx, spec.Job, time.Minute, "test"); !o.OK() {
			t.Fatalf("%s: %v", name, o.Err)
		}
	}
	m.evaluator.EvaluateOnce(ctx, time.Now())
	_, scrape := get(t, base+"/metrics")

	exported := map[string]bool{}
	for _, line := range strings.Split(scrape, "\n") {
		if strings.HasPrefix(line, "# TYPE ") {
			f := strings.Fields(line)
			exported[f[2]] = true
		}
	}
	named := map[string]bool{}
	re := regexp.MustCompile(`opsd_[a-z0-9_]+`)
	for _, f := range []string{"../../dashboards/opsd.json", "../../dashboards/rules.yml"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range re.FindAllString(string(b), -1) {
			n = strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(n, "_bucket"), "_count"), "_sum")
			if n != "opsd_main" { // the dashboard uid
				named[n] = true
			}
		}
	}
	var missing []string
	for n := range named {
		if !exported[n] {
			missing = append(missing, n)
		}
	}
	sort.Strings(missing)
	if len(named) < 30 || len(missing) > 0 {
		t.Fatalf("%d metrics named; not in a real scrape: %v", len(named), missing)
	}
	for _, want := range []string{`opsd_backup_skipped_total{job_name="containers-hot",reason="unchanged"} 1`, `opsd_drill_last_result{drill="container-drill"} 1`} {
		if !strings.Contains(scrape, want) {
			t.Errorf("scrape lacks %s", want)
		}
	}
	if _, err := exec.LookPath("promtool"); err != nil {
		if os.Getenv("OPSD_TEST_REQUIRE_DOCKER") == "1" {
			t.Fatal("promtool is not installed (apt-get install prometheus)")
		}
		t.Skip("promtool not installed")
	}
	cmd := exec.Command("promtool", "check", "metrics")
	cmd.Stdin = strings.NewReader(scrape)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
	}
}

// dashPrefix names this run's test containers (unique on a shared engine).
var dashPrefix = dockertest.Unique("tenant_opsddash_")
