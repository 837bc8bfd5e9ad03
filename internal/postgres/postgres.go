// Package postgres is opsd's side of a PostgreSQL server: the DSN (parsed once; the password
// never reaches argv, logs or errors), the server's own tools (pg_dump, pg_restore) run as child
// processes with the password in a private pgpass file, a streaming dump that only ends cleanly
// when pg_dump exited 0 and pg_restore could read what it wrote, restores with pg_restore, and the
// few catalog queries backups, drills and restores need (pgx).
package postgres

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/jackc/pgx/v5"
)

// DSN is a parsed PostgreSQL connection URL (postgres:// or postgresql://). Its String and
// errors never show the password.
type DSN struct {
	u        *url.URL
	password string
}

// ParseDSN parses a connection URL. Errors never include the URL itself (it may hold a password).
func ParseDSN(s string) (DSN, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return DSN{}, errors.New("parse dsn: empty")
	}
	u, err := url.Parse(s)
	if err != nil {
		return DSN{}, errors.New("parse dsn: not a URL (postgresql://user:password@host:5432/dbname)")
	}
	if u.Scheme != "postgres" && u.Scheme != "postgresql" {
		return DSN{}, fmt.Errorf("parse dsn: scheme %q, want postgresql:// (user:password@host:5432/dbname)", u.Scheme)
	}
	if u.Host == "" {
		return DSN{}, errors.New("parse dsn: no host (postgresql://user:password@host:5432/dbname)")
	}
	d := DSN{u: u}
	if u.User != nil {
		d.password, _ = u.User.Password()
		u.User = url.User(u.User.Username())
	}
	q := u.Query()
	if p := q.Get("password"); p != "" {
		d.password = p
		q.Del("password")
		u.RawQuery = q.Encode()
	}
	if d.Database() == "" {
		return DSN{}, errors.New("parse dsn: no database name (postgresql://user:password@host:5432/dbname)")
	}
	if _, err := pgx.ParseConfig(d.full()); err != nil {
		return DSN{}, fmt.Errorf("parse dsn %s: invalid connection settings", d)
	}
	return d, nil
}

// Database is the database the DSN names.
func (d DSN) Database() string {
	if d.u == nil {
		return ""
	}
	return strings.TrimPrefix(d.u.Path, "/")
}

// User is the role the DSN connects as.
func (d DSN) User() string {
	if d.u == nil || d.u.User == nil {
		return ""
	}
	return d.u.User.Username()
}

// Password returns the password (for redaction lists; never print it).
func (d DSN) Password() string { return d.password }

// IsZero reports whether the DSN is unset.
func (d DSN) IsZero() bool { return d.u == nil }

// WithDatabase returns the same server and credentials for another database.
func (d DSN) WithDatabase(name string) DSN {
	u := *d.u
	u.Path = "/" + name
	u.RawPath = ""
	return DSN{u: &u, password: d.password}
}

// String is the URL without the password: safe for logs, errors, argv and manifests.
func (d DSN) String() string {
	if d.u == nil {
		return ""
	}
	return d.u.String()
}

// full is the URL with the password, for pgx only.
func (d DSN) full() string {
	u := *d.u
	if d.password != "" {
		u.User = url.UserPassword(d.User(), d.password)
	}
	return u.String()
}

// Connect opens a connection to the DSN's database.
func (d DSN) Connect(ctx context.Context) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(d.full())
	if err != nil {
		return nil, fmt.Errorf("connect to %s: invalid connection settings", d)
	}
	c, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", d, redactErr(err, d.password))
	}
	return c, nil
}

// redactErr replaces the password in an error's text (belt and braces: pgx does not print it).
func redactErr(err error, password string) error {
	if err == nil || password == "" || !strings.Contains(err.Error(), password) {
		return err
	}
	return errors.New(strings.ReplaceAll(err.Error(), password, "[redacted]"))
}

// childEnv is the environment for a pg_* child process: only PATH, HOME (~/.postgresql holds
// TLS certificates), TMPDIR, TZ and the locale from the parent's (nothing else: opsd's own
// environment may hold secrets, and PG* variables would override the DSN), plus PGPASSFILE naming
// a private pgpass file holding only the password. cleanup removes the file.
func (d DSN) childEnv() (env []string, cleanup func(), err error) {
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		switch {
		case name == "PATH", name == "HOME", name == "TMPDIR", name == "TZ", name == "LANG", strings.HasPrefix(name, "LC_"):
			env = append(env, kv)
		}
	}
	if d.password == "" {
		return append(env, "PGPASSFILE="+os.DevNull), func() {}, nil
	}
	dir, err := os.MkdirTemp("", "opsd-pgpass-")
	if err != nil {
		return nil, nil, fmt.Errorf("pgpass: %w", err)
	}
	cleanup = func() { os.RemoveAll(dir) }
	esc := strings.NewReplacer(`\`, `\\`, `:`, `\:`).Replace(d.password)
	path := filepath.Join(dir, "pgpass")
	if err := os.WriteFile(path, []byte("*:*:*:*:"+esc+"\n"), 0o600); err != nil {
		cleanup()
		return nil, nil, fmt.Errorf("pgpass: %w", err)
	}
	return append(env, "PGPASSFILE="+path), cleanup, nil
}

// Quote quotes an identifier.
func Quote(name string) string { return pgx.Identifier{name}.Sanitize() }
