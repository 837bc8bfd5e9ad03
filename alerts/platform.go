package alerts

import (
	"context"
	"database/sql"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/wopr-network/opsd/internal/postgres"
)

// DefaultCreditsQuery is the credits consumed in the last 24 hours (credit_transactions.at is in
// seconds; :now in milliseconds).
const DefaultCreditsQuery = `SELECT COALESCE(-SUM(amount), 0) FROM credit_transactions WHERE amount < 0 AND at > :now / 1000 - 86400`

// CreditsConsumed runs the credits query (DefaultCreditsQuery when empty) read-only on the
// credits database (the /admin/health "billing").
func CreditsConsumed(ctx context.Context, path, query string, now time.Time) (float64, error) {
	if query == "" {
		query = DefaultCreditsQuery
	}
	db, err := openReadOnly(path)
	if err != nil {
		return 0, err
	}
	defer db.Close()
	return queryNumber(ctx, db, query, now)
}

// GatewaySummary reads the platform's gateway_metrics (read-only) for the last 5 and 60 minutes:
// requests, errors and error rate, in total and per capability (the /admin/health "gateway").
func GatewaySummary(ctx context.Context, path string, now time.Time) (map[string]any, error) {
	db, err := openReadOnly(path)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	return gatewaySummary(func(minutes int, each func(capability string, requests, errors int64) error) error {
		rows, err := db.QueryContext(ctx, `SELECT capability, COALESCE(SUM(requests),0), COALESCE(SUM(errors),0) FROM gateway_metrics
			WHERE minute_key > :now - :span AND capability != '__credit_failures__' GROUP BY capability ORDER BY capability`,
			sql.Named("now", now.UnixMilli()), sql.Named("span", int64(minutes)*60000))
		if err != nil {
			return err
		}
		defer rows.Close()
		return eachCapability(rows, each)
	})
}

// GatewaySummaryPostgres is GatewaySummary over the platform's PostgreSQL database (same JSON),
// in a read-only transaction.
func GatewaySummaryPostgres(ctx context.Context, raw string, now time.Time) (map[string]any, error) {
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
	return gatewaySummary(func(minutes int, each func(capability string, requests, errors int64) error) error {
		rows, err := tx.Query(ctx, `SELECT capability, COALESCE(SUM(requests),0)::bigint, COALESCE(SUM(errors),0)::bigint FROM gateway_metrics
			WHERE minute_key > $1::bigint - $2::bigint AND capability != '__credit_failures__' GROUP BY capability ORDER BY capability`,
			now.UnixMilli(), int64(minutes)*60000)
		if err != nil {
			return err
		}
		defer rows.Close()
		return eachCapability(rows, each)
	})
}

// capabilityRows calls each for every capability's requests and errors over the last minutes.
type capabilityRows func(minutes int, each func(capability string, requests, errors int64) error) error

// eachCapability calls each for every (capability, requests, errors) row of a query's result:
// *sql.Rows or pgx.Rows (the caller closes them).
func eachCapability(rows interface {
	Next() bool
	Scan(...any) error
	Err() error
}, each func(capability string, requests, errors int64) error) error {
	for rows.Next() {
		var c string
		var r, e int64
		if err := rows.Scan(&c, &r, &e); err != nil {
			return err
		}
		if err := each(c, r, e); err != nil {
			return err
		}
	}
	return rows.Err()
}

// gatewaySummary totals the last 5 and 60 minutes, in total and per capability.
func gatewaySummary(rows capabilityRows) (map[string]any, error) {
	rate := func(e, r int64) float64 {
		if r > 0 {
			return float64(e) / float64(r)
		}
		return 0
	}
	window := func(minutes int) (map[string]any, error) {
		var reqs, errs int64
		by := map[string]any{}
		err := rows(minutes, func(c string, r, e int64) error {
			reqs, errs = reqs+r, errs+e
			by[c] = map[string]any{"requests": r, "errors": e, "errorRate": rate(e, r)}
			return nil
		})
		return map[string]any{"totalRequests": reqs, "totalErrors": errs, "errorRate": rate(errs, reqs), "byCapability": by}, err
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
