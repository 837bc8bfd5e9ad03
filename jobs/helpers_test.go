package jobs

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/wopr-network/opsd/internal/metrics"
	"github.com/wopr-network/opsd/internal/state"
	"github.com/wopr-network/opsd/internal/telemetry"
)

type rig struct {
	state   *state.Store
	metrics *metrics.Metrics
	runner  *Runner
	dir     string
}

func newRig(t *testing.T) *rig {
	t.Helper()
	dir := t.TempDir()
	st, err := state.Open(context.Background(), filepath.Join(dir, "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	m := metrics.New(prometheus.NewRegistry(), "test")
	sn, _ := telemetry.NewSentry(telemetry.SentryOptions{}, nil)
	log := zerolog.New(zerolog.NewTestWriter(t))
	return &rig{state: st, metrics: m, runner: NewRunner(st, m, sn, log, "node-1", 2), dir: dir}
}
