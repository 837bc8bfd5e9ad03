package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wopr-network/opsd/config"
)

// TestReloadAllOrNothingUnderARunningDaemon edits the real config file under a running daemon:
// a file whose second job has a cron day that never exists is refused as a whole (the first
// job keeps its old schedule, the second does not vanish, the gauge reads 0); reverting the file
// brings the gauge back to 1 without a restart; a docker.host change is announced as
// restart-only.
func TestReloadAllOrNothingUnderARunningDaemon(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "opsd.yaml")
	good := daemonConfig(dir, "@every 1h")
	writeConfig(t, cfgPath, good)
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	ctx := context.Background()
	m, err := NewMain(ctx, cfg, Options{Stderr: logs, Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Run(ctx); err != nil {
		t.Fatal(err)
	}
	defer m.Close(ctx)
	base := "http://" + m.Addr().String()
	gauge := func() string {
		_, body := get(t, base+"/metrics")
		for _, l := range strings.Split(body, "\n") {
			if strings.HasPrefix(l, "opsd_config_last_reload_successful ") {
				return strings.TrimPrefix(l, "opsd_config_last_reload_successful ")
			}
		}
		return ""
	}

	// tick changes (valid), nightly gets February 31st: gocron refuses it.
	bad := strings.Replace(strings.Replace(good, `"@every 1h"`, `"@every 2h"`, 1), `"0 3 * * *"`, `"0 0 31 2 *"`, 1)
	writeConfig(t, cfgPath, bad)
	eventually(t, "the reload gauge at 0", 10*time.Second, func() bool { return gauge() == "0" })
	if code, body := post(t, base+"/-/reload", token); code != 400 {
		t.Fatalf("reload of a file with February 31st: %d %s", code, body)
	}
	if s, _ := jobSchedule(t, base, "tick"); s != "@every 1h" {
		t.Fatalf("a failed reload rescheduled tick to %q", s)
	}
	if s, _ := jobSchedule(t, base, "nightly"); s != "0 3 * * *" {
		t.Fatalf("a failed reload changed nightly to %q", s)
	}

	// Reverting the file (the same content as the running config) is a success again.
	writeConfig(t, cfgPath, good)
	eventually(t, "the reload gauge back at 1 after the revert", 10*time.Second, func() bool { return gauge() == "1" })

	// docker.host cannot change under a running daemon: said so.
	writeConfig(t, cfgPath, good+"docker:\n  host: unix:///tmp/opsd-other-docker.sock\n")
	eventually(t, "the docker.host restart-only warning", 10*time.Second, func() bool {
		return strings.Contains(logs.String(), `"field":"docker.host"`)
	})
	if g := gauge(); g != "1" {
		t.Fatalf("gauge after a valid reload = %s", g)
	}
}

// TestBrokenConfigFileShowsOnHealth: a config file that no longer loads (a bad edit) keeps the
// old config running, and /health says so (degraded, problem "config", with the error) rather
// than "ok": the next restart of opsd would fail. Fixing the file clears it.
func TestBrokenConfigFileShowsOnHealth(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "opsd.yaml")
	good := daemonConfig(dir, "@every 1h")
	writeConfig(t, cfgPath, good)
	_, base := startDaemon(t, cfgPath)
	if _, body := get(t, base+"/health"); !strings.Contains(body, `"status":"ok"`) {
		t.Fatalf("/health before the bad edit: %s", body)
	}
	writeConfig(t, cfgPath, good+"\n  - name: [broken\n")
	if code, body := post(t, base+"/-/reload", token); code != 400 {
		t.Fatalf("reload of a broken file: %d %s", code, body)
	}
	_, body := get(t, base+"/health")
	if !strings.Contains(body, `"status":"degraded"`) || !strings.Contains(body, `"name":"config"`) || !strings.Contains(body, "line") {
		t.Fatalf("/health with a config file that does not load: %s", body)
	}
	writeConfig(t, cfgPath, good)
	if code, body := post(t, base+"/-/reload", token); code != 200 {
		t.Fatalf("reload of the fixed file: %d %s", code, body)
	}
	if _, body := get(t, base+"/health"); !strings.Contains(body, `"status":"ok"`) {
		t.Fatalf("/health after the file was fixed: %s", body)
	}
}
