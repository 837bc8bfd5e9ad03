package config

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"reflect"
	"regexp"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Load reads, decodes and validates a job file. Every problem found is returned at once as
// *Errors, each naming the YAML path and line.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return Parse(data, path)
}

// Parse decodes and validates a job file's bytes; file names it in errors.
func Parse(data []byte, file string) (*Config, error) {
	return parse(data, file, osLookupEnv)
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

func parse(data []byte, file string, env func(string) (string, bool)) (*Config, error) {
	cfg := Default()
	cfg.File = file
	sum := sha256.Sum256(data)
	cfg.Hash = hex.EncodeToString(sum[:])
	cfg.lines = map[string]int{}

	var root yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&root); err != nil {
		fe := FieldError{Msg: strings.TrimPrefix(err.Error(), "yaml: ")}
		if m := yamlLine.FindStringSubmatch(err.Error()); m != nil {
			fmt.Sscan(m[1], &fe.Line)
			fe.Msg = m[2]
		}
		if errors.Is(err, errEOF) || strings.Contains(err.Error(), "EOF") {
			fe.Msg = "the file is empty"
		}
		return nil, &Errors{File: file, List: []FieldError{fe}}
	}
	doc := &root
	if doc.Kind == yaml.DocumentNode && len(doc.Content) == 1 {
		doc = doc.Content[0]
	}
	d := &decoder{lines: cfg.lines, env: env}
	d.decode("", doc, reflect.ValueOf(cfg).Elem())
	cfg.resolve(d, env)
	cfg.applyDefaults()
	// A value that failed to decode is reported once, not again by validation.
	errs := d.errs
	failed := map[string]bool{}
	for _, e := range d.errs {
		failed[e.Path] = true
	}
	for _, e := range cfg.Validate() {
		if !failed[e.Path] {
			errs = append(errs, e)
		}
	}
	if len(errs) > 0 {
		sortByLine(errs)
		return nil, &Errors{File: file, List: errs}
	}
	return cfg, nil
}

var errEOF = errors.New("EOF")

func sortByLine(errs []FieldError) {
	// Stable insertion sort: file order, keeping the order of problems on one line.
	for i := 1; i < len(errs); i++ {
		for j := i; j > 0 && lineKey(errs[j]) < lineKey(errs[j-1]); j-- {
			errs[j], errs[j-1] = errs[j-1], errs[j]
		}
	}
}

func lineKey(e FieldError) int {
	if e.Line == 0 {
		return 1 << 30
	}
	return e.Line
}

// line returns the line a path was written on (0 when the value is a default).
func (c *Config) line(path string) int {
	if c.lines == nil {
		return 0
	}
	for p := path; p != ""; {
		if l, ok := c.lines[p]; ok {
			return l
		}
		i := strings.LastIndexAny(p, ".[")
		if i < 0 {
			break
		}
		p = p[:i]
	}
	return 0
}

// resolve reads *_file secrets and fills S3 settings from the platform's variables.
func (c *Config) resolve(d *decoder, env func(string) (string, bool)) {
	readSecret := func(path string, inline *Secret, file string) {
		if file == "" {
			return
		}
		if *inline != "" {
			d.fail(path, c.line(path), "set either %s or %s_file, not both", lastKey(path), lastKey(path))
			return
		}
		b, err := os.ReadFile(file)
		if err != nil {
			d.fail(path+"_file", c.line(path+"_file"), "cannot read secret file: %v", errors.Unwrap(err))
			return
		}
		*inline = Secret(strings.TrimRight(string(b), "\r\n"))
	}
	readSecret("http.admin_token", &c.HTTP.AdminToken, c.HTTP.AdminTokenFile)
	readSecret("storage.s3.access_key", &c.Storage.S3.AccessKey, c.Storage.S3.AccessKeyFile)
	readSecret("storage.s3.secret_key", &c.Storage.S3.SecretKey, c.Storage.S3.SecretKeyFile)
	readSecret("sentry.dsn", &c.Sentry.DSN, c.Sentry.DSNFile)
	readSecret("coordination.postgres.dsn", &c.Coordination.Postgres.DSN, c.Coordination.Postgres.DSNFile)
	for i := range c.Jobs {
		if p := c.Jobs[i].HTTPPing; p != nil {
			readSecret(fmt.Sprintf("jobs[%d].url", i), &p.URL, p.URLFile)
		}
	}
	readSecret("alerts.notify.pagerduty.routing_key", &c.Alerts.Notify.PagerDuty.RoutingKey, c.Alerts.Notify.PagerDuty.RoutingKeyFile)
	c.resolvePostgres(readSecret)

	s3 := &c.Storage.S3
	get := func(name string) string { v, _ := env(name); return v }
	if s3.Bucket == "" {
		s3.Bucket = get("S3_BUCKET")
	}
	if s3.Bucket == "" {
		s3.Bucket = "wopr-backups"
	}
	s3.Bucket = strings.TrimSuffix(strings.TrimPrefix(s3.Bucket, "s3://"), "/")
	if s3.Region == "" {
		s3.Region = get("DO_SPACES_REGION")
	}
	if s3.Endpoint == "" && s3.Region != "" {
		s3.Endpoint = s3.Region + ".digitaloceanspaces.com"
	}
	if s3.AccessKey == "" {
		s3.AccessKey = Secret(get("DO_SPACES_ACCESS_KEY"))
	}
	if s3.SecretKey == "" {
		s3.SecretKey = Secret(get("DO_SPACES_SECRET_KEY"))
	}
}

func lastKey(path string) string {
	if i := strings.LastIndexByte(path, '.'); i >= 0 {
		return path[i+1:]
	}
	return path
}

// DefaultJobTimeout bounds a run whose job sets no timeout.
const DefaultJobTimeout = time.Hour

// DefaultAlertRules are the rules used when alerts.rules is omitted.
func (c *Config) DefaultAlertRules() []AlertRule {
	rules := []AlertRule{
		{Name: "stale-backups", Kind: "stale_backups"},
		{Name: "job-failing", Kind: "job_failing", Failures: 3},
		{Name: "drill-failed", Kind: "drill_failed"},
		{Name: "offsite-missing", Kind: "offsite_missing"},
		{Name: "system-cpu", Kind: "system", Resource: "cpu"},
		{Name: "system-memory", Kind: "system", Resource: "memory"},
		{Name: "system-disk", Kind: "system", Resource: "disk", DiskPath: "/data"},
	}
	if _, err := os.Stat("/data"); err != nil {
		rules[len(rules)-1].DiskPath = "/"
	}
	if c.Alerts.GatewayDB != "" || c.Alerts.PostgresDSN != "" {
		for _, p := range []string{"gateway-error-rate", "credit-deduction-spike", "sev1-billing-pipeline", "sev1-payment-processing", "sev1-inference-gateway-down"} {
			rules = append(rules, AlertRule{Name: p, Kind: "preset", Preset: p})
		}
	}
	for _, j := range c.Jobs {
		if j.ContainerExport != nil {
			rules = append(rules, AlertRule{Name: "fleet-unexpected-stop", Kind: "docker_events", NamePrefix: j.ContainerExport.NamePrefix})
			break
		}
	}
	return rules
}

func (c *Config) applyDefaults() {
	c.setCoordinationDefaults()
	if c.Alerts.Interval == 0 {
		c.Alerts.Interval = Duration(time.Minute)
	}
	if c.Alerts.Rules == nil {
		c.Alerts.Rules = c.DefaultAlertRules()
	}
	for i := range c.Alerts.Rules {
		r := &c.Alerts.Rules[i]
		if r.Kind == "" && r.Preset != "" {
			r.Kind = "preset"
		}
		if r.Kind == "preset" && r.Preset == "" {
			r.Preset = r.Name
		}
		setDefault(&r.Op, ">")
		if r.Kind == "system" && r.Threshold == nil {
			t := map[string]float64{"cpu": 0.9, "memory": 0.9, "disk": 0.85}[r.Resource]
			r.Threshold = &t
		}
		if r.Kind == "system" && r.Resource == "disk" {
			setDefault(&r.DiskPath, "/data")
		}
		if r.Kind == "docker_events" {
			setDefault(&r.NamePrefix, "tenant_")
		}
	}
	platform := map[string]Database{}
	for _, db := range PlatformDatabases() {
		platform[db.Name] = db
	}
	for i := range c.Jobs {
		j := &c.Jobs[i]
		if _, set := c.lines[fmt.Sprintf("jobs[%d].timeout", i)]; !set && j.Timeout == 0 {
			j.Timeout = Duration(DefaultJobTimeout)
		}
		if s := j.SQLiteBackup; s != nil {
			if s.Databases == nil {
				s.Databases = PlatformDatabases()
			}
			for k := range s.Databases {
				db := &s.Databases[k]
				if p, ok := platform[db.Name]; ok && db.Tables == nil {
					db.Tables, db.Critical = p.Tables, p.Critical
				}
			}
			if s.Key == "" {
				s.Key = "platform/{date}/{db}-{date}.db"
			}
			if s.Compression == "" {
				s.Compression = "none"
			}
			if s.CopyTimeout == 0 {
				s.CopyTimeout = Duration(10 * time.Minute)
			}
			if s.Parallel == 0 {
				s.Parallel = 2
			}
		}
		if d := j.SQLiteDrill; d != nil {
			if d.Databases == nil {
				d.Databases = PlatformDatabases()
			}
			for k := range d.Databases {
				db := &d.Databases[k]
				if p, ok := platform[db.Name]; ok && db.Tables == nil {
					db.Tables, db.Critical = p.Tables, p.Critical
				}
			}
			setDefault(&d.RTOBreach, "fail")
			setDefault(&d.ReportKey, "drills/{date}/platform.json")
			if d.Parallel == 0 {
				d.Parallel = 3
			}
			if d.RTOTargetDB == 0 {
				d.RTOTargetDB = Duration(5 * time.Minute)
			}
			if d.RTOTargetTotal == 0 {
				d.RTOTargetTotal = Duration(15 * time.Minute)
			}
			if d.Lookback == 0 {
				d.Lookback = 14
			}
		}
		if v := j.OffsiteVerify; v != nil {
			if v.Databases == nil {
				for _, db := range PlatformDatabases() {
					v.Databases = append(v.Databases, db.Name)
				}
			}
			if v.Dates == 0 {
				v.Dates = 3
			}
			if v.MaxAge == 0 {
				v.MaxAge = Duration(26 * time.Hour)
			}
			if v.NightlyMaxAge == 0 {
				v.NightlyMaxAge = Duration(26 * time.Hour)
			}
			if v.HotMaxAge == 0 {
				v.HotMaxAge = Duration(7 * time.Hour) // 6 h plus grace
			}
		}
		if c := j.ContainerExport; c != nil {
			setDefault(&c.NamePrefix, "tenant_")
			setDefault(&c.Compression, "gzip")
			setDefault(&c.TierLabel, "wopr.tier")
			ext := ".tar.gz"
			if c.Compression == "zstd" {
				ext = ".tar"
			}
			if c.ChangedOnly {
				setDefault(&c.Key, "latest/{container}/latest"+ext)
			} else {
				setDefault(&c.Key, "nightly/{node}/{container}/{container}_{date}"+ext)
			}
			if c.Parallel == 0 {
				c.Parallel = 2
			}
		}
		if d := j.DirSnapshot; d != nil {
			setDefault(&d.BaseDir, "/data/instances")
			setDefault(&d.Compression, "gzip")
			setDefault(&d.Tier, "free")
			ext := ".tar.gz"
			if d.Compression == "zstd" {
				ext = ".tar"
			}
			setDefault(&d.Key, "nightly/{node}/{instance}/{instance}_{date}"+ext)
			if d.Parallel == 0 {
				d.Parallel = 2
			}
		}
		if c := j.ContainerDrill; c != nil {
			setDefault(&c.RTOBreach, "fail")
			if c.ProbeCmd == nil {
				c.ProbeCmd = []string{"/bin/sh", "-c", "true"}
			}
			if c.ProbeTimeout == 0 {
				c.ProbeTimeout = Duration(time.Minute)
			}
			if c.RTOTarget == 0 {
				c.RTOTarget = Duration(10 * time.Minute)
			}
		}
		if d := j.NodeDrill; d != nil {
			d.setDefaults()
		}
		if p := j.Prune; p != nil && p.Rules == nil {
			p.Rules = DefaultPruneRules()
		}
		c.postgresDefaults(j)
		if p := j.HTTPPing; p != nil && p.Method == "" {
			p.Method = "GET"
		}
	}
}

func setDefault(s *string, v string) {
	if *s == "" {
		*s = v
	}
}
