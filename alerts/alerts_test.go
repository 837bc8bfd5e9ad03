package alerts

import (
	"context"
	"database/sql"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"

	"github.com/wopr-network/opsd/internal/docker"
	"github.com/wopr-network/opsd/internal/docker/dockertest"
	"github.com/wopr-network/opsd/internal/metrics"
	"github.com/wopr-network/opsd/internal/state"
	"github.com/wopr-network/opsd/internal/telemetry"
	"github.com/wopr-network/opsd/internal/telemetry/sentrytest"
)

// pagerDuty is a local HTTP server standing in for the Events API; it records what it receives.
type pagerDuty struct {
	*httptest.Server
	mu     sync.Mutex
	events []map[string]any
	fail   atomic.Int32 // fail this many requests first
}

func newPagerDuty(t *testing.T) *pagerDuty {
	p := &pagerDuty{}
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p.fail.Add(-1) >= 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		var ev map[string]any
		b, _ := io.ReadAll(r.Body)
		json.Unmarshal(b, &ev)
		p.mu.Lock()
		p.events = append(p.events, ev)
		p.mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
	}))
	t.Cleanup(p.Close)
	return p
}

func (p *pagerDuty) got() []map[string]any {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]map[string]any(nil), p.events...)
}

type env struct {
	st  *state.Store
	m   *metrics.Metrics
	pd  *pagerDuty
	d   *Dispatcher
	db  string
	dir string
}

func newEnv(t *testing.T) *env {
	dir := t.TempDir()
	st, err := state.Open(context.Background(), filepath.Join(dir, "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	m := metrics.New(prometheus.NewRegistry(), "test")
	pd := newPagerDuty(t)
	d := NewDispatcher([]Notifier{PagerDuty{URL: pd.URL, RoutingKey: "rk-secret"}}, st, m, zerolog.Nop())
	d.SetRetry(4, 10*time.Millisecond)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	d.Start(ctx)
	db := filepath.Join(dir, "gateway.db")
	g, _ := sql.Open("sqlite", "file:"+db)
	g.Exec(`CREATE TABLE gateway_metrics (minute_key INTEGER, capability TEXT, requests INTEGER, errors INTEGER, credit_failures INTEGER)`)
	g.Close()
	return &env{st: st, m: m, pd: pd, d: d, db: db, dir: dir}
}

// fill replaces gateway_metrics with 5 minutes of traffic ending at now.
func (e *env) fill(t *testing.T, now time.Time, reqsPerMin, errsPerMin, creditFailures int, skipLastMinute bool) {
	g, _ := sql.Open("sqlite", "file:"+e.db)
	defer g.Close()
	g.Exec(`DELETE FROM gateway_metrics`)
	minute := now.Truncate(time.Minute)
	for i := 0; i < 5; i++ {
		if skipLastMinute && i == 0 {
			continue
		}
		key := minute.Add(-time.Duration(i) * time.Minute).UnixMilli()
		for _, c := range []string{"chat", "image"} {
			if _, err := g.Exec(`INSERT INTO gateway_metrics VALUES (?, ?, ?, ?, 0)`, key, c, reqsPerMin/2, errsPerMin/2); err != nil {
				t.Fatal(err)
			}
		}
	}
	g.Exec(`INSERT INTO gateway_metrics VALUES (?, '__credit_failures__', 0, 0, ?)`, minute.UnixMilli(), creditFailures)
	// Old rows outside the window must not count.
	g.Exec(`INSERT INTO gateway_metrics VALUES (?, 'chat', 1000, 1000, 0)`, minute.Add(-10*time.Minute).UnixMilli())
}

func (e *env) evaluator(t *testing.T, names ...string) *Evaluator {
	ev := NewEvaluator(e.st, e.m, zerolog.Nop(), e.d, "node-1", time.Minute)
	var specs []Spec
	for _, n := range names {
		r, err := Preset(n, e.db)
		if err != nil {
			t.Fatal(err)
		}
		specs = append(specs, Spec{Rule: r})
	}
	ev.SetRules(specs)
	return ev
}

func waitEvents(t *testing.T, pd *pagerDuty, n int) []map[string]any {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for len(pd.got()) < n {
		if time.Now().After(deadline) {
			t.Fatalf("got %d PagerDuty events, want %d", len(pd.got()), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)
	return pd.got()
}

func TestGatewayErrorRateEdges(t *testing.T) {
	e := newEnv(t)
	ev := e.evaluator(t, "gateway-error-rate")
	ctx := context.Background()
	now := time.Date(2026, 11, 26, 12, 0, 30, 0, time.UTC)
	e.fill(t, now, 100, 4, 0, false) // 4%
	ev.EvaluateOnce(ctx, now)
	if s := ev.Statuses()[0]; s.Firing || s.Value != 0.04 {
		t.Fatalf("4%%: %+v", s)
	}
	e.fill(t, now, 100, 6, 0, false) // 6%
	ev.EvaluateOnce(ctx, now)
	ev.EvaluateOnce(ctx, now.Add(time.Second)) // still 6%: no second notification
	got := waitEvents(t, e.pd, 1)
	if len(got) != 1 || got[0]["event_action"] != "trigger" || got[0]["dedup_key"] != "wopr-platform:gateway-error-rate" {
		t.Fatalf("events: %v", got)
	}
	payload := got[0]["payload"].(map[string]any)
	if payload["severity"] != "error" || !strings.Contains(payload["summary"].(string), "gateway error rate 6.0%") || payload["source"] != "node-1" {
		t.Fatalf("payload: %v", payload)
	}
	if v := testutil.ToFloat64(e.m.AlertFiring.WithLabelValues("gateway-error-rate")); v != 1 {
		t.Fatalf("opsd_alert_firing = %v", v)
	}
	e.fill(t, now, 100, 3, 0, false) // 3%
	ev.EvaluateOnce(ctx, now.Add(2*time.Second))
	ev.EvaluateOnce(ctx, now.Add(3*time.Second))
	got = waitEvents(t, e.pd, 2)
	if len(got) != 2 || got[1]["event_action"] != "resolve" || got[1]["dedup_key"] != "wopr-platform:gateway-error-rate" {
		t.Fatalf("events: %v", got)
	}
	// No requests: no division, no firing.
	e.fill(t, now, 0, 0, 0, false)
	ev.EvaluateOnce(ctx, now.Add(4*time.Second))
	if s := ev.Statuses()[0]; s.Firing {
		t.Fatalf("no traffic fired: %+v", s)
	}
}

func TestCreditAndSev1Rules(t *testing.T) {
	e := newEnv(t)
	ev := e.evaluator(t, "credit-deduction-spike", "sev1-billing-pipeline", "sev1-payment-processing", "sev1-inference-gateway-down")
	ctx := context.Background()
	now := time.Date(2026, 11, 26, 12, 0, 30, 0, time.UTC)
	firing := func() map[string]bool {
		out := map[string]bool{}
		for _, s := range ev.Statuses() {
			out[s.Name] = s.Firing
		}
		return out
	}
	e.fill(t, now, 100, 8, 11, false) // 8% errors, 11 credit failures
	ev.EvaluateOnce(ctx, now)
	if f := firing(); !f["credit-deduction-spike"] || f["sev1-billing-pipeline"] || f["sev1-payment-processing"] || f["sev1-inference-gateway-down"] {
		t.Fatalf("11 failures, 8%%: %v", f)
	}
	e.fill(t, now, 100, 12, 21, true) // 12% errors, 21 failures, nothing in the last minute
	ev.EvaluateOnce(ctx, now)
	if f := firing(); !f["credit-deduction-spike"] || !f["sev1-billing-pipeline"] || !f["sev1-payment-processing"] || !f["sev1-inference-gateway-down"] {
		t.Fatalf("21 failures, 12%%, gateway quiet: %v", f)
	}
	for _, ev := range waitEvents(t, e.pd, 4) {
		key := ev["dedup_key"].(string)
		sev := ev["payload"].(map[string]any)["severity"]
		if strings.HasPrefix(key, "wopr-platform:sev1-") != (sev == "critical") {
			t.Fatalf("%s has severity %v", key, sev)
		}
	}
}

func TestRestartWithFiringAlertDoesNotRenotify(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	now := time.Date(2026, 11, 26, 12, 0, 30, 0, time.UTC)
	e.fill(t, now, 100, 10, 0, false)
	e.evaluator(t, "gateway-error-rate").EvaluateOnce(ctx, now)
	waitEvents(t, e.pd, 1)
	// A new process: same state database, new evaluator.
	ev2 := e.evaluator(t, "gateway-error-rate")
	ev2.EvaluateOnce(ctx, now.Add(time.Minute))
	time.Sleep(100 * time.Millisecond)
	if n := len(e.pd.got()); n != 1 {
		t.Fatalf("restart re-notified: %d events", n)
	}
	if s := ev2.Statuses()[0]; !s.Firing || s.Since == nil {
		t.Fatalf("restart forgot the firing alert: %+v", s)
	}
}

func TestForDurationAndRetries(t *testing.T) {
	e := newEnv(t)
	e.pd.fail.Store(2) // the first two deliveries fail
	r, _ := Preset("gateway-error-rate", e.db)
	ev := NewEvaluator(e.st, e.m, zerolog.Nop(), e.d, "n", time.Minute)
	ev.SetRules([]Spec{{Rule: r, For: 2 * time.Minute}})
	ctx := context.Background()
	now := time.Date(2026, 11, 26, 12, 0, 30, 0, time.UTC)
	e.fill(t, now, 100, 10, 0, false)
	ev.EvaluateOnce(ctx, now)
	if ev.Statuses()[0].Firing {
		t.Fatal("fired before its for: duration")
	}
	ev.EvaluateOnce(ctx, now.Add(time.Minute))
	if ev.Statuses()[0].Firing {
		t.Fatal("fired before its for: duration")
	}
	ev.EvaluateOnce(ctx, now.Add(2*time.Minute))
	if !ev.Statuses()[0].Firing {
		t.Fatal("did not fire after its for: duration")
	}
	if got := waitEvents(t, e.pd, 1); len(got) != 1 {
		t.Fatalf("events: %v", got)
	}
	if v := testutil.ToFloat64(e.m.NotificationsSent.WithLabelValues("pagerduty")); v != 1 {
		t.Fatalf("notifications sent = %v", v)
	}
}

func TestFleetUnexpectedStopOnDocker(t *testing.T) {
	dc := dockertest.Client(t)
	kicked := make(chan struct{}, 10)
	u := &UnexpectedStops{Source: dc, Prefix: alertPrefix, Grace: time.Second, Kick: func() { kicked <- struct{}{} }, Log: zerolog.Nop()}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go u.Watch(ctx)
	time.Sleep(500 * time.Millisecond)
	stopped := dockertest.Run(t, dc, alertPrefix+"stopped", nil, "sleep 3600")
	killed := dockertest.Run(t, dc, alertPrefix+"killed", nil, "sleep 3600")
	time.Sleep(300 * time.Millisecond)
	if err := dc.Stop(ctx, stopped, time.Second); err != nil {
		t.Fatal(err)
	}
	if err := dc.Kill(ctx, killed, "KILL"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		ev, _ := u.Evaluate(ctx, time.Now())
		if ev.Firing {
			if !strings.Contains(ev.Message, alertPrefix+"killed exited with code 137") || strings.Contains(ev.Message, alertPrefix+"stopped") {
				t.Fatalf("message: %s", ev.Message)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("docker kill did not fire fleet-unexpected-stop")
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(1500 * time.Millisecond) // past the grace of the stopped one
	if ev, _ := u.Evaluate(ctx, time.Now()); strings.Contains(ev.Message, alertPrefix+"stopped") {
		t.Fatalf("docker stop fired: %s", ev.Message)
	}
	// Running again resolves it.
	if err := dc.Start(ctx, killed); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(60 * time.Second)
	for {
		if ev, _ := u.Evaluate(ctx, time.Now()); !ev.Firing {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a restarted container did not resolve the alert")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestStateRules(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	now := time.Now()
	stale := &StateRule{RuleName: "stale-backups", Kind: "stale_backups", State: e.st, StaleAfter: func() time.Duration { return 24 * time.Hour }}
	if ev, _ := stale.Evaluate(ctx, now); ev.Firing {
		t.Fatal("fired with nothing tracked")
	}
	e.st.RecordBackup(ctx, state.BackupAttempt{Target: "billing", Kind: "sqlite", At: now, Error: "disk full"})
	if ev, _ := stale.Evaluate(ctx, now); !ev.Firing || !strings.Contains(ev.Message, "billing") {
		t.Fatalf("stale: %+v", ev)
	}
	failing := &StateRule{RuleName: "job-failing", Kind: "job_failing", State: e.st, Failures: 2}
	for i := 0; i < 2; i++ {
		id, _ := e.st.StartRun(ctx, "nightly", "sqlite_backup", "schedule", now.Add(time.Duration(i)*time.Second))
		fin := now
		e.st.FinishRun(ctx, state.Run{ID: id, Job: "nightly", FinishedAt: &fin, Outcome: "failure"})
	}
	if ev, _ := failing.Evaluate(ctx, now); !ev.Firing || !strings.Contains(ev.Message, "nightly (2)") {
		t.Fatalf("failing: %+v", ev)
	}
	drill := &StateRule{RuleName: "drill-failed", Kind: "drill_failed", State: e.st}
	e.st.SaveReport(ctx, state.Report{Job: "platform-drill", Kind: "sqlite_drill", CreatedAt: now, Passed: true, Body: `{"passed":true,"rtoSeconds":1200,"rtoTargetSeconds":900}`})
	if ev, _ := drill.Evaluate(ctx, now); !ev.Firing || !strings.Contains(ev.Message, "missed its RTO") {
		t.Fatalf("drill: %+v", ev)
	}
}

// TestSentryNotifier: a firing is a warning "Alert: <name> — <message>" with a per-alert
// fingerprint; the resolution is recorded too.
func TestSentryNotifier(t *testing.T) {
	srv := sentrytest.New(t)
	sn, err := telemetry.NewSentry(telemetry.SentryOptions{DSN: srv.DSN(), Node: "api-1"}, telemetry.NewRedactor())
	if err != nil {
		t.Fatal(err)
	}
	n := SentryNotifier{Sentry: sn}
	ctx := context.Background()
	if err := n.Notify(ctx, Event{Alert: "gateway-error-rate", Firing: true, Message: "gateway error rate 6.0%", Severity: "error"}); err != nil {
		t.Fatal(err)
	}
	if err := n.Notify(ctx, Event{Alert: "gateway-error-rate", Firing: false, Message: "gateway error rate 3.0%", Severity: "error"}); err != nil {
		t.Fatal(err)
	}
	body := srv.All()
	for _, want := range []string{`"message":"Alert: gateway-error-rate — gateway error rate 6.0%"`, `"level":"warning"`,
		`"fingerprint":["opsd-alert","gateway-error-rate"]`, `"message":"Resolved: gateway-error-rate — gateway error rate 3.0%"`, `"alert":"gateway-error-rate"`} {
		if !strings.Contains(body, want) {
			t.Errorf("sentry lacks %s:\n%s", want, body)
		}
	}
}

// alertPrefix names this run's test containers (unique on a shared engine).
var alertPrefix = dockertest.Unique("tenant_opsdalert_")

// TestEngineFiltersEventsAnIdleDaemonIgnores: exec (health checks, operators' docker exec) and
// other non-life-cycle events are filtered by the engine, so they never reach opsd; a stop still does.
func TestEngineFiltersEventsAnIdleDaemonIgnores(t *testing.T) {
	dc := dockertest.Client(t)
	name := alertPrefix + "filtered"
	id := dockertest.Run(t, dc, name, nil, "sleep 3600")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	events, errs := dc.Events(ctx)
	time.Sleep(300 * time.Millisecond) // the subscription is in place
	if out, err := exec.CommandContext(ctx, "docker", "exec", id, "true").CombinedOutput(); err != nil {
		t.Fatalf("docker exec: %v: %s", err, out)
	}
	if err := dc.Stop(ctx, id, time.Second); err != nil {
		t.Fatal(err)
	}
	for {
		select {
		case ev := <-events:
			if ev.Name != name {
				continue // other work on a shared engine
			}
			if !slices.Contains(docker.EventActions, ev.Action) {
				t.Fatalf("the engine delivered %q, which opsd does not read", ev.Action)
			}
			if ev.Action == "stop" || ev.Action == "die" {
				return
			}
		case err := <-errs:
			t.Fatalf("event stream: %v", err)
		}
	}
}
