package alerts

import (
	"context"
	"database/sql"
	"time"
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
	window := func(minutes int) (map[string]any, error) {
		rows, err := db.QueryContext(ctx, `SELECT capability, COALESCE(SUM(requests),0), COALESCE(SUM(errors),0) FROM gateway_metrics
			WHERE minute_key > :now - :span AND capability != '__credit_failures__' GROUP BY capability ORDER BY capability`,
			sql.Named("now", now.UnixMilli()), sql.Named("span", int64(minutes)*60000))
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
