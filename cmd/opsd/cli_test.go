package main

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wopr-network/opsd/config"
	"github.com/wopr-network/opsd/internal/state"
)

// TestPruneDryRunIsNotARun: `opsd prune --dry-run` prints the plan but is not recorded as a
// prune run (a dry run must never reset the "last successful prune" the alert rules read); a
// real prune afterwards is.
func TestPruneDryRunIsNotARun(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "opsd.yaml")
	writeConfig(t, cfgPath, freshConfig(dir, "http://127.0.0.1:9/hook"))
	var out, errb bytes.Buffer
	if code := run([]string{"prune", "-c", cfgPath, "--dry-run"}, &out, &errb); code != 0 || !strings.Contains(out.String(), "would delete 0 objects") {
		t.Fatalf("prune --dry-run: exit %d\n%s%s", code, out.String(), errb.String())
	}
	ctx := context.Background()
	st, err := state.Open(ctx, filepath.Join(dir, "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	if r, err := st.LastRun(ctx, "prune"); err == nil {
		t.Fatalf("the dry run was recorded as a run: %+v", r)
	}
	st.Close()
	if code := run([]string{"prune", "-c", cfgPath}, &out, &errb); code != 0 {
		t.Fatalf("prune: exit %d\n%s%s", code, out.String(), errb.String())
	}
	st, err = state.Open(ctx, filepath.Join(dir, "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if r, err := st.LastSuccess(ctx, "prune"); err != nil || r.Trigger != "cli" {
		t.Fatalf("the real prune was not recorded: %+v %v", r, err)
	}
}

// TestHealthcheckProbesConfiguredListen: `opsd healthcheck` without --url probes /health/ready
// on the job file's http.listen (a wildcard host on loopback), also when the file no longer
// loads (the daemon keeps its old config), and names the URL when nothing answers.
func TestHealthcheckProbesConfiguredListen(t *testing.T) {
	dir := t.TempDir()
	port := strings.TrimPrefix(freePort(t), "127.0.0.1:")
	cfgPath := filepath.Join(dir, "opsd.yaml")
	body := strings.Replace(freshConfig(dir, "http://127.0.0.1:9/hook"), "http:\n", "http:\n  listen: ${OPSD_TEST_HC_LISTEN:-0.0.0.0:"+port+"}\n", 1)
	writeConfig(t, cfgPath, body)
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	m, err := NewMain(context.Background(), cfg, Options{Stderr: &syncBuffer{}})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer m.Close(context.Background())

	var out, errb bytes.Buffer
	if code := run([]string{"healthcheck", "-c", cfgPath}, &out, &errb); code != 0 {
		t.Fatalf("healthcheck of a ready daemon on :%s: exit %d, %s", port, code, errb.String())
	}
	// A bad edit: the file does not load, but http.listen is still read.
	broken := filepath.Join(dir, "broken.yaml")
	writeConfig(t, broken, body+"bogus_key: 1\n")
	if code := run([]string{"healthcheck", "-c", broken}, &out, &errb); code != 0 {
		t.Fatalf("healthcheck with a job file that does not load: exit %d, %s", code, errb.String())
	}
	// Nothing listens on the configured port: the failure names the URL probed.
	other := strings.TrimPrefix(freePort(t), "127.0.0.1:")
	t.Setenv("OPSD_TEST_HC_LISTEN", "0.0.0.0:"+other)
	errb.Reset()
	if code := run([]string{"healthcheck", "-c", cfgPath}, &out, &errb); code != 1 || !strings.Contains(errb.String(), "127.0.0.1:"+other+"/health/ready") {
		t.Fatalf("healthcheck with nothing on :%s: exit %d, %s", other, code, errb.String())
	}
}
