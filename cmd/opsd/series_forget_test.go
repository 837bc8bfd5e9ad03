package main

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestRemovedJobLeavesNoSeries: after a reload that removes a job which ran, /metrics names it
// nowhere (counters, histograms and gauges alike).
func TestRemovedJobLeavesNoSeries(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "opsd.yaml")
	cfg := daemonConfig(dir, "@every 1h")
	writeConfig(t, cfgPath, cfg)
	_, base := startDaemon(t, cfgPath)
	if code, body := post(t, base+"/api/jobs/tick/run", token); code/100 != 2 {
		t.Fatalf("trigger: %d %s", code, body)
	}
	eventually(t, "tick's run", 10*time.Second, func() bool {
		_, outcome := jobSchedule(t, base, "tick")
		return outcome == "success"
	})
	if _, metrics := get(t, base+"/metrics"); !strings.Contains(metrics, `"tick"`) {
		t.Fatal("no series of tick before its removal")
	}
	// Remove tick (the first job of the file).
	i := strings.Index(cfg, "  - name: tick")
	j := strings.Index(cfg, "  - name: nightly")
	writeConfig(t, cfgPath, cfg[:i]+cfg[j:])
	if code, body := post(t, base+"/-/reload", token); code != 200 {
		t.Fatalf("reload: %d %s", code, body)
	}
	_, metrics := get(t, base+"/metrics")
	for _, l := range strings.Split(metrics, "\n") {
		if strings.Contains(l, `"tick"`) {
			t.Errorf("series of the removed job: %s", l)
		}
	}
}
