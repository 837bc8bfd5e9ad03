package restore

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wopr-network/opsd/internal/httpapi"
	"github.com/wopr-network/opsd/internal/state"
)

// TestWriteNodeReport: one row per container with every phase, notes and failures, planned
// containers counted in a dry run, the totals and the RTO.
func TestWriteNodeReport(t *testing.T) {
	var b bytes.Buffer
	WriteNodeReport(&b, NodeReport{FromNode: "n2", DryRun: true, Skipped: 1, Failed: 1, Bytes: 3 << 20, RTOSeconds: 12.34,
		Containers: []RecreateResult{
			{Name: "tenant_a", Outcome: "planned", Key: "nightly/n2/tenant_a/a.tar.gz", Bytes: 2048, Phases: map[string]float64{"download": 1.25}, Seconds: 1.25},
			{Name: "tenant_b", Outcome: "failed", Error: "boom", Warnings: []string{"no create spec"}},
			{Name: "tenant_c", Outcome: "skipped"},
		}})
	out := b.String()
	for _, want := range []string{
		"CONTAINER  OUTCOME  KEY", "DOWNLOAD  VERIFY  IMPORT  CREATE  START  PROBE  TOTAL",
		"tenant_a   planned  nightly/n2/tenant_a/a.tar.gz  2.0 KiB  1.2s",
		"note: tenant_b: no create spec\n", "FAIL  tenant_b: boom\n",
		"Result: 1 planned (dry run: nothing was changed), 1 skipped (already restored), 1 failed; 3.0 MiB\n",
		"RTO (node n2): 12.3s\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
}

// TestConsoleAndResult: progress lines are timestamped (and redacted on request), no bar off a
// terminal, and a restore's end is printed as OK or FAILED with its outcome and record.
func TestConsoleAndResult(t *testing.T) {
	var b bytes.Buffer
	redact := func(s string) string { return strings.ReplaceAll(s, "s3cret", "[REDACTED]") }
	c := &Console{W: &b, Redact: redact, Now: func() time.Time { return time.Date(2026, 11, 30, 20, 1, 2, 0, time.UTC) }}
	c.Line("step s3cret")
	c.RedactedLine("plan s3cret")
	if c.OnBytes() != nil {
		t.Fatal("a progress bar off a terminal")
	}
	if got, want := b.String(), "  20:01:02  step s3cret\n  20:01:02  plan [REDACTED]\n"; got != want {
		t.Fatalf("console = %q, want %q", got, want)
	}
	b.Reset()
	bar := &Console{W: &b, Bar: true}
	bar.OnBytes()(1<<20, 1<<20)
	if !strings.Contains(b.String(), "[##############################] 100%  1.0 MiB / 1.0 MiB") {
		t.Fatalf("bar = %q", b.String())
	}

	r := &Run{Kind: KindContainer, Target: "tenant_a", Key: "k"}
	b.Reset()
	r.WriteResult(&b, nil, "success", 1234567*time.Microsecond, 2*time.Second, redact)
	if got, want := b.String(), "OK  container tenant_a restored from k in 1.235s (downtime 2s)\n"; got != want {
		t.Fatalf("ok = %q, want %q", got, want)
	}
	b.Reset()
	r.WriteResult(&b, errors.New("auth s3cret"), "rolled_back", 0, 0, redact)
	if got, want := b.String(), "FAILED  auth [REDACTED]\noutcome rolled_back; the restore is recorded as 0 (opsd restores -c FILE)\n"; got != want {
		t.Fatalf("failed = %q, want %q", got, want)
	}
}

// TestWriteRestoresAndCancel: the restores table and the errors of those that did not succeed;
// Cancel stops a restore of this process and says why it cannot stop the others.
func TestWriteRestoresAndCancel(t *testing.T) {
	ctx := context.Background()
	st, err := state.Open(ctx, filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	start := time.Date(2026, 11, 30, 20, 0, 0, 0, time.UTC)
	done, err := st.StartRestore(ctx, state.Restore{Kind: KindDB, Target: "platform", Key: "platform/20261130/", RequestedBy: "cli:ops", StartedAt: start})
	if err != nil {
		t.Fatal(err)
	}
	end := start.Add(1500 * time.Millisecond)
	if err := st.FinishRestore(ctx, state.Restore{ID: done, FinishedAt: &end, Outcome: state.OutcomeRolledBack, Error: "swap failed: s3cret"}); err != nil {
		t.Fatal(err)
	}
	running, err := st.StartRestore(ctx, state.Restore{Kind: KindSnapshot, Target: "bot-1", Key: "k", RequestedBy: "cli", StartedAt: start})
	if err != nil {
		t.Fatal(err)
	}
	list, err := st.Restores(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	WriteRestores(&b, list, func(s string) string { return strings.ReplaceAll(s, "s3cret", "[REDACTED]") })
	out := b.String()
	for _, want := range []string{"ID  KIND", "SAFETY COPIES", "1   db        platform  rolled_back  2026-11-30T20:00:00Z  1.5s      cli:ops", "\nrolled_back 1: swap failed: [REDACTED]\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("restores lack %q:\n%s", want, out)
		}
	}

	var reg Registry
	reg.Reserve("restore_snapshot:bot-9")
	stopped := false
	reg.Set("restore_snapshot:bot-9", 99, func() { stopped = true })
	if err := reg.Cancel(ctx, st, 99); err != nil || !stopped {
		t.Fatalf("cancel of a restore running here: %v, stopped %v", err, stopped)
	}
	if err := reg.Cancel(ctx, st, 12345); !errors.Is(err, httpapi.ErrNotFound) {
		t.Fatalf("cancel of no restore: %v", err)
	}
	if err := reg.Cancel(ctx, st, running); !errors.Is(err, httpapi.ErrConflict) || !strings.Contains(err.Error(), "another process") {
		t.Fatalf("cancel of another process's restore: %v", err)
	}
	if err := reg.Cancel(ctx, st, done); !errors.Is(err, httpapi.ErrConflict) || !strings.Contains(err.Error(), "not running (rolled_back)") {
		t.Fatalf("cancel of an ended restore: %v", err)
	}
}
