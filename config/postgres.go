package config

import (
	"fmt"
	"time"

	"github.com/wopr-network/opsd/internal/postgres"
)

// PostgresBackupSettings configures the `postgres_backup` kind: pg_dump --format=custom of one
// database, streamed to the object store.
type PostgresBackupSettings struct {
	// DSN is the database's connection URL (postgresql://user:password@host:5432/dbname); or
	// DSNFile, a file holding it. The password goes to pg_dump in a private pgpass file, never argv.
	DSN     Secret `yaml:"dsn"`
	DSNFile string `yaml:"dsn_file"`
	// Key is the object key template: {database}, {date} (YYYYMMDD in the config's time zone), {node}.
	Key string `yaml:"key"`
	// Compression: zstd (default: pg_dump writes uncompressed and opsd compresses with parallel
	// zstd, several times faster than pg_dump's own gzip) or none (pg_dump compresses itself).
	Compression string     `yaml:"compression"`
	Encryption  Encryption `yaml:"encryption"`
	// PgBinDir holds pg_dump and pg_restore (default: the newest /usr/lib/postgresql/N/bin, else PATH).
	PgBinDir string `yaml:"pg_bin_dir"`
	// ConnectTimeout bounds the version check when the job is built (default 5s).
	ConnectTimeout Duration `yaml:"connect_timeout"`
}

// PostgresDrillSettings configures the `postgres_drill` kind: the newest verified dump restored
// into a scratch database on a server (created with a unique name, always dropped).
type PostgresDrillSettings struct {
	// DSN connects to the scratch server (any database on it, e.g. postgres) as a role that may
	// create databases; or DSNFile.
	DSN     Secret `yaml:"dsn"`
	DSNFile string `yaml:"dsn_file"`
	// Database is whose dumps are drilled (default: the postgres_backup job's database).
	Database string `yaml:"database"`
	Prefix   string `yaml:"prefix"` // default postgres/
	// Tables must exist in the restored database; Critical tables must also hold rows.
	Tables   []string `yaml:"tables"`
	Critical []string `yaml:"critical"`
	// Jobs is pg_restore --jobs (default 2).
	Jobs int `yaml:"jobs"`
	// MaintenanceWorkMemMB is maintenance_work_mem for the scratch restore's index builds
	// (default 256; -1 keeps the server's).
	MaintenanceWorkMemMB int    `yaml:"maintenance_work_mem_mb"`
	IdentityFile         string `yaml:"identity_file"`
	// RTOTarget is the objective for the whole drill (default 15m); RTOBreach fail (default) or warn.
	RTOTarget Duration `yaml:"rto_target"`
	RTOBreach string   `yaml:"rto_breach"`
	TempDir   string   `yaml:"temp_dir"`
	// ReportKey is where the JSON report is uploaded ({date}); "none" disables the upload.
	ReportKey string `yaml:"report_key"`
	// Lookback is how many of the newest dates are searched for a dump.
	Lookback int    `yaml:"lookback"`
	PgBinDir string `yaml:"pg_bin_dir"`
}

// PostgresTables are the platform's PostgreSQL tables a drill expects by default.
func PostgresTables() []string {
	return []string{"backup_status", "snapshots", "restore_log", "gateway_metrics", "fleet_events", "meter_events",
		"credit_transactions", "audit_log", "bot_instances", "tenant_api_keys"}
}

// PostgresCritical are the tables a drill requires to hold rows by default.
func PostgresCritical() []string { return []string{"meter_events", "credit_transactions"} }

// resolvePostgres reads the dsn_file secrets of the postgres kinds and alerts.postgres_dsn_file.
func (c *Config) resolvePostgres(readSecret func(path string, inline *Secret, file string)) {
	for i := range c.Jobs {
		if s := c.Jobs[i].PostgresBackup; s != nil {
			readSecret(fmt.Sprintf("jobs[%d].dsn", i), &s.DSN, s.DSNFile)
		}
		if s := c.Jobs[i].PostgresDrill; s != nil {
			readSecret(fmt.Sprintf("jobs[%d].dsn", i), &s.DSN, s.DSNFile)
		}
	}
	readSecret("alerts.postgres_dsn", &c.Alerts.PostgresDSN, c.Alerts.PostgresDSNFile)
}

// postgresDefaults fills the defaults of the postgres kinds.
func (c *Config) postgresDefaults(j *Job) {
	if s := j.PostgresBackup; s != nil {
		setDefault(&s.Key, "postgres/{date}/{database}-{date}.dump")
		setDefault(&s.Compression, "zstd")
		setDefault(&s.ConnectTimeout, Duration(5*time.Second))
	}
	if d := j.PostgresDrill; d != nil {
		setDefault(&d.Prefix, "postgres/")
		setDefault(&d.RTOBreach, "fail")
		setDefault(&d.ReportKey, "drills/{date}/postgres.json")
		if d.Database == "" {
			for _, o := range c.Jobs {
				if o.PostgresBackup != nil {
					if dsn, err := postgres.ParseDSN(o.PostgresBackup.DSN.Value()); err == nil {
						d.Database = dsn.Database()
						break
					}
				}
			}
		}
		if d.Tables == nil {
			d.Tables = PostgresTables()
		}
		if d.Critical == nil {
			d.Critical = PostgresCritical()
		}
		setDefault(&d.Jobs, 2)
		setDefault(&d.MaintenanceWorkMemMB, 256)
		setDefault(&d.RTOTarget, Duration(15*time.Minute))
		setDefault(&d.Lookback, 14)
	}
}

// postgresSecrets are the DSNs and their passwords (redacted wherever they could appear).
func (c *Config) postgresSecrets() []string {
	var out []string
	add := func(s Secret) {
		if s == "" {
			return
		}
		out = append(out, s.Value())
		if dsn, err := postgres.ParseDSN(s.Value()); err == nil && dsn.Password() != "" {
			out = append(out, dsn.Password())
		}
	}
	for _, j := range c.Jobs {
		if j.PostgresBackup != nil {
			add(j.PostgresBackup.DSN)
		}
		if j.PostgresDrill != nil {
			add(j.PostgresDrill.DSN)
		}
	}
	add(c.Alerts.PostgresDSN)
	return out
}

// validatePostgres checks the postgres kinds' settings and alerts.postgres_dsn.
func (c *Config) validatePostgres(p string, j Job) []FieldError {
	var errs []FieldError
	bad := c.reporter(&errs)
	checkDSN := func(path string, s Secret) {
		if s == "" {
			bad(path, "is required (postgresql://user:password@host:5432/dbname), or set %s_file", lastKey(path))
			return
		}
		if _, err := postgres.ParseDSN(s.Value()); err != nil {
			bad(path, "%v", err) // ParseDSN's errors never hold the DSN
		}
	}
	checkDir := func(path, dir string) {
		if dir == "" {
			return
		}
		if _, err := postgres.FindTools(dir); err != nil {
			bad(path, "no pg_dump in %s", dir)
		}
	}
	switch {
	case j.PostgresBackup != nil:
		s := j.PostgresBackup
		checkDSN(p+".dsn", s.DSN)
		errs = append(errs, c.validateKey(p+".key", s.Key, []string{"{database}"}, []string{"{database}", "{date}", "{node}"})...)
		if s.Compression != "none" && s.Compression != "zstd" {
			bad(p+".compression", "must be none or zstd, got %q", s.Compression)
		}
		errs = append(errs, c.validateEncryption(p+".encryption", s.Encryption)...)
		checkDir(p+".pg_bin_dir", s.PgBinDir)
		if s.ConnectTimeout <= 0 {
			bad(p+".connect_timeout", "must be positive")
		}
	case j.PostgresDrill != nil:
		d := j.PostgresDrill
		checkDSN(p+".dsn", d.DSN)
		if d.Database == "" {
			bad(p+".database", "is required (no postgres_backup job names one)")
		}
		if len(d.Prefix) == 0 || d.Prefix[len(d.Prefix)-1] != '/' {
			bad(p+".prefix", "must end with /, got %q", d.Prefix)
		}
		tables := map[string]bool{}
		for _, t := range d.Tables {
			tables[t] = true
		}
		for i, t := range d.Critical {
			if !tables[t] {
				bad(fmt.Sprintf("%s.critical[%d]", p, i), "table %q is not in tables", t)
			}
		}
		if d.Jobs < 1 || d.Jobs > 16 {
			bad(p+".jobs", "must be between 1 and 16, got %d", d.Jobs)
		}
		if d.MaintenanceWorkMemMB != -1 && (d.MaintenanceWorkMemMB < 1 || d.MaintenanceWorkMemMB > 16384) {
			bad(p+".maintenance_work_mem_mb", "must be between 1 and 16384 (-1: the server's), got %d", d.MaintenanceWorkMemMB)
		}
		if d.RTOBreach != "fail" && d.RTOBreach != "warn" {
			bad(p+".rto_breach", "must be fail or warn, got %q", d.RTOBreach)
		}
		if d.RTOTarget <= 0 {
			bad(p+".rto_target", "must be positive")
		}
		if d.Lookback < 1 {
			bad(p+".lookback", "must be at least 1")
		}
		checkDir(p+".pg_bin_dir", d.PgBinDir)
	}
	return errs
}

// validatePostgresAlerts checks alerts.postgres_dsn.
func (c *Config) validatePostgresAlerts() []FieldError {
	if c.Alerts.PostgresDSN == "" {
		return nil
	}
	if _, err := postgres.ParseDSN(c.Alerts.PostgresDSN.Value()); err != nil {
		return []FieldError{{Path: "alerts.postgres_dsn", Line: c.line("alerts.postgres_dsn"), Msg: err.Error()}}
	}
	return nil
}

// PostgresDatabases are the databases the enabled postgres_backup jobs dump, each once (offsite
// verification checks their dumps).
func (c *Config) PostgresDatabases() []string {
	var out []string
	seen := map[string]bool{}
	for _, j := range c.Jobs {
		if j.PostgresBackup == nil || !j.IsEnabled() {
			continue
		}
		if dsn, err := postgres.ParseDSN(j.PostgresBackup.DSN.Value()); err == nil && !seen[dsn.Database()] {
			seen[dsn.Database()] = true
			out = append(out, dsn.Database())
		}
	}
	return out
}

// MissingPostgresTools names the enabled postgres_backup and postgres_drill jobs whose
// PostgreSQL client tools (pg_dump, pg_restore) cannot be found on this host, one line each
// ("jobs[3] (pg, postgres_backup): ..."), for `opsd config check`.
func (c *Config) MissingPostgresTools() []string {
	var out []string
	for i, j := range c.Jobs {
		dir := ""
		switch {
		case !j.IsEnabled():
			continue
		case j.PostgresBackup != nil:
			dir = j.PostgresBackup.PgBinDir
		case j.PostgresDrill != nil:
			dir = j.PostgresDrill.PgBinDir
		default:
			continue
		}
		if _, err := postgres.FindTools(dir); err != nil {
			out = append(out, fmt.Sprintf("jobs[%d] (%s, %s): %v", i, j.Name, j.Kind, err))
		}
	}
	return out
}
