package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
	_ "modernc.org/sqlite"

	"github.com/wopr-network/opsd/internal/demo"
)

// promScenario is the job file of TestRealPrometheus. Every noop job runs every 3s, so a job is
// stale (twice its expected interval) 6s after its last success. failing fails until fixed;
// goesStale succeeds, then fails (its last success ages); broken-backup backs up a database file
// that does not exist until fixed.
func promScenario(dir, hook, dbs string, failing, goesStaleFails bool) string {
	return fmt.Sprintf(`node_id: promtest
http:
  admin_token: %[2]s
state:
  path: %[1]s/state.db
storage:
  backend: local
  local:
    path: %[1]s/store
reload:
  interval: 100ms
alerts:
  interval: 1s
  notify:
    webhook: {url: %[3]s}
jobs:
  - {name: ok, kind: noop, schedule: "@every 3s", run_at_start: true}
  - {name: failing, kind: noop, schedule: "@every 3s", run_at_start: true, fail: %[5]t}
  - {name: goes-stale, kind: noop, schedule: "@every 3s", run_at_start: true, fail: %[6]t}
  - name: platform-db-backup
    kind: sqlite_backup
    schedule: "@every 5s"
    run_at_start: true
    databases:
%[4]s  - name: broken-backup
    kind: sqlite_backup
    schedule: "@every 3s"
    run_at_start: true
    databases:
      - {name: ghost, path: %[1]s/ghost.db}
  - {name: platform-drill, kind: sqlite_drill, schedule: "@every 5s", run_at_start: true}
  - {name: offsite-verify, kind: offsite_verify, schedule: "@every 5s", run_at_start: true}
  - {name: prune, kind: prune, schedule: "@every 10s", run_at_start: true}
  - {name: containers-hot, kind: container_export, schedule: "@yearly", name_prefix: tenant_opsdprom_, changed_only: true}
`, dir, token, hook, dbs, failing, goesStaleFails)
}

// promAPI queries a Prometheus server's HTTP API.
type promAPI struct {
	t    *testing.T
	base string
}

func (p promAPI) get(path string, q url.Values, out any) error {
	resp, err := http.Get(p.base + path + "?" + q.Encode())
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var env struct {
		Status string          `json:"status"`
		Error  string          `json:"error"`
		Data   json.RawMessage `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&env); err != nil {
		return fmt.Errorf("decode %s: %w", path, err)
	}
	if env.Status != "success" {
		return fmt.Errorf("%s %s: %s", path, q.Encode(), env.Error)
	}
	return json.Unmarshal(env.Data, out)
}

type promAlert struct {
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
	State       string            `json:"state"`
}

// firing returns the firing alerts named name whose labels include match.
func (p promAPI) firing(name string, match map[string]string) []promAlert {
	var data struct {
		Alerts []promAlert `json:"alerts"`
	}
	if err := p.get("/api/v1/alerts", nil, &data); err != nil {
		p.t.Logf("alerts: %v", err)
		return nil
	}
	var out []promAlert
next:
	for _, a := range data.Alerts {
		if a.State != "firing" || a.Labels["alertname"] != name {
			continue
		}
		for k, v := range match {
			if a.Labels[k] != v {
				continue next
			}
		}
		out = append(out, a)
	}
	return out
}

// ruleErrors returns every rule that has been evaluated with an error, and the number of rules
// evaluated at least once.
func (p promAPI) ruleErrors() (errs []string, evaluated int) {
	var data struct {
		Groups []struct {
			Name  string `json:"name"`
			Rules []struct {
				Name           string `json:"name"`
				Health         string `json:"health"`
				LastError      string `json:"lastError"`
				LastEvaluation string `json:"lastEvaluation"`
			} `json:"rules"`
		} `json:"groups"`
	}
	if err := p.get("/api/v1/rules", nil, &data); err != nil {
		return []string{err.Error()}, 0
	}
	for _, g := range data.Groups {
		for _, r := range g.Rules {
			if !strings.HasPrefix(r.LastEvaluation, "0001-") {
				evaluated++
			}
			if r.Health == "err" || r.LastError != "" {
				errs = append(errs, fmt.Sprintf("%s/%s: %s", g.Name, r.Name, r.LastError))
			}
		}
	}
	return errs, evaluated
}

// fastRules is rules.yml with every `for:` removed and the group renamed, so the alerts fire on
// the first evaluation that matches; the expressions and annotations are unchanged, and each
// alert gets the label copy="fast": without it both groups would write the same ALERTS series
// at their own evaluation offsets (which Prometheus derives from the file's path), and whichever
// came second was refused as an out-of-order sample.
func fastRules(t *testing.T, src string) []byte {
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Groups []struct {
			Name  string           `yaml:"name"`
			Rules []map[string]any `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatalf("%s: %v", src, err)
	}
	for i := range doc.Groups {
		doc.Groups[i].Name += "-fast"
		for _, r := range doc.Groups[i].Rules {
			delete(r, "for")
			labels, _ := r["labels"].(map[string]any)
			if labels == nil {
				labels = map[string]any{}
			}
			labels["copy"] = "fast"
			r["labels"] = labels
		}
	}
	out, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func freePort(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// TestRealPrometheus runs Debian's Prometheus server against a real daemon: Prometheus scrapes
// opsd every second with a scrape job named `opsd` (default honor_labels) and loads
// dashboards/rules.yml (as is, and a copy without `for:` so alerts fire within the test). Jobs
// succeed, fail and go stale; the test checks through Prometheus's HTTP API that the target is
// up, no rule has an evaluation error, the expected alerts fire with the right job_name in their
// labels and summaries and resolve when the jobs are fixed, and that every dashboard expression
// (with $node and $__rate_interval substituted) parses and returns data.
//
// It needs `prometheus` on PATH (Debian: apt-get install prometheus); it skips without it unless
// OPSD_TEST_REQUIRE_PROMETHEUS=1 (.ci/prometheus-test.sh sets it).
func TestRealPrometheus(t *testing.T) {
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		if os.Getenv("OPSD_TEST_REQUIRE_PROMETHEUS") == "1" {
			t.Fatal("prometheus is not installed (apt-get install prometheus)")
		}
		t.Skip("prometheus not installed")
	}
	if testing.Short() {
		t.Skip("starts a Prometheus server")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer hook.Close()

	dir := t.TempDir()
	paths, err := demo.Create(ctx, dir, 50)
	if err != nil {
		t.Fatal(err)
	}
	var dbs strings.Builder
	for _, n := range demo.Names {
		fmt.Fprintf(&dbs, "      - {name: %s, path: %q}\n", n, paths[n])
	}
	cfgPath := filepath.Join(dir, "opsd.yaml")
	writeConfig(t, cfgPath, promScenario(dir, hook.URL, dbs.String(), true, false))
	m, _ := startDaemon(t, cfgPath)
	target := m.Addr().String()

	// Prometheus, on its own port, with its own data directory.
	pdir := filepath.Join(dir, "prometheus")
	if err := os.MkdirAll(filepath.Join(pdir, "data"), 0o755); err != nil {
		t.Fatal(err)
	}
	rules, _ := filepath.Abs("../../dashboards/rules.yml")
	if err := os.WriteFile(filepath.Join(pdir, "fast.yml"), fastRules(t, rules), 0o644); err != nil {
		t.Fatal(err)
	}
	promCfg := fmt.Sprintf(`global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: [%q, %q]
scrape_configs:
  - job_name: opsd
    static_configs:
      - targets: [%q]
`, rules, filepath.Join(pdir, "fast.yml"), target)
	if err := os.WriteFile(filepath.Join(pdir, "prometheus.yml"), []byte(promCfg), 0o644); err != nil {
		t.Fatal(err)
	}
	listen := freePort(t)
	var plog syncBuffer
	cmd := exec.CommandContext(ctx, bin, "--config.file="+filepath.Join(pdir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(pdir, "data"), "--web.listen-address="+listen, "--log.level=warn")
	cmd.Stdout, cmd.Stderr = &plog, &plog
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cancel()
		cmd.Wait()
		if t.Failed() {
			t.Logf("prometheus log:\n%s", plog.String())
		}
	}()
	p := promAPI{t: t, base: "http://" + listen}

	// The target is up, with the scrape job's labels.
	eventually(t, "the opsd target up", 60*time.Second, func() bool {
		var data struct {
			ActiveTargets []struct {
				Labels map[string]string `json:"labels"`
				Health string            `json:"health"`
			} `json:"activeTargets"`
		}
		if p.get("/api/v1/targets", nil, &data) != nil {
			return false
		}
		for _, tg := range data.ActiveTargets {
			if tg.Labels["job"] == "opsd" && tg.Labels["instance"] == target && tg.Health == "up" {
				return true
			}
		}
		return false
	})

	// Phase 1: failing fails, broken-backup's database is missing, the rest succeed.
	want := func(alert string, labels map[string]string, summary string) {
		t.Helper()
		eventually(t, fmt.Sprintf("%s %v firing", alert, labels), 60*time.Second, func() bool {
			for _, a := range p.firing(alert, labels) {
				if a.Annotations["summary"] == summary || (strings.HasSuffix(summary, "*") && strings.HasPrefix(a.Annotations["summary"], strings.TrimSuffix(summary, "*"))) {
					return true
				}
				t.Logf("%s: summary %q, want %q", alert, a.Annotations["summary"], summary)
			}
			return false
		})
	}
	resolved := func(alert string, labels map[string]string) {
		t.Helper()
		eventually(t, fmt.Sprintf("%s %v resolved", alert, labels), 60*time.Second, func() bool {
			return len(p.firing(alert, labels)) == 0
		})
	}
	job := func(name string) map[string]string {
		return map[string]string{"job": "opsd", "instance": target, "job_name": name, "kind": "noop"}
	}
	want("OpsdJobFailing", job("failing"), "opsd job failing failed its last run")
	want("OpsdJobNeverSucceeded", job("failing"), "opsd job failing has never succeeded")
	want("OpsdBackupStale", map[string]string{"target": "ghost", "job": "opsd"}, "backup of ghost (sqlite) is stale on promtest")
	want("OpsdJobFailing", map[string]string{"job_name": "broken-backup", "kind": "sqlite_backup"}, "opsd job broken-backup failed its last run")
	if a := p.firing("OpsdJobNeverSucceeded", map[string]string{"job_name": "ok"}); len(a) > 0 {
		t.Errorf("OpsdJobNeverSucceeded fires for a job that succeeded: %v", a)
	}
	eventually(t, "goes-stale succeeded once", 30*time.Second, func() bool {
		var v struct {
			Result []json.RawMessage `json:"result"`
		}
		return p.get("/api/v1/query", url.Values{"query": {`opsd_job_last_success_timestamp_seconds{job_name="goes-stale"}`}}, &v) == nil && len(v.Result) == 1
	})

	// Phase 2: goes-stale starts failing: its last success ages past twice its interval.
	writeConfig(t, cfgPath, promScenario(dir, hook.URL, dbs.String(), true, true))
	want("OpsdJobStale", job("goes-stale"), "opsd job goes-stale has not succeeded for *")

	// Every dashboard expression parses and returns data (now that every kind has run).
	eventually(t, "a drill that passed and a clean verification", 60*time.Second, func() bool {
		var v struct {
			Result []json.RawMessage `json:"result"`
		}
		q := `opsd_drill_last_result == 1 and on () opsd_offsite_last_verified_timestamp_seconds > 0 and on () opsd_prune_kept_backups >= 0 and on () opsd_alert_firing == 1`
		return p.get("/api/v1/query", url.Values{"query": {q}}, &v) == nil && len(v.Result) > 0
	})
	checkDashboard(t, p, target)

	// Phase 3: everything fixed: the alerts resolve.
	db, err := sql.Open("sqlite", filepath.Join(dir, "ghost.db"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`CREATE TABLE t (x); INSERT INTO t VALUES (1)`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	writeConfig(t, cfgPath, promScenario(dir, hook.URL, dbs.String(), false, false))
	resolved("OpsdJobFailing", job("failing"))
	resolved("OpsdJobNeverSucceeded", job("failing"))
	resolved("OpsdJobStale", job("goes-stale"))
	resolved("OpsdBackupStale", map[string]string{"target": "ghost"})
	resolved("OpsdJobFailing", map[string]string{"job_name": "broken-backup"})

	errs, evaluated := p.ruleErrors()
	if len(errs) > 0 || evaluated < 20 {
		t.Errorf("rule evaluation: %d rules evaluated, errors: %v", evaluated, errs)
	}
	// The fast copy of OpsdDown has no `for:`: one scrape that missed its 1 s timeout on a
	// loaded machine fires it for a second. The daemon must be up in the steady state.
	resolved("OpsdDown", nil)
}

var legendLabel = regexp.MustCompile(`\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}`)

// checkDashboard runs every expression of dashboards/opsd.json (and its node variable's query)
// through Prometheus, with $node set to the scraped instance and $__rate_interval to 15s (four
// scrape intervals, as Grafana computes it), and requires each to return data.
func checkDashboard(t *testing.T, p promAPI, instance string) {
	t.Helper()
	b, err := os.ReadFile("../../dashboards/opsd.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr   string `json:"expr"`
				Legend string `json:"legendFormat"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, panel := range dash.Panels {
		for _, tg := range panel.Targets {
			if tg.Expr == "" {
				continue
			}
			n++
			expr := strings.NewReplacer("$node", strings.ReplaceAll(instance, ".", `\\.`), "$__rate_interval", "15s").Replace(tg.Expr)
			if strings.Contains(expr, "$") {
				t.Errorf("%s: unsubstituted variable in %s", panel.Title, expr)
				continue
			}
			var v struct {
				Result []struct {
					Metric map[string]string `json:"metric"`
				} `json:"result"`
			}
			if err := p.get("/api/v1/query", url.Values{"query": {expr}}, &v); err != nil {
				t.Errorf("%s: %v", panel.Title, err)
			} else if len(v.Result) == 0 {
				t.Errorf("%s: %s returned no data", panel.Title, expr)
			}
			// Every label the legend names is on every series (a legend of {{job}} would read
			// "opsd" for every job: the scrape job, not opsd's job_name).
			for _, m := range legendLabel.FindAllStringSubmatch(tg.Legend, -1) {
				for _, r := range v.Result {
					if r.Metric[m[1]] == "" || (m[1] == "job" && r.Metric[m[1]] == "opsd") {
						t.Errorf("%s: legend %q names %s, which series %v of %s lacks", panel.Title, tg.Legend, m[1], r.Metric, expr)
						break
					}
				}
			}
		}
	}
	if n < 30 {
		t.Errorf("only %d dashboard expressions found", n)
	}
	// The node variable: label_values(opsd_build_info, instance) lists the scraped instance.
	var vals []string
	if err := p.get("/api/v1/label/instance/values", url.Values{"match[]": {"opsd_build_info"}}, &vals); err != nil || len(vals) != 1 || vals[0] != instance {
		t.Errorf("node variable values %v (%v), want [%s]", vals, err, instance)
	}
}
