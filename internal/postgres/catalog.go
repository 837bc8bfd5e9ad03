package postgres

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

// Table is one user table with the planner's row estimate (-1: never analyzed).
type Table struct {
	Schema       string `json:"schema"`
	Name         string `json:"name"`
	RowsEstimate int64  `json:"rowsEstimate"`
}

// QualifiedName is "name" for tables in public, else "schema.name".
func (t Table) QualifiedName() string {
	if t.Schema == "public" {
		return t.Name
	}
	return t.Schema + "." + t.Name
}

// ServerInfo is what a backup records about the server and database.
type ServerInfo struct {
	Version      string // e.g. "16.4"
	VersionNum   int    // e.g. 160004
	Major        int
	DatabaseSize int64
	Tables       []Table
}

// Querier is a connection or a transaction.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// ServerVersion returns the server's version number (160004) and major version (16).
func ServerVersion(ctx context.Context, q Querier) (int, int, string, error) {
	var num int
	var s string
	if err := q.QueryRow(ctx, "SELECT current_setting('server_version_num')::int, current_setting('server_version')").Scan(&num, &s); err != nil {
		return 0, 0, "", fmt.Errorf("server version: %w", err)
	}
	return num, num / 10000, s, nil
}

// Inspect reads the server version, the database's size and its tables with row estimates.
func Inspect(ctx context.Context, q Querier) (ServerInfo, error) {
	var info ServerInfo
	var err error
	if info.VersionNum, info.Major, info.Version, err = ServerVersion(ctx, q); err != nil {
		return info, err
	}
	if err := q.QueryRow(ctx, "SELECT pg_database_size(current_database())").Scan(&info.DatabaseSize); err != nil {
		return info, fmt.Errorf("database size: %w", err)
	}
	info.Tables, err = Tables(ctx, q)
	return info, err
}

// Tables lists the user tables (ordinary and partitioned) outside the system schemas.
func Tables(ctx context.Context, q Querier) ([]Table, error) {
	rows, err := q.Query(ctx, `SELECT n.nspname, c.relname, c.reltuples::bigint
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
		  AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%'
		ORDER BY 1, 2`)
	if err != nil {
		return nil, fmt.Errorf("list tables: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Table, error) {
		var t Table
		err := r.Scan(&t.Schema, &t.Name, &t.RowsEstimate)
		return t, err
	})
	if err != nil {
		return nil, fmt.Errorf("list tables: %w", err)
	}
	return out, nil
}

// splitName splits "schema.table" (default schema public).
func splitName(name string) (string, string) {
	if s, t, ok := strings.Cut(name, "."); ok {
		return s, t
	}
	return "public", name
}

// HasRows reports whether a table ("t" or "schema.t") holds at least one row.
func HasRows(ctx context.Context, q Querier, table string) (bool, error) {
	s, t := splitName(table)
	var ok bool
	if err := q.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM "+pgx.Identifier{s, t}.Sanitize()+")").Scan(&ok); err != nil {
		return false, fmt.Errorf("read %s: %w", table, err)
	}
	return ok, nil
}

// CountRows counts a table's rows exactly.
func CountRows(ctx context.Context, q Querier, table string) (int64, error) {
	s, t := splitName(table)
	var n int64
	if err := q.QueryRow(ctx, "SELECT count(*) FROM "+pgx.Identifier{s, t}.Sanitize()).Scan(&n); err != nil {
		return 0, fmt.Errorf("count %s: %w", table, err)
	}
	return n, nil
}

// CheckTables returns the expected tables missing and the critical tables that are empty.
func CheckTables(ctx context.Context, q Querier, expected, critical []string) (missing, empty []string, err error) {
	ts, err := Tables(ctx, q)
	if err != nil {
		return nil, nil, err
	}
	have := map[string]bool{}
	for _, t := range ts {
		have[t.QualifiedName()] = true
		have[t.Schema+"."+t.Name] = true
	}
	for _, t := range expected {
		if !have[t] {
			missing = append(missing, t)
		}
	}
	for _, t := range critical {
		if !have[t] {
			continue // reported as missing when expected
		}
		ok, err := HasRows(ctx, q, t)
		if err != nil {
			return missing, empty, err
		}
		if !ok {
			empty = append(empty, t)
		}
	}
	return missing, empty, nil
}

// DatabaseExists reports whether a database exists.
func DatabaseExists(ctx context.Context, q Querier, name string) (bool, error) {
	var ok bool
	if err := q.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&ok); err != nil {
		return false, fmt.Errorf("look up database %s: %w", name, err)
	}
	return ok, nil
}

// CreateDatabase creates an empty database from template0 (owner "" means the current role).
func CreateDatabase(ctx context.Context, c *pgx.Conn, name, owner string) error {
	sql := "CREATE DATABASE " + Quote(name) + " TEMPLATE template0"
	if owner != "" {
		sql += " OWNER " + Quote(owner)
	}
	if _, err := c.Exec(ctx, sql); err != nil {
		return fmt.Errorf("create database %s: %w", name, err)
	}
	return nil
}

// DropDatabase drops a database if it exists, disconnecting its sessions (PostgreSQL 13+).
func DropDatabase(ctx context.Context, c *pgx.Conn, name string) error {
	if _, err := c.Exec(ctx, "DROP DATABASE IF EXISTS "+Quote(name)+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("drop database %s: %w", name, err)
	}
	return nil
}

// Owner returns a database's owner.
func Owner(ctx context.Context, q Querier, name string) (string, error) {
	var owner string
	if err := q.QueryRow(ctx, "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = $1", name).Scan(&owner); err != nil {
		return "", fmt.Errorf("owner of database %s: %w", name, err)
	}
	return owner, nil
}

// AllowConnections sets whether new sessions may connect to a database.
func AllowConnections(ctx context.Context, c *pgx.Conn, name string, allow bool) error {
	if _, err := c.Exec(ctx, fmt.Sprintf("ALTER DATABASE %s ALLOW_CONNECTIONS %t", Quote(name), allow)); err != nil {
		return fmt.Errorf("alter database %s: %w", name, err)
	}
	return nil
}

// Terminate ends every other session connected to a database and returns how many there were.
func Terminate(ctx context.Context, c *pgx.Conn, name string) (int, error) {
	var n int
	err := c.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE datname = $1 AND pid <> pg_backend_pid()`, name).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("terminate sessions of %s: %w", name, err)
	}
	return n, nil
}

// Rename renames a database (nobody may be connected to it).
func Rename(ctx context.Context, c *pgx.Conn, from, to string) error {
	if _, err := c.Exec(ctx, "ALTER DATABASE "+Quote(from)+" RENAME TO "+Quote(to)); err != nil {
		return fmt.Errorf("rename database %s to %s: %w", from, to, err)
	}
	return nil
}
