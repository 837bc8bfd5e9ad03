package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// TestTierSourceQueryDatabase: a query source reads a SQLite file or a PostgreSQL DSN (dsn_file
// read); the other kinds read no database.
func TestTierSourceQueryDatabase(t *testing.T) {
	dsnFile := filepath.Join(t.TempDir(), "dsn")
	if err := os.WriteFile(dsnFile, []byte("postgresql://u:p@h/db\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		ts             TierSource
		driver, dsn    string
		wantErrContent string
	}{
		{ts: TierSource{Kind: "label"}},
		{ts: TierSource{Kind: "query", DB: "/data/tenants.db"}, driver: "sqlite", dsn: "/data/tenants.db"},
		{ts: TierSource{Kind: "query", DSN: "postgresql://x/y"}, driver: "pgx", dsn: "postgresql://x/y"},
		{ts: TierSource{Kind: "query", DSNFile: dsnFile}, driver: "pgx", dsn: "postgresql://u:p@h/db"},
		{ts: TierSource{Kind: "query", DSNFile: dsnFile + ".missing"}, wantErrContent: "read tier_source.dsn_file"},
	} {
		driver, dsn, err := c.ts.QueryDatabase()
		if c.wantErrContent != "" {
			if err == nil || !strings.Contains(err.Error(), c.wantErrContent) {
				t.Errorf("%+v: err = %v, want %q", c.ts, err, c.wantErrContent)
			}
			continue
		}
		if err != nil || driver != c.driver || dsn != c.dsn {
			t.Errorf("%+v: (%q, %q, %v), want (%q, %q)", c.ts, driver, dsn, err, c.driver, c.dsn)
		}
	}
}

// TestTenantTierSource: the orphan policy's tenant record is the first export's query (or map
// without default) source; a label source knows no tenants.
func TestTenantTierSource(t *testing.T) {
	c := &Config{Jobs: []Job{{Name: "hot", Kind: "container_export", ContainerExport: &ContainerExportSettings{}}}}
	if _, ok := c.TenantTierSource(); ok {
		t.Fatal("a label source knows the tenants")
	}
	c.Jobs = append(c.Jobs, Job{Name: "nightly", Kind: "container_export", ContainerExport: &ContainerExportSettings{
		TierSource: &TierSource{Kind: "query", DB: "/t.db", Query: "SELECT id, tier FROM t"}}})
	ts, ok := c.TenantTierSource()
	if !ok || ts.Kind != "query" || ts.DB != "/t.db" || ts.TenantFrom != "tenant_{id}" {
		t.Fatalf("TenantTierSource = %+v, %v", ts, ok)
	}
}

// TestPostgresJobQuestions: the dumped databases (each once, enabled jobs only) and the postgres
// jobs whose client tools are missing, named by index, name and kind.
func TestPostgresJobQuestions(t *testing.T) {
	off := false
	missing := filepath.Join(t.TempDir(), "no-pg")
	c := &Config{Jobs: []Job{
		{Name: "noop", Kind: "noop"},
		{Name: "pg", Kind: "postgres_backup", PostgresBackup: &PostgresBackupSettings{DSN: "postgresql://u@h/platform", PgBinDir: missing}},
		{Name: "pg-again", Kind: "postgres_backup", PostgresBackup: &PostgresBackupSettings{DSN: "postgresql://u@h2/platform", PgBinDir: missing}, Enabled: &off},
		{Name: "pg-2", Kind: "postgres_backup", PostgresBackup: &PostgresBackupSettings{DSN: "postgresql://u@h/billing", PgBinDir: missing}},
		{Name: "drill", Kind: "postgres_drill", PostgresDrill: &PostgresDrillSettings{DSN: "postgresql://u@h/postgres", PgBinDir: missing}},
	}}
	if got, want := c.PostgresDatabases(), []string{"platform", "billing"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("PostgresDatabases = %v, want %v", got, want)
	}
	got := c.MissingPostgresTools()
	if len(got) != 3 || !strings.HasPrefix(got[0], "jobs[1] (pg, postgres_backup): ") ||
		!strings.HasPrefix(got[1], "jobs[3] (pg-2, postgres_backup): ") || !strings.HasPrefix(got[2], "jobs[4] (drill, postgres_drill): ") {
		t.Fatalf("MissingPostgresTools = %q", got)
	}
}
