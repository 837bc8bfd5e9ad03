package main

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"

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
