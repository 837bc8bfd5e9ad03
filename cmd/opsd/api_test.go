package main

import (
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
)

// TestJobRunsUnknownJob: the runs of a job that is not configured and never ran are a 404
// naming it; a configured job that has not run yet has an empty list.
func TestJobRunsUnknownJob(t *testing.T) {
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer hook.Close()
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "opsd.yaml")
	writeConfig(t, cfgPath, freshConfig(dir, hook.URL))
	_, base := startDaemon(t, cfgPath)
	if code, body := get(t, base+"/api/jobs/nope/runs"); code != 404 || body != `{"error":"unknown job \"nope\""}`+"\n" {
		t.Errorf("unknown job: %d %s", code, body)
	}
	if code, body := get(t, base+"/api/jobs/noop/runs"); code != 200 || body != `{"job":"noop","runs":[]}`+"\n" {
		t.Errorf("configured job without runs: %d %s", code, body)
	}
}
