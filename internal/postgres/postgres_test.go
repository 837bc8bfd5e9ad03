package postgres

import (
	"os"
	"strings"
	"testing"
)

// TestParseDSN: the password comes out of the URL (user info or ?password=), String never shows
// it, and errors never repeat the DSN.
func TestParseDSN(t *testing.T) {
	cases := []struct {
		in, str, db, pw string
	}{
		{"postgresql://wopr:s3cr%3At@postgres:5432/wopr_platform", "postgresql://wopr@postgres:5432/wopr_platform", "wopr_platform", "s3cr:t"},
		{"postgres://wopr@db/x?sslmode=require&password=p%40ss", "postgres://wopr@db/x?sslmode=require", "x", "p@ss"},
		{"postgresql://wopr@db:5432/x", "postgresql://wopr@db:5432/x", "x", ""},
		// libpq's key=value settings: the same DSN, kept as a URL.
		{"host=postgres port=5432 user=wopr password=s3cr:t dbname=wopr_platform", "postgresql://wopr@postgres:5432/wopr_platform", "wopr_platform", "s3cr:t"},
		{`host = db  dbname=x user=wopr password='it\'s \\ a pass' sslmode=require`, "postgresql://wopr@db/x?sslmode=require", "x", `it's \ a pass`},
		{"dbname=x host=/var/run/postgresql user=wopr", "postgresql://wopr@/x?host=%2Fvar%2Frun%2Fpostgresql", "x", ""},
		{"host=a,b port=5432,5433 dbname=x password=p\\ w", "postgresql://a:5432,b:5433/x", "x", "p w"},
	}
	for _, c := range cases {
		d, err := ParseDSN(c.in)
		if err != nil {
			t.Fatalf("%s: %v", c.in, err)
		}
		if d.String() != c.str || d.Database() != c.db || d.Password() != c.pw {
			t.Errorf("%s: string %q db %q password %q", c.in, d.String(), d.Database(), d.Password())
		}
		if o := d.WithDatabase("other"); o.Database() != "other" || o.Password() != c.pw || d.Database() != c.db {
			t.Errorf("WithDatabase: %q %q", o.String(), d.String())
		}
	}
	for _, bad := range []string{"", "mysql://root:hunter2@db/x", "postgresql://root:hunter2@/x", "postgresql://root:hunter2@db/", "host=db password=hunter2",
		"host=db password='hunter2 dbname=x", "host=db hunter2 dbname=x", "host=db password=hunter2 dbname=x port=notaport",
		"host=db password=hunter2 dbname=x sslmode=bogus"} {
		_, err := ParseDSN(bad)
		if err == nil {
			t.Errorf("%q parsed", bad)
			continue
		}
		if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("%q: error shows the password: %v", bad, err)
		}
	}
}

// TestChildEnv: children get a pgpass file with the escaped password and no PG* or other
// variables of opsd's.
func TestChildEnv(t *testing.T) {
	t.Setenv("PGPASSWORD", "from-env")
	t.Setenv("OPSD_SECRET", "x")
	d, _ := ParseDSN(`postgresql://u:a%3Ab%5Cc@h/db`)
	env, cleanup, err := d.childEnv()
	if err != nil {
		t.Fatal(err)
	}
	var pgpass string
	for _, kv := range env {
		if strings.HasPrefix(kv, "PGPASSWORD=") || strings.HasPrefix(kv, "OPSD_SECRET=") {
			t.Fatalf("leaked %s", kv)
		}
		if p, ok := strings.CutPrefix(kv, "PGPASSFILE="); ok {
			pgpass = p
		}
	}
	b, err := os.ReadFile(pgpass)
	if err != nil || string(b) != `*:*:*:*:a\:b\\c`+"\n" {
		t.Fatalf("pgpass %q: %v", b, err)
	}
	if st, _ := os.Stat(pgpass); st.Mode().Perm() != 0o600 {
		t.Fatalf("pgpass mode %v", st.Mode())
	}
	cleanup()
	if _, err := os.Stat(pgpass); err == nil {
		t.Fatal("pgpass file left behind")
	}
}

// TestScratchSettings: the drill's session settings render as PGOPTIONS; a setting that could
// smuggle another option (a space, a backslash, no value) is refused.
func TestScratchSettings(t *testing.T) {
	got, err := pgOptions(ScratchSettings(256))
	if want := "-c synchronous_commit=off -c maintenance_work_mem=256MB"; err != nil || got != want {
		t.Fatalf("pgOptions = %q, %v; want %q", got, err, want)
	}
	if got, err := pgOptions(ScratchSettings(0)); err != nil || got != "-c synchronous_commit=off" {
		t.Fatalf("without maintenance_work_mem: %q, %v", got, err)
	}
	for _, bad := range []string{"work_mem=1MB -c fsync=off", `a=b\ c`, "novalue", "=1", "Work_mem=1"} {
		if _, err := pgOptions([]string{bad}); err == nil {
			t.Errorf("setting %q accepted", bad)
		}
	}
}
