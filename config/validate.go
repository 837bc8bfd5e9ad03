package config

import (
	"bytes"
	"crypto/x509"
	"fmt"
	"net"
	"net/url"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"filippo.io/age"

	"github.com/wopr-network/opsd/internal/schedule"
)

// Kinds returns the job kinds the schema knows, sorted.
func Kinds() []string {
	var out []string
	t := reflect.TypeOf(Job{})
	for i := 0; i < t.NumField(); i++ {
		if k := t.Field(i).Tag.Get("kind"); k != "" {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

var (
	nameRe  = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]*$`)
	labelRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)
)

// Validate checks everything decoding cannot: required fields, ranges, schedules, kinds,
// duplicates. Each problem names the YAML path and line.
func (c *Config) Validate() []FieldError {
	var errs []FieldError
	bad := c.reporter(&errs)
	between := inRange(bad)

	c.validateCoordination(bad)
	if c.NodeID == "" {
		bad("node_id", "is required")
	} else if !labelRe.MatchString(c.NodeID) {
		bad("node_id", "%q may only hold letters, digits, '.', '_' and '-'", c.NodeID)
	}
	if c.MemoryLimit != 0 && c.MemoryLimit < 16<<20 {
		bad("memory_limit", "must be 0 (no limit) or at least 16MiB, got %d bytes", c.MemoryLimit)
	}
	if len(c.Jobs) > MaxJobs {
		bad("jobs", "must list at most %d jobs, got %d", MaxJobs, len(c.Jobs))
	}
	if _, err := time.LoadLocation(c.Timezone); err != nil {
		bad("timezone", "unknown time zone %q", c.Timezone)
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		bad("log.level", "must be debug, info, warn or error, got %q", c.Log.Level)
	}
	switch c.Log.Format {
	case "auto", "json", "console":
	default:
		bad("log.format", "must be auto, json or console, got %q", c.Log.Format)
	}
	if _, port, err := net.SplitHostPort(c.HTTP.Listen); err != nil && c.HTTP.Listen != "" {
		bad("http.listen", "invalid listen address %q (use host:port, e.g. 127.0.0.1:9100)", c.HTTP.Listen)
	} else if err == nil && !validPort(port, 0) {
		bad("http.listen", "port %q must be a number between 0 and 65535", port)
	}
	if t := c.HTTP.AdminToken.Value(); t != "" && len(t) < MinAdminToken {
		bad("http.admin_token", "is %d bytes; an admin token must be at least %d (e.g. openssl rand -hex 24)", len(t), MinAdminToken)
	}
	if c.State.Path == "" {
		bad("state.path", "is required")
	}
	if c.State.StaleAfter <= 0 {
		bad("state.stale_after", "must be positive")
	}
	if c.State.KeepRuns < 0 {
		bad("state.keep_runs", "must be 0 (keep everything) or more, got %d", c.State.KeepRuns)
	}
	switch c.Storage.Backend {
	case "local":
		if c.Storage.Local.Path == "" {
			bad("storage.local.path", "is required for the local backend")
		}
	case "s3":
		s := c.Storage.S3
		if s.Endpoint == "" {
			bad("storage.s3.endpoint", "is required (or set DO_SPACES_REGION)")
		} else if strings.Contains(s.Endpoint, "://") || strings.Contains(s.Endpoint, "/") {
			bad("storage.s3.endpoint", "must be host[:port] without a scheme or path, got %q (TLS is set with storage.s3.tls)", s.Endpoint)
		} else if msg := checkEndpoint(s.Endpoint); msg != "" {
			bad("storage.s3.endpoint", "%s, got %q", msg, s.Endpoint)
		}
		if s.CAFile != "" {
			if b, err := readRegular(s.CAFile, 1<<20); err != nil {
				bad("storage.s3.ca_file", "cannot read %s: %v", s.CAFile, err)
			} else if !x509.NewCertPool().AppendCertsFromPEM(b) {
				bad("storage.s3.ca_file", "%s holds no PEM certificate", s.CAFile)
			}
		}
		if s.AccessKey == "" {
			bad("storage.s3.access_key", "is required (or set DO_SPACES_ACCESS_KEY or access_key_file)")
		}
		if s.SecretKey == "" {
			bad("storage.s3.secret_key", "is required (or set DO_SPACES_SECRET_KEY or secret_key_file)")
		}
		if msg := checkBucket(s.Bucket); msg != "" {
			bad("storage.s3.bucket", "invalid bucket name %q: %s", s.Bucket, msg)
		}
		if s.PartSize < 5<<20 || s.PartSize > 5<<30 {
			bad("storage.s3.part_size", "must be between 5MiB and 5GiB, got %d bytes", s.PartSize)
		}
		if s.UploadMemory != 0 && (s.UploadMemory < 2*s.PartSize || s.UploadMemory > 4<<30) {
			bad("storage.s3.upload_memory", "must be between twice part_size (%d bytes) and 4GiB, got %d bytes", 2*s.PartSize, s.UploadMemory)
		}
		if s.Parallel < 1 || s.Parallel > 16 {
			bad("storage.s3.parallel", "must be between 1 and 16, got %d", s.Parallel)
		}
		between("storage.s3.deletes_per_second", s.DeletesPerSec, 1, 1000)
	default:
		bad("storage.backend", "must be local or s3, got %q", c.Storage.Backend)
	}
	if dsn := c.Sentry.DSN.Value(); dsn != "" {
		if u, err := url.Parse(dsn); err != nil || u.Scheme == "" || u.Host == "" || u.User == nil {
			bad("sentry.dsn", "is not a valid DSN (expected https://KEY@HOST/PROJECT)")
		}
	}
	if c.Sentry.SampleRate < 0 || c.Sentry.SampleRate > 1 {
		bad("sentry.sample_rate", "must be between 0 and 1")
	}
	between("scheduler.max_concurrent", c.Scheduler.MaxConcurrent, 1, 64)
	if c.Scheduler.ShutdownTimeout <= 0 {
		bad("scheduler.shutdown_timeout", "must be positive")
	}
	if c.Reload.Interval < Duration(100*time.Millisecond) {
		bad("reload.interval", "must be at least 100ms")
	}
	for _, name := range c.TierNames() {
		t, p := c.Tiers[name], "tiers."+name
		if !nameRe.MatchString(name) {
			bad(p, "invalid tier name %q", name)
		}
		if t.KeepDaily < 0 || t.KeepWeekly < 0 || t.OnDemandMax < 0 || t.RetentionDays < 0 {
			bad(p, "counts and days must not be negative")
		} else {
			between(p+".keep_daily", t.KeepDaily, 0, MaxKeep)
			between(p+".keep_weekly", t.KeepWeekly, 0, MaxKeep)
			between(p+".on_demand_max", t.OnDemandMax, 0, MaxKeep)
			between(p+".retention_days", t.RetentionDays, 0, MaxDays)
		}
	}
	if _, ok := c.Tiers["free"]; !ok {
		bad("tiers", "must define the free tier (containers without a tier label use it)")
	}

	if c.Alerts.Interval < Duration(time.Second) {
		bad("alerts.interval", "must be at least 1s")
	}
	errs = append(errs, c.validatePostgresAlerts()...)
	presets := []string{"gateway-error-rate", "credit-deduction-spike", "sev1-billing-pipeline", "sev1-payment-processing", "sev1-inference-gateway-down"}
	alertNames := map[string]bool{}
	for i, r := range c.Alerts.Rules {
		p := fmt.Sprintf("alerts.rules[%d]", i)
		if r.Name == "" {
			bad(p+".name", "is required")
		} else if alertNames[r.Name] {
			bad(p+".name", "duplicate alert name %q", r.Name)
		}
		alertNames[r.Name] = true
		if !slices.Contains(AlertKinds, r.Kind) {
			bad(p+".kind", "unknown alert kind %q (one of %s)", r.Kind, strings.Join(AlertKinds, ", "))
			continue
		}
		if !slices.Contains([]string{">", ">=", "<", "<=", "=="}, r.Op) {
			bad(p+".op", "must be one of > >= < <= ==, got %q", r.Op)
		}
		if r.Severity != "" && r.Severity != "critical" && r.Severity != "error" && r.Severity != "warning" {
			bad(p+".severity", "must be critical, error or warning, got %q", r.Severity)
		}
		switch r.Kind {
		case "preset":
			if !slices.Contains(presets, r.Preset) {
				bad(p+".preset", "unknown preset %q (one of %s)", r.Preset, strings.Join(presets, ", "))
			}
			if c.Alerts.GatewayDB == "" && r.DB == "" && c.Alerts.PostgresDSN == "" {
				bad(p+".db", "presets read gateway_metrics: set alerts.gateway_db, alerts.postgres_dsn or db")
			}
		case "sql":
			if r.DB == "" {
				bad(p+".db", "is required")
			}
			if r.Query == "" {
				bad(p+".query", "is required")
			}
			if r.Threshold == nil {
				bad(p+".threshold", "is required")
			}
		case "http_json":
			if u, err := url.Parse(r.URL.Value()); r.URL == "" || err != nil || (u.Scheme != "http" && u.Scheme != "https") {
				bad(p+".url", "must be an http or https URL")
			}
			if r.Path == "" {
				bad(p+".path", "is required (e.g. gateway.last5m.errorRate)")
			}
			if r.Threshold == nil {
				bad(p+".threshold", "is required")
			}
		case "system":
			if r.Resource != "cpu" && r.Resource != "memory" && r.Resource != "disk" {
				bad(p+".resource", "must be cpu, memory or disk, got %q", r.Resource)
			}
		case "job_failing":
			between(p+".failures", r.Failures, 0, 1000)
		}
	}
	if pd := c.Alerts.Notify.PagerDuty; pd.URL != "" {
		if u, err := url.Parse(pd.URL); err != nil || u.Host == "" {
			bad("alerts.notify.pagerduty.url", "must be a URL")
		}
	}
	if w := c.Alerts.Notify.Webhook; w.URL != "" {
		if u, err := url.Parse(w.URL.Value()); err != nil || u.Host == "" {
			bad("alerts.notify.webhook.url", "must be a URL")
		}
	}

	names := map[string]int{}
	known := Kinds()
	schedules := map[string]error{}
	for i, j := range c.Jobs {
		p := fmt.Sprintf("jobs[%d]", i)
		switch {
		case j.Name == "":
			bad(p+".name", "is required")
		case !nameRe.MatchString(j.Name):
			bad(p+".name", "%q may only hold lowercase letters, digits, '.', '_' and '-'", j.Name)
		default:
			if first, dup := names[j.Name]; dup {
				bad(p+".name", "duplicate job name %q (first used by jobs[%d])", j.Name, first)
			} else {
				names[j.Name] = i
			}
		}
		switch {
		case j.Kind == "":
			bad(p+".kind", "is required (one of %s)", strings.Join(known, ", "))
		case !slices.Contains(known, j.Kind):
			bad(p+".kind", "unknown job kind %q (one of %s)", j.Kind, strings.Join(known, ", "))
		}
		if j.Schedule == "" {
			bad(p+".schedule", "is required (cron, @daily, @every 6h, ...)")
		} else if err, seen := schedules[j.Schedule]; seen && err != nil {
			bad(p+".schedule", "%v", err)
		} else if !seen {
			_, err := schedule.Parse(j.Schedule)
			schedules[j.Schedule] = err // many jobs share a schedule: parse each one once
			if err != nil {
				bad(p+".schedule", "%v", err)
			}
		}
		if j.Timeout <= 0 {
			bad(p+".timeout", "must be positive")
		}
		errs = append(errs, c.validateKind(p, j)...)
		errs = append(errs, c.validateTierSources(p, j)...)
		errs = append(errs, c.validateOrphanKeep(p, j)...)
	}
	return errs
}

func (c *Config) validateKind(p string, j Job) []FieldError {
	c2 := c
	var errs []FieldError
	bad := c.reporter(&errs)
	between := inRange(bad)
	switch {
	case j.PostgresBackup != nil || j.PostgresDrill != nil:
		errs = append(errs, c.validatePostgres(p, j)...)
	case j.HTTPPing != nil:
		s := j.HTTPPing
		if s.URL == "" {
			bad(p+".url", "is required")
		} else if u, err := url.Parse(s.URL.Value()); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad(p+".url", "must be an http or https URL")
		}
		if s.Method != "GET" && s.Method != "POST" && s.Method != "HEAD" {
			bad(p+".method", "must be GET, POST or HEAD, got %q", s.Method)
		}
		if s.ExpectedStatus != 0 && (s.ExpectedStatus < 100 || s.ExpectedStatus > 599) {

			bad(p+".expected_status", "must be an HTTP status code, got %d", s.ExpectedStatus)
		}
	case j.Noop != nil:
		if j.Noop.Sleep < 0 {
			bad(p+".sleep", "must not be negative")
		}
	case j.SQLiteDrill != nil:
		d := j.SQLiteDrill
		if d.Prefix != "" && !strings.HasSuffix(d.Prefix, "/") {
			bad(p+".prefix", "must end with /, got %q", d.Prefix)
		}
		if len(d.Databases) == 0 {
			bad(p+".databases", "must list at least one database")
		}
		seen := map[string]bool{}
		for k, db := range d.Databases {
			dp := fmt.Sprintf("%s.databases[%d]", p, k)
			if db.Name == "" {
				bad(dp+".name", "is required")
			} else if seen[db.Name] {
				bad(dp+".name", "duplicate database name %q", db.Name)
			}
			seen[db.Name] = true
		}
		if d.IdentityFile != "" {
			if msg := checkIdentityFile(d.IdentityFile); msg != "" {
				bad(p+".identity_file", "%s", msg)
			}
		}
		if d.RTOBreach != "fail" && d.RTOBreach != "warn" {
			bad(p+".rto_breach", "must be fail or warn, got %q", d.RTOBreach)
		}
		if d.Parallel < 1 || d.Parallel > 16 {
			bad(p+".parallel", "must be between 1 and 16, got %d", d.Parallel)
		}
		if d.RTOTargetDB <= 0 || d.RTOTargetTotal <= 0 {
			bad(p+".rto_target_total", "objectives must be positive")
		}
		between(p+".lookback", d.Lookback, 1, MaxDays)
	case j.OffsiteVerify != nil:
		v := j.OffsiteVerify
		if v.Prefix != "" && !strings.HasSuffix(v.Prefix, "/") {
			bad(p+".prefix", "must end with /, got %q", v.Prefix)
		}
		if len(v.Databases) == 0 {
			bad(p+".databases", "must list at least one database")
		}
		between(p+".dates", v.Dates, 1, MaxDays)
		if v.MaxAge <= 0 {
			bad(p+".max_age", "must be positive")
		}
	case j.ContainerExport != nil:
		c := j.ContainerExport
		if c.Compression != "gzip" && c.Compression != "zstd" {
			bad(p+".compression", "must be gzip or zstd, got %q", c.Compression)
		}
		errs = append(errs, c2.validateKey(p+".key", c.Key, []string{"{container}"}, []string{"{container}", "{date}", "{node}"})...)
		if !c.ChangedOnly && !strings.Contains(c.Key, "{date}") {
			bad(p+".key", "a nightly key template must contain {date}, or every night overwrites the last")
		}
		errs = append(errs, c2.validateEncryption(p+".encryption", c.Encryption)...)
		if c.Parallel < 1 || c.Parallel > 16 {
			bad(p+".parallel", "must be between 1 and 16, got %d", c.Parallel)
		}
	case j.DirSnapshot != nil:
		d := j.DirSnapshot
		if d.Compression != "gzip" && d.Compression != "zstd" {
			bad(p+".compression", "must be gzip or zstd, got %q", d.Compression)
		}
		errs = append(errs, c2.validateKey(p+".key", d.Key, []string{"{instance}"}, []string{"{instance}", "{date}", "{time}", "{node}"})...)
		if !strings.Contains(d.Key, "{date}") && !strings.Contains(d.Key, "{time}") {
			bad(p+".key", "a snapshot key template must contain {date} or {time}, or every run overwrites the last")
		}
		errs = append(errs, c2.validateEncryption(p+".encryption", d.Encryption)...)
		if _, ok := c2.Tiers[d.Tier]; !ok {
			bad(p+".tier", "unknown tier %q (known: %s)", d.Tier, strings.Join(c2.TierNames(), ", "))
		}
		if d.Parallel < 1 || d.Parallel > 16 {
			bad(p+".parallel", "must be between 1 and 16, got %d", d.Parallel)
		}
	case j.NodeDrill != nil:
		j.NodeDrill.validate(p, bad)
	case j.ContainerDrill != nil:
		d := j.ContainerDrill
		if d.Prefix != "" && !strings.HasSuffix(d.Prefix, "/") {
			bad(p+".prefix", "must end with /, got %q", d.Prefix)
		}
		between(p+".sample", d.Sample, 0, MaxKeep)
		if len(d.ProbeCmd) == 0 {
			bad(p+".probe_cmd", "must not be empty")
		}
		if d.RTOBreach != "fail" && d.RTOBreach != "warn" {
			bad(p+".rto_breach", "must be fail or warn, got %q", d.RTOBreach)
		}
		if d.IdentityFile != "" {
			if msg := checkIdentityFile(d.IdentityFile); msg != "" {
				bad(p+".identity_file", "%s", msg)
			}
		}
	case j.Prune != nil:
		if len(j.Prune.Rules) == 0 {
			bad(p+".rules", "must list at least one rule")
		}
		for k, r := range j.Prune.Rules {
			rp := fmt.Sprintf("%s.rules[%d]", p, k)
			if !strings.HasSuffix(r.Prefix, "/") {
				bad(rp+".prefix", "must end with /, got %q", r.Prefix)
			}
			if r.Sets && r.Depth != 0 {
				bad(rp+".depth", "sets and depth exclude each other")
			}
			between(rp+".depth", r.Depth, 0, 16)
			switch r.TierPolicy {
			case "", "nightly", "on_demand":
			default:
				bad(rp+".tier_policy", "must be nightly or on_demand, got %q", r.TierPolicy)
			}
			if r.KeepLast < 0 || r.KeepDaily < 0 || r.KeepWeekly < 0 || r.KeepMonthly < 0 || r.KeepWithin < 0 {
				bad(rp, "keep counts and keep_within must not be negative")
			} else {
				between(rp+".keep_last", r.KeepLast, 0, MaxKeep)
				between(rp+".keep_daily", r.KeepDaily, 0, MaxKeep)
				between(rp+".keep_weekly", r.KeepWeekly, 0, MaxKeep)
				between(rp+".keep_monthly", r.KeepMonthly, 0, MaxKeep)
			}
			if r.MinKeep != nil && *r.MinKeep < 1 {
				bad(rp+".min_keep", "must be at least 1: a target is never pruned empty")
			} else if r.MinKeep != nil {
				between(rp+".min_keep", *r.MinKeep, 1, MaxKeep)
			}
			if r.TierPolicy == "" && r.KeepLast+r.KeepDaily+r.KeepWeekly+r.KeepMonthly == 0 && r.KeepWithin == 0 {
				bad(rp, "has no keep rule (keep_last, keep_daily, keep_weekly, keep_monthly, keep_within or tier_policy): it would keep only min_keep backups")
			}
			// Each rule prunes its whole prefix alone: a rule inside another's prefix would keep
			// what the outer rule deletes anyway (and the outer one's debris and foreign
			// objects would be planned twice).
			for o := range k {
				if q := j.Prune.Rules[o].Prefix; strings.HasPrefix(r.Prefix, q) || strings.HasPrefix(q, r.Prefix) {
					bad(rp+".prefix", "%q overlaps rules[%d]'s %q: each rule prunes everything under its prefix by its own keep rules, so the other rule's would not hold", r.Prefix, o, q)
				}
			}
		}
	case j.SQLiteBackup != nil:
		s := j.SQLiteBackup
		if len(s.Databases) == 0 {
			bad(p+".databases", "must list at least one database")
		}
		dbs := map[string]bool{}
		for k, db := range s.Databases {
			dp := fmt.Sprintf("%s.databases[%d]", p, k)
			if db.Name == "" {
				bad(dp+".name", "is required")
			} else if !labelRe.MatchString(db.Name) {
				bad(dp+".name", "%q may only hold letters, digits, '.', '_' and '-'", db.Name)
			} else if dbs[db.Name] {
				bad(dp+".name", "duplicate database name %q", db.Name)
			}
			dbs[db.Name] = true
			if db.Path == "" {
				bad(dp+".path", "is required")
			}
			tables := map[string]bool{}
			for _, t := range db.Tables {
				tables[t] = true
			}
			for ci, t := range db.Critical {
				if !tables[t] {
					bad(fmt.Sprintf("%s.critical[%d]", dp, ci), "table %q is not in tables", t)
				}
			}
		}
		errs = append(errs, c.validateKey(p+".key", s.Key, []string{"{db}"}, []string{"{db}", "{date}", "{node}"})...)
		if !strings.Contains(s.Key, "{date}") {
			bad(p+".key", "a backup key template must contain {date}, or every run overwrites the last")
		}
		if s.Compression != "none" && s.Compression != "zstd" {
			bad(p+".compression", "must be none or zstd, got %q", s.Compression)
		}
		errs = append(errs, c.validateEncryption(p+".encryption", s.Encryption)...)
		if s.CopyTimeout <= 0 {
			bad(p+".copy_timeout", "must be positive")
		}
		if s.Parallel < 1 || s.Parallel > 16 {
			bad(p+".parallel", "must be between 1 and 16, got %d", s.Parallel)
		}
	}
	return errs
}

func (c *Config) validateKey(path, key string, required, allowed []string) []FieldError {
	var errs []FieldError
	bad := func(format string, args ...any) {
		errs = append(errs, FieldError{Path: path, Line: c.line(path), Msg: fmt.Sprintf(format, args...)})
	}
	for _, r := range required {
		if !strings.Contains(key, r) {
			bad("key template %q must contain %s", key, r)
		}
	}
	rest := key
	for _, a := range allowed {
		rest = strings.ReplaceAll(rest, a, "")
	}
	if i := strings.IndexAny(rest, "{}"); i >= 0 {
		bad("key template %q has an unknown placeholder (known: %s)", key, strings.Join(allowed, ", "))
	}
	if strings.HasPrefix(key, "/") || strings.Contains(key, "..") || strings.Contains(key, "//") {
		bad("key template %q must be a relative key without '..' or '//'", key)
	} else if key == "." || strings.HasPrefix(key, "./") || strings.Contains(key, "/./") || strings.HasSuffix(key, "/.") || strings.HasSuffix(key, "/") {
		bad("key template %q has an empty or '.' path element", key)
	}
	if strings.ContainsFunc(key, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		bad("key template %q holds a control character", key)
	}
	if len(key) > MaxKeyTemplate {
		bad("key template is %d bytes, more than %d (S3 keys end at 1024)", len(key), MaxKeyTemplate)
	}
	return errs
}

// MaxKeyTemplate is the longest key template accepted, in bytes.
const MaxKeyTemplate = 512

func (c *Config) validateEncryption(path string, e Encryption) []FieldError {
	var errs []FieldError
	for i, r := range e.Recipients {
		if _, err := age.ParseX25519Recipient(r); err != nil {
			p := fmt.Sprintf("%s.recipients[%d]", path, i)
			errs = append(errs, FieldError{Path: p, Line: c.line(p), Msg: "not an age recipient (expected age1...)"})
		}
	}
	if e.IdentityFile != "" {
		if msg := checkIdentityFile(e.IdentityFile); msg != "" {
			p := path + ".identity_file"
			errs = append(errs, FieldError{Path: p, Line: c.line(p), Msg: msg})
		}
	}
	return errs
}

var ageLine = regexp.MustCompile(`line (\d+)`)

// checkIdentityFile reads an age identity file (a regular file of at most MaxSecretFileSize) and
// parses it. The message never quotes the file's content: it is a private key.
func checkIdentityFile(path string) string {
	b, err := readRegular(path, MaxSecretFileSize)
	if err != nil {
		return fmt.Sprintf("cannot read %s: %v", path, err)
	}
	if _, err := age.ParseIdentities(bytes.NewReader(b)); err != nil {
		if m := ageLine.FindStringSubmatch(err.Error()); m != nil {
			return fmt.Sprintf("%s is not an age identity file: line %s is not an AGE-SECRET-KEY-1... identity", path, m[1])
		}
		return fmt.Sprintf("%s is not an age identity file (expected AGE-SECRET-KEY-1... lines)", path)
	}
	return ""
}

// Ranges of the numbers a job file holds (README: Limits and ranges).
const (
	// MinAdminToken is the shortest admin token accepted, in bytes.
	MinAdminToken = 16
	// MaxJobs is the most jobs one file may list.
	MaxJobs = 100_000
	// MaxKeep bounds every retention count (keep_*, on_demand_max, min_keep, sample).
	MaxKeep = 100_000
	// MaxDays bounds every count of days (retention_days, lookback, dates): 100 years.
	MaxDays = 36_500
)

// checkBucket applies S3's bucket naming rules; it returns what is wrong, or "".
func checkBucket(b string) string {
	switch {
	case len(b) < 3 || len(b) > 63:
		return "must be 3 to 63 characters long"
	case strings.IndexFunc(b, func(r rune) bool { return !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '.') }) >= 0:
		return "may only hold lowercase letters, digits, '.' and '-'"
	case !alnum(b[0]) || !alnum(b[len(b)-1]):
		return "must begin and end with a letter or digit"
	case strings.Contains(b, "..") || strings.Contains(b, ".-") || strings.Contains(b, "-."):
		return "must not hold '..', '.-' or '-.'"
	case net.ParseIP(b) != nil:
		return "must not be formatted as an IP address"
	case strings.HasPrefix(b, "xn--") || strings.HasPrefix(b, "sthree-"):
		return "must not begin with xn-- or sthree-"
	case strings.HasSuffix(b, "-s3alias") || strings.HasSuffix(b, "--ol-s3"):
		return "must not end with -s3alias or --ol-s3"
	}
	return ""
}

func alnum(c byte) bool { return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' }

var hostLabel = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$`)

// checkEndpoint checks an S3 endpoint is host[:port] with a valid DNS name or IP address and a
// port between 1 and 65535; it returns what is wrong, or "".
func checkEndpoint(ep string) string {
	host, port := ep, ""
	if h, p, err := net.SplitHostPort(ep); err == nil {
		host, port = h, p
		if !validPort(port, 1) {
			return "port must be a number between 1 and 65535"
		}
	} else if strings.Count(ep, ":") == 1 || strings.HasPrefix(ep, "[") {
		return "must be host or host:port"
	}
	if net.ParseIP(host) != nil {
		return ""
	}
	if len(host) > 253 {
		return "host name is longer than 253 characters"
	}
	for _, l := range strings.Split(strings.TrimSuffix(host, "."), ".") {
		if !hostLabel.MatchString(l) {
			return "host must be a DNS name (letters, digits, '-' and '.') or an IP address"
		}
	}
	return ""
}

// validPort reports whether p is a decimal port number between lo and 65535.
func validPort(p string, lo int) bool {
	n, err := strconv.Atoi(p)
	return err == nil && n >= lo && n <= 65535 && p == strconv.Itoa(n)
}

// reporter returns the function a validation reports a problem with: it appends to errs the
// problem at path, with the line of path in the file.
func (c *Config) reporter(errs *[]FieldError) func(path, format string, args ...any) {
	return func(path, format string, args ...any) {
		*errs = append(*errs, FieldError{Path: path, Line: c.line(path), Msg: fmt.Sprintf(format, args...)})
	}
}

// inRange returns the check that an integer setting lies between lo and hi (inclusive),
// reporting through bad.
func inRange(bad func(path, format string, args ...any)) func(path string, v, lo, hi int) {
	return func(path string, v, lo, hi int) {
		if v < lo || v > hi {
			bad(path, "must be between %d and %d, got %d", lo, hi, v)
		}
	}
}
