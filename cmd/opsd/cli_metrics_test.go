package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/wopr-network/opsd/internal/demo"
	"github.com/wopr-network/opsd/internal/state"
)

// sampleOf returns the value of the series of family name whose labels include every want
// label, and whether there is one.
func sampleOf(fams map[string]*dto.MetricFamily, name string, want map[string]string) (float64, bool) {
	f := fams[name]
	if f == nil {
		return 0, false
	}
next:
	for _, m := range f.GetMetric() {
		for k, v := range want {
			found := false
			for _, l := range m.GetLabel() {
				if l.GetName() == k && l.GetValue() == v {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		if g := m.GetGauge(); g != nil {
			return g.GetValue(), true
		}
		return m.GetCounter().GetValue(), true
	}
	return 0, false
}

// TestCLIRunsReachTheDaemonsMetrics: a CLI backup run while the daemon runs (another state
// handle, as another process) records its run and targets in the shared state database; the
// daemon's metrics follow without a scheduled run: a failure fixed by hand stops being stale
// (opsd_backup_stale 0, the new last success, opsd_job_last_run_success 1), and a CLI failure
// shows (stale 1, last run success 0) while the last good time stays.
func TestCLIRunsReachTheDaemonsMetrics(t *testing.T) {
	dir, cfgPath := operatorConfig(t)
	body, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	// The evaluation's wake-up is what notices another process's writes: 1s keeps the test short.
	writeConfig(t, cfgPath, "alerts:\n  interval: 1s\n  rules: []\n"+string(body))

	// The state a night left: billing's backup failed, and so did the job's run.
	ctx := context.Background()
	st, err := state.Open(ctx, filepath.Join(dir, "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	night := time.Now().Add(-2 * time.Hour)
	id, err := st.StartRun(ctx, "platform-db-backup", "sqlite_backup", "schedule", night)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.RecordBackup(ctx, state.BackupAttempt{Target: "billing", Job: "platform-db-backup", NodeID: "op-1", Kind: "sqlite", At: night, Error: "disk full"}); err != nil {
		t.Fatal(err)
	}
	done := night.Add(time.Minute)
	if err := st.FinishRun(ctx, state.Run{ID: id, Job: "platform-db-backup", FinishedAt: &done, Outcome: state.OutcomeFailure, Error: "targets: billing failed"}); err != nil {
		t.Fatal(err)
	}
	st.Close()

	_, base := startDaemon(t, cfgPath)
	billing := map[string]string{"target": "billing", "job_name": "platform-db-backup"}
	job := map[string]string{"job_name": "platform-db-backup"}
	scrape := func() map[string]*dto.MetricFamily {
		_, b := get(t, base+"/metrics")
		return parseScrape(t, b)
	}
	fams := scrape()
	if v, ok := sampleOf(fams, "opsd_backup_stale", billing); !ok || v != 1 {
		t.Fatalf("at start billing's opsd_backup_stale = %v (present %v), want 1", v, ok)
	}
	if v, ok := sampleOf(fams, "opsd_job_last_run_success", job); !ok || v != 0 {
		t.Fatalf("at start opsd_job_last_run_success = %v (present %v), want 0", v, ok)
	}

	// The operator fixes it by hand.
	before := time.Now()
	if code, out, errb := cli("backup", "db", "-c", cfgPath, "--db", "billing"); code != 0 {
		t.Fatalf("backup db --db billing: %d\n%s%s", code, out, errb)
	}
	var last float64
	eventually(t, "the CLI's success in the daemon's /metrics", time.Minute, func() bool {
		fams := scrape()
		stale, _ := sampleOf(fams, "opsd_backup_stale", billing)
		ok, _ := sampleOf(fams, "opsd_job_last_run_success", job)
		last, _ = sampleOf(fams, "opsd_backup_last_success_timestamp_seconds", billing)
		jobOK, _ := sampleOf(fams, "opsd_job_last_success_timestamp_seconds", job)
		return stale == 0 && ok == 1 && last >= float64(before.Unix()) && jobOK >= float64(before.Unix())
	})
	if _, b := get(t, base+"/health"); !strings.Contains(b, `"status":"ok"`) {
		t.Fatalf("/health after the fix: %s", b)
	}

	// A CLI failure shows too: billing's database is gone.
	if err := os.Rename(demo.Path(filepath.Join(dir, "live"), "billing"), filepath.Join(dir, "billing.moved")); err != nil {
		t.Fatal(err)
	}
	if code, _, _ := cli("backup", "db", "-c", cfgPath, "--db", "billing"); code == 0 {
		t.Fatal("backup db of a missing database succeeded")
	}
	eventually(t, "the CLI's failure in the daemon's /metrics", time.Minute, func() bool {
		fams := scrape()
		stale, _ := sampleOf(fams, "opsd_backup_stale", billing)
		ok, _ := sampleOf(fams, "opsd_job_last_run_success", job)
		good, _ := sampleOf(fams, "opsd_backup_last_success_timestamp_seconds", billing)
		return stale == 1 && ok == 0 && good == last
	})
}
