package main

import (
	"context"
	"time"

	"github.com/wopr-network/opsd/alerts"
	"github.com/wopr-network/opsd/config"
)

// postgresHealth fills /admin/health's gateway and billing figures from the platform's
// PostgreSQL database (alerts.postgres_dsn), with the same JSON as the SQLite sources.
func (m *Main) postgresHealth(ctx context.Context, cfg *config.Config, now time.Time, out map[string]any) {
	dsn := cfg.Alerts.PostgresDSN.Value()
	if g, err := alerts.GatewaySummaryPostgres(ctx, dsn, now); err == nil {
		out["gateway"] = g
	} else {
		m.log.Warn().Err(err).Msg("admin health: gateway figures")
	}
	q := cfg.Alerts.CreditsQuery
	if q == "" {
		q = alerts.DefaultCreditsQuery
	}
	if v, err := alerts.QueryNumber(ctx, dsn, q, now); err == nil {
		out["billing"] = map[string]any{"creditsConsumed24h": v}
	} else {
		m.log.Warn().Err(err).Msg("admin health: billing figures")
	}
}
