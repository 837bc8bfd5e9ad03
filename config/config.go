// Package config is opsd's job file: the schema, its defaults, loading with environment expansion
// and strict decoding, validation that names the YAML path and line of every problem, and the
// watcher that reloads it live.
package config

import (
	"fmt"
	"maps"
	"os"
	"slices"
	"time"

	"github.com/wopr-network/opsd/internal/schedule"
)

// Config is one job file.
type Config struct {
	// NodeID names this node in keys, metrics, status rows and Sentry tags.
	NodeID string `yaml:"node_id"`
	// Timezone is the IANA zone schedules use (default UTC). Keys' {date} is always UTC.
	Timezone string `yaml:"timezone"`
	// MemoryLimit is Go's soft memory limit for the process (0: none; GOMEMLIMIT wins when set).
	// 64MiB keeps a container export's memory flat whatever the container's size.
	MemoryLimit ByteSize `yaml:"memory_limit"`

	Log       Log             `yaml:"log"`
	HTTP      HTTP            `yaml:"http"`
	State     State           `yaml:"state"`
	Storage   Storage         `yaml:"storage"`
	Sentry    Sentry          `yaml:"sentry"`
	Docker    Docker          `yaml:"docker"`
	Scheduler Scheduler       `yaml:"scheduler"`
	Reload    Reload          `yaml:"reload"`
	Tiers     map[string]Tier `yaml:"tiers"`
	Jobs      []Job           `yaml:"jobs"`
	Alerts    Alerts          `yaml:"alerts"`
	// Coordination: fleet-wide coordination through PostgreSQL (optional).
	Coordination Coordination `yaml:"coordination"`

	// File is the path the config was loaded from ("" for Default()).
	File string `yaml:"-"`
	// Hash is the SHA-256 of the file's bytes, used to make unchanged reloads no-ops.
	Hash string `yaml:"-"`

	lines map[string]int
}

// Log configures logging.
type Log struct {
	Level  string `yaml:"level"`  // debug, info, warn, error
	Format string `yaml:"format"` // auto (console on a terminal, else JSON), json, console
}

// HTTP configures the HTTP server.
type HTTP struct {
	Listen string `yaml:"listen"`
	// AdminToken guards the admin API and job triggers (bearer token). Empty disables them.
	AdminToken     Secret `yaml:"admin_token"`
	AdminTokenFile string `yaml:"admin_token_file"`
}

// State configures opsd's own SQLite database.
type State struct {
	Path string `yaml:"path"`
	// StaleAfter: a target whose last successful backup is older than this is stale (strictly).
	StaleAfter Duration `yaml:"stale_after"`
	// KeepRuns bounds the history: each job keeps its newest keep_runs runs and reports
	// (default 1000; 0 keeps everything).
	KeepRuns int `yaml:"keep_runs"`
}

// Storage selects and configures the object store.
type Storage struct {
	Backend string  `yaml:"backend"` // local or s3
	Local   LocalFS `yaml:"local"`
	S3      S3      `yaml:"s3"`
}

// LocalFS is the filesystem object store (the embedded default).
type LocalFS struct {
	Path string `yaml:"path"`
}

// S3 is an S3-compatible object store (DigitalOcean Spaces in production).
type S3 struct {
	Endpoint       string   `yaml:"endpoint"`
	Region         string   `yaml:"region"`
	Bucket         string   `yaml:"bucket"`
	AccessKey      Secret   `yaml:"access_key"`
	AccessKeyFile  string   `yaml:"access_key_file"`
	SecretKey      Secret   `yaml:"secret_key"`
	SecretKeyFile  string   `yaml:"secret_key_file"`
	TLS            *bool    `yaml:"tls"`
	CAFile         string   `yaml:"ca_file"`
	PartSize       ByteSize `yaml:"part_size"`
	Parallel       int      `yaml:"parallel"`
	DeletesPerSec  int      `yaml:"deletes_per_second"`
	RequestTimeout Duration `yaml:"request_timeout"`
	// UploadMemory is the buffer budget all uploads share (0: 16 MiB, raised to two parts).
	UploadMemory ByteSize `yaml:"upload_memory"`
}

// UseTLS reports whether the S3 endpoint is reached over HTTPS (the default).
func (s S3) UseTLS() bool { return s.TLS == nil || *s.TLS }

// Sentry configures error and alert reporting. Without a DSN it is a no-op.
type Sentry struct {
	DSN         Secret  `yaml:"dsn"`
	DSNFile     string  `yaml:"dsn_file"`
	Environment string  `yaml:"environment"`
	SampleRate  float64 `yaml:"sample_rate"`
}

// Docker configures the Docker engine client.
type Docker struct {
	Host string `yaml:"host"` // e.g. unix:///var/run/docker.sock; empty: DOCKER_HOST or the default
}

// Scheduler configures how jobs run.
type Scheduler struct {
	// MaxConcurrent is how many job runs may execute at once across all jobs.
	MaxConcurrent int `yaml:"max_concurrent"`
	// ShutdownTimeout bounds how long running jobs get to finish on SIGTERM.
	ShutdownTimeout Duration `yaml:"shutdown_timeout"`
}

// Reload configures the config file watcher.
type Reload struct {
	Watch    *bool    `yaml:"watch"`
	Interval Duration `yaml:"interval"`
}

// Watching reports whether the file is watched for changes (the default).
func (r Reload) Watching() bool { return r.Watch == nil || *r.Watch }

// Alerts configures alert rules and notifiers.
type Alerts struct {
	// Interval between evaluations (default 60s).
	Interval Duration `yaml:"interval"`
	// GatewayDB is the platform database holding gateway_metrics (presets, /admin/health).
	GatewayDB string `yaml:"gateway_db"`
	// CreditsDB and CreditsQuery give /admin/health's billing.creditsConsumed24h (:now in ms).
	CreditsDB    string `yaml:"credits_db"`
	CreditsQuery string `yaml:"credits_query"`
	// PostgresDSN, when set, makes the gateway presets and /admin/health read gateway_metrics and
	// credit_transactions from the platform's PostgreSQL database instead (or PostgresDSNFile).
	PostgresDSN     Secret `yaml:"postgres_dsn"`
	PostgresDSNFile string `yaml:"postgres_dsn_file"`
	// Rules default to the built-ins (stale backups, failing jobs, drills, offsite, system), the
	// gateway presets when gateway_db is set, and fleet-unexpected-stop when containers are exported.
	Rules  []AlertRule `yaml:"rules"`
	Notify Notify      `yaml:"notify"`
}

// AlertRule is one alert.
type AlertRule struct {
	Name string `yaml:"name"`
	// Kind: preset, sql, http_json, docker_events, stale_backups, job_failing, drill_failed,
	// offsite_missing, system.
	Kind     string   `yaml:"kind"`
	Preset   string   `yaml:"preset"`
	For      Duration `yaml:"for"`
	Severity string   `yaml:"severity"` // critical or error (default: critical for sev1-*)
	// sql
	DB          string `yaml:"db"`
	Query       string `yaml:"query"`
	Denominator string `yaml:"denominator"`
	// sql, http_json, system
	Op        string   `yaml:"op"`
	Threshold *float64 `yaml:"threshold"`
	// http_json
	URL   Secret `yaml:"url"`
	Token Secret `yaml:"token"`
	Path  string `yaml:"path"`
	// docker_events
	NamePrefix   string   `yaml:"name_prefix"`
	ResolveAfter Duration `yaml:"resolve_after"`
	// job_failing
	Failures int `yaml:"failures"`
	// system: cpu, memory or disk (of disk_path)
	Resource string `yaml:"resource"`
	DiskPath string `yaml:"disk_path"`
}

// Notify configures where alert firings and resolutions go.
type Notify struct {
	// Sentry sends them to Sentry (when sentry.dsn is set); default true.
	Sentry    *bool     `yaml:"sentry"`
	PagerDuty PagerDuty `yaml:"pagerduty"`
	Webhook   Webhook   `yaml:"webhook"`
}

// PagerDuty configures the Events API v2 notifier.
type PagerDuty struct {
	RoutingKey     Secret `yaml:"routing_key"`
	RoutingKeyFile string `yaml:"routing_key_file"`
	URL            string `yaml:"url"` // default https://events.pagerduty.com/v2/enqueue
}

// Webhook configures the JSON webhook notifier.
type Webhook struct {
	URL   Secret `yaml:"url"`
	Token Secret `yaml:"token"`
}

// AlertKinds are the rule kinds.
var AlertKinds = []string{"preset", "sql", "http_json", "docker_events", "stale_backups", "job_failing", "drill_failed", "offsite_missing", "system"}

// Tier is a retention tier (REFERENCE.md).
type Tier struct {
	KeepDaily     int `yaml:"keep_daily"`
	KeepWeekly    int `yaml:"keep_weekly"`
	OnDemandMax   int `yaml:"on_demand_max"` // 0 = unlimited
	RetentionDays int `yaml:"retention_days"`
}

// Job is one entry of `jobs:`. Keys other than the common ones belong to the job's kind and are
// decoded into the settings field of that kind; a key no field of the kind knows is an error.
type Job struct {
	Name     string   `yaml:"name"`
	Kind     string   `yaml:"kind"`
	Schedule string   `yaml:"schedule"`
	Timeout  Duration `yaml:"timeout"`
	Enabled  *bool    `yaml:"enabled"`
	// CatchUp runs the job once at start when a scheduled time passed while opsd was down.
	CatchUp bool `yaml:"catch_up"`
	// RunAtStart runs the job once when the daemon starts (or the job is added).
	RunAtStart bool `yaml:"run_at_start"`
	// Scope: platform (once across the fleet per scheduled time) or node; default per kind.
	Scope string `yaml:"scope"`

	Noop            *NoopSettings            `yaml:"-" kind:"noop"`
	HTTPPing        *HTTPPingSettings        `yaml:"-" kind:"http_ping"`
	SQLiteBackup    *SQLiteBackupSettings    `yaml:"-" kind:"sqlite_backup"`
	SQLiteDrill     *SQLiteDrillSettings     `yaml:"-" kind:"sqlite_drill"`
	OffsiteVerify   *OffsiteVerifySettings   `yaml:"-" kind:"offsite_verify"`
	Prune           *PruneSettings           `yaml:"-" kind:"prune"`
	ContainerExport *ContainerExportSettings `yaml:"-" kind:"container_export"`
	DirSnapshot     *DirSnapshotSettings     `yaml:"-" kind:"dir_snapshot"`
	ContainerDrill  *ContainerDrillSettings  `yaml:"-" kind:"container_drill"`
	NodeDrill       *NodeDrillSettings       `yaml:"-" kind:"node_drill"`
	PostgresBackup  *PostgresBackupSettings  `yaml:"-" kind:"postgres_backup"`
	PostgresDrill   *PostgresDrillSettings   `yaml:"-" kind:"postgres_drill"`
}

// IsEnabled reports whether the job is scheduled (the default).
func (j Job) IsEnabled() bool { return j.Enabled == nil || *j.Enabled }

// ParsedSchedule returns the job's parsed schedule. Validate has checked it.
func (j Job) ParsedSchedule() (schedule.Schedule, error) { return schedule.Parse(j.Schedule) }

// NoopSettings configures the `noop` kind, a job that does nothing (for testing schedules).
type NoopSettings struct {
	Sleep Duration `yaml:"sleep"`
	Fail  bool     `yaml:"fail"`
}

// HTTPPingSettings configures the `http_ping` kind: a dead-man's-switch ping.
type HTTPPingSettings struct {
	URL            Secret `yaml:"url"`
	URLFile        string `yaml:"url_file"`
	Method         string `yaml:"method"`
	ExpectedStatus int    `yaml:"expected_status"`
}

// SQLiteBackupSettings configures the `sqlite_backup` kind.
type SQLiteBackupSettings struct {
	Databases []Database `yaml:"databases"`
	// Key is the object key template; {date} (YYYYMMDD, UTC like every key), {db}, {node}.
	Key         string     `yaml:"key"`
	Compression string     `yaml:"compression"` // none or zstd
	Encryption  Encryption `yaml:"encryption"`
	// CopyTimeout bounds the online copy of one database.
	CopyTimeout Duration `yaml:"copy_timeout"`
	// TempDir holds the consistent copies while they are checked and uploaded.
	TempDir string `yaml:"temp_dir"`
	// Parallel is how many databases are backed up at once.
	Parallel int `yaml:"parallel"`
}

// SQLiteDrillSettings configures the `sqlite_drill` kind (the platform restore drill).
type SQLiteDrillSettings struct {
	// Prefix is what the check locks against prune while it reads (default: the folder of the
	// key templates it reads, e.g. platform/). Backups are found through the key templates.
	Prefix string `yaml:"prefix"`
	// Databases to restore; path is not used. Default: the seven platform databases.
	Databases    []Database `yaml:"databases"`
	IdentityFile string     `yaml:"identity_file"`
	Parallel     int        `yaml:"parallel"`
	// RTOTargetDB and RTOTargetTotal are the objectives (defaults 5m and 15m).
	RTOTargetDB    Duration `yaml:"rto_target_db"`
	RTOTargetTotal Duration `yaml:"rto_target_total"`
	// RTOBreach: fail (default) or warn when an objective is missed.
	RTOBreach string `yaml:"rto_breach"`
	TempDir   string `yaml:"temp_dir"`
	// ReportKey is where the JSON report is uploaded ({date}); "none" disables the upload.
	ReportKey string `yaml:"report_key"`
	// Lookback is how many of the newest dates are searched for a complete set.
	Lookback int `yaml:"lookback"`
}

// ContainerDrillSettings configures the `container_drill` kind.
type ContainerDrillSettings struct {
	// Prefix is what the check locks against prune while it reads (default: the folder of the
	// key templates it reads, e.g. platform/). Backups are found through the key templates.
	Prefix string `yaml:"prefix"`
	// Tenant drills one container; sample drills N random ones; neither: all of them.
	Tenant string `yaml:"tenant"`
	Sample int    `yaml:"sample"`
	// ProbeCmd runs in the restored container and must exit 0 within probe_timeout, or with
	// probe_stays_up, still run at its end. Default: /bin/sh -c true.
	ProbeCmd     []string `yaml:"probe_cmd"`
	ProbeTimeout Duration `yaml:"probe_timeout"`
	ProbeStaysUp bool     `yaml:"probe_stays_up"`
	IdentityFile string   `yaml:"identity_file"`
	RTOTarget    Duration `yaml:"rto_target"`
	RTOBreach    string   `yaml:"rto_breach"`
	TempDir      string   `yaml:"temp_dir"`
}

// OffsiteVerifySettings configures the `offsite_verify` kind.
type OffsiteVerifySettings struct {
	// Prefix is what the check locks against prune while it reads (default: the folder of the
	// key templates it reads, e.g. platform/). Backups are found through the key templates.
	Prefix    string   `yaml:"prefix"`
	Databases []string `yaml:"databases"`
	Dates     int      `yaml:"dates"`
	MaxAge    Duration `yaml:"max_age"`
	Deep      bool     `yaml:"deep"`
	// Containers checks this node's tenant containers too (default: when the config has a
	// container_export job): a nightly backup younger than nightly_max_age, and a hot one younger
	// than hot_max_age when a changed_only export is configured.
	Containers    *bool    `yaml:"containers"`
	NightlyMaxAge Duration `yaml:"nightly_max_age"`
	HotMaxAge     Duration `yaml:"hot_max_age"`
}

// ContainerExportSettings configures the `container_export` kind (nightly, or hot with
// changed_only).
type ContainerExportSettings struct {
	// NamePrefix selects containers by name (default tenant_); Labels must all match ("" = any value).
	NamePrefix string            `yaml:"name_prefix"`
	Labels     map[string]string `yaml:"labels"`
	// Key defaults to nightly/{node}/{container}/{container}_{date}.tar.gz, or
	// latest/{container}/latest.tar.gz with changed_only.
	Key         string     `yaml:"key"`
	Compression string     `yaml:"compression"` // gzip (parallel, standard .tar.gz) or zstd
	Encryption  Encryption `yaml:"encryption"`
	ChangedOnly bool       `yaml:"changed_only"`
	TierLabel   string     `yaml:"tier_label"`
	Parallel    int        `yaml:"parallel"`
	Pause       bool       `yaml:"pause"`

	// TierSource: where each container's tier comes from (config/tiers.go; default the label).
	TierSource *TierSource `yaml:"tier_source"`
}

// DirSnapshotSettings configures the `dir_snapshot` kind (WOPR_HOME directories).
type DirSnapshotSettings struct {
	BaseDir     string     `yaml:"base_dir"`
	Key         string     `yaml:"key"`
	Compression string     `yaml:"compression"`
	Encryption  Encryption `yaml:"encryption"`
	Tier        string     `yaml:"tier"`
	Parallel    int        `yaml:"parallel"`

	// TierSource: each instance's tier from a map or a query (config/tiers.go) instead of Tier.
	TierSource *TierSource `yaml:"tier_source"`
}

// PruneSettings configures the `prune` kind.
type PruneSettings struct {
	DryRun bool `yaml:"dry_run"`
	// Grace: artifacts without a manifest younger than this are left alone (default 6h).
	Grace Duration `yaml:"grace"`
	// AbortUploadsAfter: unfinished multipart uploads older than this are aborted (default 24h).
	AbortUploadsAfter Duration `yaml:"abort_uploads_after"`
	// LockWait: how long to wait for a drill or restore on the same prefix (default 10m).
	LockWait Duration `yaml:"lock_wait"`
	// Rules default to REFERENCE.md: platform/ and postgres/ 30 days of sets, nightly/ per tier,
	// on-demand/ at most the tier's maximum, pre-restore/ 30 days.
	Rules []PruneRule `yaml:"rules"`
	// OrphanKeep: a tier-policy target whose tenant is gone from the platform's tenant record
	// (the container_export job's map or query tier source) and whose newest backup is older
	// than this is deleted whole. Unset: orphans are kept forever.
	OrphanKeep *Duration `yaml:"orphan_keep"`
}

// PruneRule is retention for one key prefix.
type PruneRule struct {
	Prefix string `yaml:"prefix"`
	// Sets: each date folder under the prefix is one backup (platform/{date}/).
	Sets bool `yaml:"sets"`
	// Depth: path elements after the prefix naming a target (nightly/{node}/{container}/: 2).
	Depth int `yaml:"depth"`
	// TierPolicy: nightly or on_demand to take the policy from the target's tier.
	TierPolicy  string   `yaml:"tier_policy"`
	KeepLast    int      `yaml:"keep_last"`
	KeepDaily   int      `yaml:"keep_daily"`
	KeepWeekly  int      `yaml:"keep_weekly"`
	KeepMonthly int      `yaml:"keep_monthly"`
	KeepWithin  Duration `yaml:"keep_within"`
	MinKeep     *int     `yaml:"min_keep"`
	// DeleteForeign: also delete objects under the prefix that opsd did not write (no upload
	// marker, no manifest) once older than grace. Off by default: they are kept and listed.
	DeleteForeign bool `yaml:"delete_foreign"`
}

// DefaultPruneRules are the REFERENCE.md retention rules.
func DefaultPruneRules() []PruneRule {
	days30 := Duration(30 * 24 * time.Hour)
	return []PruneRule{
		{Prefix: "platform/", Sets: true, KeepWithin: days30},
		{Prefix: "postgres/", Sets: true, KeepWithin: days30},
		{Prefix: "nightly/", Depth: 2, TierPolicy: "nightly"},
		{Prefix: "on-demand/", Depth: 1, TierPolicy: "on_demand"},
		{Prefix: "pre-restore/", Depth: 2, KeepWithin: days30}, // pre-restore/{node}/{target}/
	}
}

// Database is one SQLite database to back up.
type Database struct {
	Name     string   `yaml:"name"`
	Path     string   `yaml:"path"`
	Tables   []string `yaml:"tables"`
	Critical []string `yaml:"critical"`
	Optional bool     `yaml:"optional"`
}

// Encryption configures age encryption of artifacts. Only recipients (public keys) are needed to
// back up; the identity (private key) is only read by drills and restores.
type Encryption struct {
	Recipients   []string `yaml:"recipients"`
	IdentityFile string   `yaml:"identity_file"`
}

// Enabled reports whether artifacts are encrypted.
func (e Encryption) Enabled() bool { return len(e.Recipients) > 0 }

// PlatformDatabases are the seven platform databases and their usual paths (REFERENCE.md).
func PlatformDatabases() []Database {
	return []Database{
		{Name: "auth", Path: "/data/platform/auth.db", Tables: []string{"user", "session", "account"}, Critical: []string{"user", "session"}},
		{Name: "billing", Path: "/data/platform/billing.db", Tables: []string{"meter_events"}, Critical: []string{"meter_events"}},
		{Name: "credits", Path: "/data/platform/credits.db", Tables: []string{"credit_transactions"}, Critical: []string{"credit_transactions"}},
		{Name: "audit", Path: "/data/platform/audit.db", Tables: []string{"audit_log"}},
		{Name: "quotas", Path: "/data/platform/quotas.db", Tables: []string{"quota_limits"}},
		{Name: "tenant-keys", Path: "/data/platform/tenant-keys.db", Tables: []string{"tenant_keys"}},
		{Name: "snapshots", Path: "/data/snapshots.db", Tables: []string{"snapshots", "restore_log"}},
	}
}

// DefaultTiers is the REFERENCE.md tier table.
func DefaultTiers() map[string]Tier {
	return map[string]Tier{
		"free":       {KeepDaily: 3, KeepWeekly: 0, OnDemandMax: 1, RetentionDays: 7},
		"starter":    {KeepDaily: 7, KeepWeekly: 4, OnDemandMax: 5, RetentionDays: 30},
		"pro":        {KeepDaily: 7, KeepWeekly: 4, OnDemandMax: 20, RetentionDays: 90},
		"enterprise": {KeepDaily: 7, KeepWeekly: 4, OnDemandMax: 0, RetentionDays: 365},
	}
}

// Default returns the configuration every file is decoded over: a local store, UTC, the tier
// table, no jobs.
func Default() *Config {
	host, _ := os.Hostname()
	if host == "" {
		host = "node"
	}
	return &Config{
		NodeID:   host,
		Timezone: "UTC",
		Log:      Log{Level: "info", Format: "auto"},
		HTTP:     HTTP{Listen: "127.0.0.1:9100"},
		State:    State{Path: "/var/lib/opsd/state.db", StaleAfter: Duration(24 * time.Hour), KeepRuns: 1000},
		Storage: Storage{
			Backend: "local",
			Local:   LocalFS{Path: "/var/lib/opsd/store"},
			S3:      S3{PartSize: 8 << 20, Parallel: 4, DeletesPerSec: 100, RequestTimeout: Duration(5 * time.Minute)},
		},
		Sentry:    Sentry{SampleRate: 1},
		Scheduler: Scheduler{MaxConcurrent: 2, ShutdownTimeout: Duration(30 * time.Second)},
		Reload:    Reload{Interval: Duration(2 * time.Second)},
		Tiers:     DefaultTiers(),
	}
}

// Location returns the configured time zone. Validate has checked it.
func (c *Config) Location() *time.Location {
	loc, err := time.LoadLocation(c.Timezone)
	if err != nil {
		return time.UTC
	}
	return loc
}

// Job returns the job with the given name.
func (c *Config) Job(name string) (Job, bool) {
	for _, j := range c.Jobs {
		if j.Name == name {
			return j, true
		}
	}
	return Job{}, false
}

// TierNames returns the configured tier names, sorted.
func (c *Config) TierNames() []string {
	return slices.Sorted(maps.Keys(c.Tiers))
}

// Secrets returns every secret value in the config, so logs and events can redact them.
func (c *Config) Secrets() []string {
	var out []string
	for _, s := range []Secret{c.HTTP.AdminToken, c.Storage.S3.AccessKey, c.Storage.S3.SecretKey, c.Sentry.DSN, c.Coordination.Postgres.DSN} {
		if s != "" {
			out = append(out, string(s))
		}
	}
	for _, j := range c.Jobs {
		if j.HTTPPing != nil && j.HTTPPing.URL != "" {
			out = append(out, string(j.HTTPPing.URL))
		}
	}
	out = append(out, c.tierSecrets()...)
	for _, s := range []Secret{c.Alerts.Notify.PagerDuty.RoutingKey, c.Alerts.Notify.Webhook.URL, c.Alerts.Notify.Webhook.Token} {
		if s != "" {
			out = append(out, string(s))
		}
	}
	out = append(out, c.postgresSecrets()...)
	for _, r := range c.Alerts.Rules {
		for _, s := range []Secret{r.URL, r.Token} {
			if s != "" {
				out = append(out, string(s))
			}
		}
	}
	return out
}

// Secret is a string that never prints: fmt, logs and JSON show "[redacted]".
type Secret string

// String redacts the value.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return "[redacted]"
}

// GoString redacts the value for %#v.
func (s Secret) GoString() string { return fmt.Sprintf("config.Secret(%q)", s.String()) }

// MarshalText redacts the value for JSON and YAML encoders.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Value returns the secret itself, for the one place that needs it.
func (s Secret) Value() string { return string(s) }

// Duration is a time.Duration written as "90s", "30m", "6h" or "7d".
type Duration time.Duration

// D returns the duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// String formats the duration.
func (d Duration) String() string { return time.Duration(d).String() }

// ByteSize is a size written as a number of bytes or with a unit: "16MiB", "512KiB", "1GiB", "5MB".
type ByteSize int64
