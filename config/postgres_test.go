package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const pgJobs = `
node_id: n1
jobs:
  - name: platform-pg
    kind: postgres_backup
    schedule: "@daily"
    dsn_file: %DSNFILE%
  - name: platform-pg-drill
    kind: postgres_drill
    schedule: "@monthly"
    dsn: postgresql://opsd:drill-s3cret@127.0.0.1:5432/postgres
alerts:
  postgres_dsn: postgresql://wopr:alert-s3cret@127.0.0.1:5432/wopr_platform
`

// TestPostgresKindsDefaultsAndSecrets: dsn_file is read, defaults filled (the drill's database
// from the backup job's DSN), every DSN and password is in Secrets(), and the gateway presets
// turn on with alerts.postgres_dsn.
func TestPostgresKindsDefaultsAndSecrets(t *testing.T) {
	dir := t.TempDir()
	dsnFile := filepath.Join(dir, "dsn")
	os.WriteFile(dsnFile, []byte("postgresql://wopr:file-s3cret@postgres:5432/wopr_platform\n"), 0o600)
	c, err := parse([]byte(strings.ReplaceAll(pgJobs, "%DSNFILE%", dsnFile)), "", noEnv)
	if err != nil {
		t.Fatal(err)
	}
	b, d := c.Jobs[0].PostgresBackup, c.Jobs[1].PostgresDrill
	if b == nil || d == nil {
		t.Fatalf("settings: %+v", c.Jobs)
	}
	if b.Key != "postgres/{date}/{database}-{date}.dump" || b.Compression != "zstd" || b.DSN.Value() != "postgresql://wopr:file-s3cret@postgres:5432/wopr_platform" {
		t.Fatalf("backup: %+v", b)
	}
	if d.Database != "wopr_platform" || d.Prefix != "postgres/" || d.Jobs != 2 || d.MaintenanceWorkMemMB != 256 || len(d.Tables) != 10 || d.RTOBreach != "fail" || d.ReportKey != "drills/{date}/postgres.json" {
		t.Fatalf("drill: %+v", d)
	}
	secrets := strings.Join(c.Secrets(), " ")
	for _, s := range []string{"file-s3cret", "drill-s3cret", "alert-s3cret"} {
		if !strings.Contains(secrets, s) {
			t.Errorf("Secrets() lacks %s", s)
		}
	}
	presets := 0
	for _, r := range c.Alerts.Rules {
		if r.Kind == "preset" {
			presets++
		}
	}
	if presets != 5 {
		t.Fatalf("%d presets with alerts.postgres_dsn", presets)
	}
}

// TestPostgresInvalid: bad settings name the path and line, and a bad DSN's message never
// repeats the DSN (it may hold a password).
func TestPostgresInvalid(t *testing.T) {
	src := `
node_id: n1
jobs:
  - name: pg
    kind: postgres_backup
    schedule: "@daily"
    dsn: mysql://root:hunter2@db/x
    key: postgres/{date}.dump
    compression: gzip
  - name: drill
    kind: postgres_drill
    schedule: "@monthly"
    dsn: postgresql://opsd:pw@127.0.0.1/postgres
    database: wopr_platform
    critical: [nope]
    jobs: 99
    maintenance_work_mem_mb: -5
`
	_, err := parse([]byte(src), "", noEnv)
	var ce *Errors
	if !errors.As(err, &ce) {
		t.Fatalf("parse: %v", err)
	}
	got := err.Error()
	for _, want := range []string{
		`jobs[0].dsn (line 7): parse dsn: scheme "mysql", want postgresql://`,
		`jobs[0].key (line 8): key template "postgres/{date}.dump" must contain {database}`,
		`jobs[0].compression (line 9): must be none or zstd, got "gzip"`,
		`jobs[1].critical[0] (line 15): table "nope" is not in tables`,
		`jobs[1].jobs (line 16): must be between 1 and 16, got 99`,
		`jobs[1].maintenance_work_mem_mb (line 17): must be between 1 and 16384 (-1: the server's), got -5`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("missing %q in:\n%s", want, got)
		}
	}
	if strings.Contains(got, "hunter2") {
		t.Fatalf("password in error: %s", got)
	}
}
