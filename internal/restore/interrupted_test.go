package restore

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"

	"github.com/wopr-network/opsd/internal/health"
	"github.com/wopr-network/opsd/internal/metrics"
	"github.com/wopr-network/opsd/internal/state"
)

// TestReportInterrupted: a restore left running by a process that is gone is logged at warn
// with its safety copies, counted as interrupted and made a /health problem, once.
func TestReportInterrupted(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "state.db")
	st, err := state.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	dead, err := st.StartRestore(ctx, state.Restore{Kind: KindSnapshot, Target: "bot-1", Key: "k", RequestedBy: "cli", StartedAt: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	st.RestoreSafety(ctx, dead, "the previous directory is kept at /x/bot-1.pre-restore-1")
	st.Close() // the process "dies"
	st, err = state.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()

	var log bytes.Buffer
	m := metrics.New(prometheus.NewRegistry(), "test")
	var problems health.Problems
	rep := Reporting{Log: zerolog.New(&log), Metrics: m.Restore, Problems: &problems}
	rs := ReportInterrupted(ctx, st, rep)
	if len(rs) != 1 || rs[0].ID != dead {
		t.Fatalf("interrupted: %+v", rs)
	}
	if !strings.Contains(log.String(), `"level":"warn"`) || !strings.Contains(log.String(), "/x/bot-1.pre-restore-1") {
		t.Fatalf("log: %s", log.String())
	}
	if n := testutil.ToFloat64(m.Restore.Runs.WithLabelValues(KindSnapshot, state.OutcomeInterrupted)); n != 1 {
		t.Fatalf("interrupted counter = %v", n)
	}
	if !problems.Clear("interrupted:restore_snapshot:bot-1") {
		t.Fatal("no /health problem for the interrupted restore")
	}
	if again := ReportInterrupted(ctx, st, rep); len(again) != 0 {
		t.Fatalf("reported twice: %+v", again)
	}
}
