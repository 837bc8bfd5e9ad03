package main

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/wopr-network/opsd/alerts"
	"github.com/wopr-network/opsd/config"
	"github.com/wopr-network/opsd/internal/postgres"
)

// defaultCreditsQuery is /admin/health's billing.creditsConsumed24h (:now in ms; at in seconds).
const defaultCreditsQuery = `SELECT COALESCE(-SUM(amount), 0) FROM credit_transactions WHERE amount < 0 AND at > :now / 1000 - 86400`

// postgresHealth fills /admin/health's gateway and billing figures from the platform's
// PostgreSQL database (alerts.postgres_dsn), with the same JSON as the SQLite sources.
func (m *Main) postgresHealth(ctx context.Context, cfg *config.Config, now time.Time, out map[string]any) {
	dsn := cfg.Alerts.PostgresDSN.Value()
	if g, err := gatewaySummaryPG(ctx, dsn, now); err == nil {
		out["gateway"] = g
	} else {
		m.log.Warn().Err(err).Msg("admin health: gateway figures")
	}
	q := cfg.Alerts.CreditsQuery
	if q == "" {
		q = defaultCreditsQuery
	}
	if v, err := alerts.QueryNumber(ctx, dsn, q, now); err == nil {
		out["billing"] = map[string]any{"creditsConsumed24h": v}
	} else {
		m.log.Warn().Err(err).Msg("admin health: billing figures")
	}
}

// gatewaySummaryPG reads gateway_metrics for the last 5 and 60 minutes from PostgreSQL.
func gatewaySummaryPG(ctx context.Context, raw string, now time.Time) (map[string]any, error) {
	dsn, err := postgres.ParseDSN(raw)
	if err != nil {
		return nil, err
	}
	c, err := dsn.Connect(ctx)
	if err != nil {
		return nil, err
	}
	defer c.Close(context.WithoutCancel(ctx))
	tx, err := c.BeginTx(ctx, pgx.TxOptions{AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	window := func(minutes int) (map[string]any, error) {
		rows, err := tx.Query(ctx, `SELECT capability, COALESCE(SUM(requests),0)::bigint, COALESCE(SUM(errors),0)::bigint FROM gateway_metrics
			WHERE minute_key > $1::bigint - $2::bigint AND capability != '__credit_failures__' GROUP BY capability ORDER BY capability`,
			now.UnixMilli(), int64(minutes)*60000)
		if err != nil {
			return nil, err
		}
		defer rows.Close()
		var reqs, errs int64
		by := map[string]any{}
		for rows.Next() {
			var c string
			var r, e int64
			if err := rows.Scan(&c, &r, &e); err != nil {
				return nil, err
			}
			reqs, errs = reqs+r, errs+e
			rate := 0.0
			if r > 0 {
				rate = float64(e) / float64(r)
			}
			by[c] = map[string]any{"requests": r, "errors": e, "errorRate": rate}
		}
		rate := 0.0
		if reqs > 0 {
			rate = float64(errs) / float64(reqs)
		}
		return map[string]any{"totalRequests": reqs, "totalErrors": errs, "errorRate": rate, "byCapability": by}, rows.Err()
	}
	l5, err := window(5)
	if err != nil {
		return nil, err
	}
	l60, err := window(60)
	if err != nil {
		return nil, err
	}
	return map[string]any{"last5m": l5, "last60m": l60}, nil
}
