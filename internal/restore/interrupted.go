package restore

import (
	"context"
	"errors"

	"github.com/rs/zerolog"

	"github.com/wopr-network/opsd/internal/health"
	"github.com/wopr-network/opsd/internal/metrics"
	"github.com/wopr-network/opsd/internal/state"
	"github.com/wopr-network/opsd/internal/telemetry"
)

// Reporting is where ReportInterrupted reports the restores it finds interrupted.
type Reporting struct {
	Log      zerolog.Logger
	Metrics  *metrics.Restores
	Problems *health.Problems
	Sentry   *telemetry.Sentry
}

// ReportInterrupted marks the restores a process that is gone left running as interrupted and
// says so: logged at warn (the message names the safety copies and how to finish or roll
// back), counted as interrupted, a problem on /health until the same restore succeeds (the
// Runner clears it) or opsd restarts, and a Sentry event. It returns them.
func ReportInterrupted(ctx context.Context, st *state.Store, rep Reporting) []state.Restore {
	rs, err := Recover(ctx, st)
	if err != nil {
		rep.Log.Error().Err(err).Msg("cannot check for interrupted restores")
	}
	for _, r := range rs {
		run := Run{Kind: r.Kind, Target: r.Target}
		rep.Log.Warn().Int64("restore", r.ID).Str("kind", r.Kind).Str("target", r.Target).Str("safety", r.Safety).Msg(r.Error)
		rep.Metrics.Runs.WithLabelValues(r.Kind, state.OutcomeInterrupted).Inc()
		rep.Problems.Set("interrupted:"+run.Name(), r.Error)
		rep.Sentry.CaptureJobFailure(telemetry.JobFailure{Job: run.Name(), Kind: run.JobKind(), Target: r.Target, Err: errors.New(r.Error)})
	}
	return rs
}
