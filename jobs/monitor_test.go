package jobs

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/wopr-network/opsd/internal/telemetry"
	"github.com/wopr-network/opsd/internal/telemetry/sentrytest"
)

type kindJob struct{ name, kind string }

func (k kindJob) Name() string                        { return k.name }
func (k kindJob) Kind() string                        { return k.kind }
func (k kindJob) Run(context.Context) (Result, error) { return Result{}, nil }

// TestSentryMonitorSlugsAndIntervals: a node-scoped job's cron monitor is per node
// (containers-nightly-node-1), a platform job's is shared by the fleet (platform-db-backup), and
// `@every 90s` is sent as an interval Sentry can express without reporting missed check-ins
// (2 minutes, not a truncated 1); whole hours and days keep their unit.
func TestSentryMonitorSlugsAndIntervals(t *testing.T) {
	srv := sentrytest.New(t)
	r := newRig(t)
	sn, err := telemetry.NewSentry(telemetry.SentryOptions{DSN: srv.DSN(), Node: "node-1"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	r.runner.Sentry = sn
	s, err := NewScheduler(r.runner)
	if err != nil {
		t.Fatal(err)
	}
	jobs := []kindJob{{"containers-nightly", "container_export"}, {"platform-db-backup", "sqlite_backup"}, {"every-6h", "dir_snapshot"}, {"Ping.Me", "http_ping"}}
	scheds := []string{"@every 90s", "0 3 * * *", "@every 6h", "@every 48h"}
	var specs []Spec
	for i, j := range jobs {
		specs = append(specs, Spec{Job: j, Schedule: mustSchedule(t, scheds[i]), Timeout: 90 * time.Second, Enabled: true, Fingerprint: "a"})
	}
	if err := s.Apply(specs); err != nil {
		t.Fatal(err)
	}
	for _, j := range jobs {
		r.runner.Run(context.Background(), j, time.Minute, TriggerSchedule)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	sn.Flush(ctx)
	body := srv.All()
	for _, want := range []string{
		`"monitor_slug":"containers-nightly-node-1"`, `"schedule":{"type":"interval","value":2,"unit":"minute"}`,
		`"monitor_slug":"platform-db-backup"`, `"schedule":{"type":"crontab","value":"0 3 * * *"}`,
		`"monitor_slug":"every-6h-node-1"`, `"schedule":{"type":"interval","value":6,"unit":"hour"}`,
		`"monitor_slug":"ping-me-node-1"`, `"schedule":{"type":"interval","value":2,"unit":"day"}`,
		`"max_runtime":2`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("check-ins lack %s", want)
		}
	}
	for _, bad := range []string{`"monitor_slug":"containers-nightly"`, `"monitor_slug":"platform-db-backup-node-1"`, `"value":1,"unit":"minute"`} {
		if strings.Contains(body, bad) {
			t.Errorf("check-ins contain %s", bad)
		}
	}
	if t.Failed() {
		t.Log(body)
	}
}

func TestMonitorSlugLimits(t *testing.T) {
	long := MonitorSlug(strings.Repeat("a", 60), "container_export", "node-1")
	if len(long) != 50 || long == MonitorSlug(strings.Repeat("a", 61), "container_export", "node-1") {
		t.Errorf("long slug %q (%d)", long, len(long))
	}
}
