package state

import (
	"context"
	"fmt"
)

// rowScanner is one row to scan: a *sql.Row or the current row of *sql.Rows.
type rowScanner interface{ Scan(...any) error }

// queryAll runs a query and scans every row it returns with scan; errors are wrapped with op
// (the error of the rows' iteration as it is).
func queryAll[T any](ctx context.Context, s *Store, op string, scan func(rowScanner) (T, error), q string, args ...any) ([]T, error) {
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", op, err)
		}
		out = append(out, v)
	}
	return out, rows.Err()
}
