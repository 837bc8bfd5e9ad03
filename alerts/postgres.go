package alerts

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/wopr-network/opsd/internal/postgres"
)

// IsPostgres reports whether a rule's db is a PostgreSQL DSN (else a SQLite path): a
// postgres:// or postgresql:// URL, or libpq's key=value settings naming a host or a database.
func IsPostgres(db string) bool {
	if strings.HasPrefix(db, "postgres://") || strings.HasPrefix(db, "postgresql://") {
		return true
	}
	for _, f := range strings.Fields(db) {
		if k, _, ok := strings.Cut(f, "="); ok && (k == "host" || k == "hostaddr" || k == "dbname") {
			return true
		}
	}
	return false
}

// numberDB runs read-only queries that return one number; :now is the evaluation time in ms.
type numberDB interface {
	number(ctx context.Context, q string, now time.Time) (float64, error)
	close()
}

// openNumbers opens db read-only: a SQLite file, or a PostgreSQL database (a read-only
// transaction) when db is a PostgreSQL DSN (IsPostgres).
func openNumbers(ctx context.Context, db string) (numberDB, error) {
	if !IsPostgres(db) {
		d, err := openReadOnly(db)
		if err != nil {
			return nil, err
		}
		return sqliteNumbers{d}, nil
	}
	dsn, err := postgres.ParseDSN(db)
	if err != nil {
		return nil, err
	}
	c, err := dsn.Connect(ctx)
	if err != nil {
		return nil, err
	}
	tx, err := c.BeginTx(ctx, pgx.TxOptions{AccessMode: pgx.ReadOnly})
	if err != nil {
		c.Close(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("begin read-only transaction on %s: %w", dsn, err)
	}
	return pgNumbers{c: c, tx: tx}, nil
}

type sqliteNumbers struct{ db *sql.DB }

func (s sqliteNumbers) number(ctx context.Context, q string, now time.Time) (float64, error) {
	return queryNumber(ctx, s.db, q, now)
}

func (s sqliteNumbers) close() { s.db.Close() }

type pgNumbers struct {
	c  *pgx.Conn
	tx pgx.Tx
}

// PostgresQuery turns a rule's query (SQLite dialect with :now) into PostgreSQL's: :now becomes
// a bigint parameter and the value a float8.
func PostgresQuery(q string) string {
	return "SELECT (" + strings.ReplaceAll(q, ":now", "$1::bigint") + ")::float8"
}

func (p pgNumbers) number(ctx context.Context, q string, now time.Time) (float64, error) {
	var v *float64
	if err := p.tx.QueryRow(ctx, PostgresQuery(q), now.UnixMilli()).Scan(&v); err != nil {
		return 0, err
	}
	if v == nil {
		return 0, nil
	}
	return *v, nil
}

func (p pgNumbers) close() {
	ctx := context.Background()
	p.tx.Rollback(ctx)
	p.c.Close(ctx)
}

// QueryNumber runs one read-only query returning a number against a SQLite file or a
// PostgreSQL URL (:now is now in ms).
func QueryNumber(ctx context.Context, db, q string, now time.Time) (float64, error) {
	d, err := openNumbers(ctx, db)
	if err != nil {
		return 0, err
	}
	defer d.close()
	return d.number(ctx, q, now)
}
