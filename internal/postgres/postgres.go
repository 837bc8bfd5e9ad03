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

// DSN is a parsed PostgreSQL connection string: a URL (postgres:// or postgresql://) or libpq's
// key=value settings (host=db user=wopr password=... dbname=wopr_platform), kept as a URL. Its
// String and errors never show the password.
type DSN struct {
	u        *url.URL
	password string
}

// ParseDSN parses a connection URL or key=value settings. Errors never include the input (it
// may hold a password).
func ParseDSN(s string) (DSN, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return DSN{}, errors.New("parse dsn: empty")
	}
	var u *url.URL
	if strings.HasPrefix(s, "postgres://") || strings.HasPrefix(s, "postgresql://") || !strings.Contains(s, "=") {
		var err error
		if u, err = url.Parse(s); err != nil {
			return DSN{}, errors.New("parse dsn: not a URL (postgresql://user:password@host:5432/dbname)")
		}
		if u.Scheme != "postgres" && u.Scheme != "postgresql" {
			return DSN{}, fmt.Errorf("parse dsn: scheme %q, want postgresql://user:password@host:5432/dbname or host=... dbname=... settings", u.Scheme)
		}
	} else {
		var err error
		if u, err = keywordURL(s); err != nil {
			return DSN{}, err
		}
	}
	q := u.Query()
	if u.Host == "" && q.Get("host") == "" {
		return DSN{}, errors.New("parse dsn: no host (postgresql://user:password@host:5432/dbname, or host=...)")
	}
	d := DSN{u: u}
	if u.User != nil {
		d.password, _ = u.User.Password()
		u.User = url.User(u.User.Username())
		if u.User.Username() == "" {
			u.User = nil
		}
	}
	if p := q.Get("password"); p != "" {
		d.password = p
		q.Del("password")
		u.RawQuery = encodeQuery(q)
	}
	if d.Database() == "" {
		return DSN{}, errors.New("parse dsn: no database name (postgresql://user:password@host:5432/dbname, or dbname=...)")
	}
	if _, err := pgx.ParseConfig(d.full()); err != nil {
		return DSN{}, fmt.Errorf("parse dsn %s: invalid connection settings", d)
	}
	return d, nil
}

// keywordURL turns libpq's key=value settings into the equivalent URL: host and port make the
// URL's host (a socket directory stays a host= parameter), user and password its user info,
// dbname its path, every other setting a query parameter. Values may be single-quoted, with \'
// and \\ escapes. Errors name the setting, never a value.
func keywordURL(s string) (*url.URL, error) {
	kv := map[string]string{}
	var order []string
	for i := 0; i < len(s); {
		for i < len(s) && isSpace(s[i]) {
			i++
		}
		if i == len(s) {
			break
		}
		start := i
		for i < len(s) && s[i] != '=' && !isSpace(s[i]) {
			i++
		}
		key := s[start:i]
		for i < len(s) && isSpace(s[i]) {
			i++
		}
		if key == "" || i == len(s) || s[i] != '=' {
			// Not even the name: a malformed string may have run a password into it.
			return nil, fmt.Errorf("parse dsn: setting %d has no =value (host=... user=... password=... dbname=...)", len(order)+1)
		}
		i++
		for i < len(s) && isSpace(s[i]) {
			i++
		}
		var v strings.Builder
		if i < len(s) && s[i] == '\'' {
			i++
			closed := false
			for i < len(s) {
				c := s[i]
				if c == '\\' && i+1 < len(s) {
					v.WriteByte(s[i+1])
					i += 2
					continue
				}
				i++
				if c == '\'' {
					closed = true
					break
				}
				v.WriteByte(c)
			}
			if !closed {
				return nil, fmt.Errorf("parse dsn: the value of setting %d has no closing quote", len(order)+1)
			}
		} else {
			for i < len(s) && !isSpace(s[i]) {
				if s[i] == '\\' && i+1 < len(s) {
					i++
				}
				v.WriteByte(s[i])
				i++
			}
		}
		if _, dup := kv[key]; !dup {
			order = append(order, key)
		}
		kv[key] = v.String()
	}
	u := &url.URL{Scheme: "postgresql"}
	q := url.Values{}
	host, port := kv["host"], kv["port"]
	if host == "" {
		host = kv["hostaddr"]
	}
	switch {
	case strings.HasPrefix(host, "/"):
		q.Set("host", host) // a Unix socket directory
		if port != "" {
			q.Set("port", port)
		}
	case host != "":
		hosts, ports := strings.Split(host, ","), strings.Split(port, ",")
		for i, h := range hosts {
			p := ""
			if i < len(ports) {
				p = ports[i]
			} else if len(ports) == 1 {
				p = ports[0]
			}
			if strings.Contains(h, ":") {
				h = "[" + h + "]" // IPv6
			}
			if p != "" {
				h += ":" + p
			}
			hosts[i] = h
		}
		u.Host = strings.Join(hosts, ",")
	}
	if user, ok := kv["user"]; ok {
		u.User = url.User(user)
	}
	if pw, ok := kv["password"]; ok {
		if u.User == nil {
			u.User = url.User("")
		}
		u.User = url.UserPassword(u.User.Username(), pw)
	}
	if db := kv["dbname"]; db != "" {
		u.Path = "/" + db
	}
	for _, k := range order {
		switch k {
		case "host", "hostaddr", "port", "user", "password", "dbname":
		default:
			q.Set(k, kv[k])
		}
	}
	u.RawQuery = encodeQuery(q)
	return u, nil
}

// encodeQuery encodes a DSN's settings as libpq reads a URI: a space is %20 (libpq takes a '+'
// as a '+', so options=-c+name=value reached the server as the setting "+name"); a '+' in a
// value is %2B already.
func encodeQuery(q url.Values) string {
	return strings.ReplaceAll(q.Encode(), "+", "%20")
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

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
