package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestVerifyGates(t *testing.T) {
	dir := t.TempDir()
	mk := func(name string, stmts ...string) string {
		p := filepath.Join(dir, name)
		db, err := sql.Open("sqlite", "file:"+p)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		if _, err := db.Exec("PRAGMA user_version = 1"); err != nil {
			t.Fatal(err)
		}
		for _, s := range stmts {
			if _, err := db.Exec(s); err != nil {
				t.Fatal(err)
			}
		}
		return p
	}
	empty := filepath.Join(dir, "empty.db")
	os.WriteFile(empty, nil, 0o600)
	html := filepath.Join(dir, "html.db")
	os.WriteFile(html, []byte("<html>502 Bad Gateway</html>"), 0o600)
	noTables := mk("notables.db")
	billing := mk("billing.db", "CREATE TABLE meter_events (id INTEGER)")
	auth := mk("auth.db", "CREATE TABLE user (id TEXT)", "CREATE TABLE session (id TEXT)", "CREATE TABLE account (id TEXT)")
	want := []string{"user", "session", "account"}
	for _, c := range []struct {
		path   string
		is     error
		substr string
	}{
		{empty, ErrEmpty, "0 bytes"},
		{html, ErrNotSQLite, "no SQLite header"},
		{filepath.Join(dir, "missing.db"), ErrNotExist, ""},
		{noTables, ErrEmpty, "no tables"},
		{billing, nil, "missing tables: user, session, account (has: meter_events)"},
		{auth, nil, ""},
	} {
		_, err := Verify(context.Background(), c.path, want)
		switch {
		case c.is == nil && c.substr == "":
			if err != nil {
				t.Errorf("%s: %v", c.path, err)
			}
		case err == nil:
			t.Errorf("%s: accepted", c.path)
		case (c.is != nil && !errors.Is(err, c.is)) || !strings.Contains(err.Error(), c.substr) || !strings.HasPrefix(err.Error(), c.path):
			t.Errorf("%s: %v, want %v %q naming the path", c.path, err, c.is, c.substr)
		}
	}
}
