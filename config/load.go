package config

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Limits on a job file. A job file is a few kilobytes; these bound what a hostile or broken one
// can cost to check (memory and time) and are documented in the README.
const (
	// MaxFileSize is the largest job file opsd reads.
	MaxFileSize = 4 << 20
	// MaxSecretFileSize is the largest *_file secret (tokens, keys, DSNs) or identity file.
	MaxSecretFileSize = 64 << 10
	// MaxDepth is the deepest nesting of mappings and lists a job file may have.
	MaxDepth = 32
	// MaxAliasExpansion is how many values YAML aliases (*name) may add to the document once
	// expanded, so an anchor/alias "billion laughs" file cannot grow without bound.
	MaxAliasExpansion = 100_000
)

// Load reads, decodes and validates a job file. Every problem found is returned at once as
// *Errors, each naming the YAML path and line. The file must be a regular file of at most
// MaxFileSize bytes; Load never blocks on a FIFO or device.
func Load(path string) (*Config, error) {
	data, err := readRegular(path, MaxFileSize)
	if err != nil {
		return nil, fmt.Errorf("read config %s: %w", path, err)
	}
	return Parse(data, path)
}

// Parse decodes and validates a job file's bytes; file names it in errors.
func Parse(data []byte, file string) (*Config, error) {
	return parse(data, file, osLookupEnv)
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

func parse(data []byte, file string, env func(string) (string, bool)) (*Config, error) {
	if len(data) > MaxFileSize {
		return nil, &Errors{File: file, List: []FieldError{{Msg: fmt.Sprintf("the file is %d bytes, more than the %s limit for a job file", len(data), formatSize(MaxFileSize))}}}
	}
	cfg := Default()
	cfg.File = file
	sum := sha256.Sum256(data)
	cfg.Hash = hex.EncodeToString(sum[:])
	cfg.lines = map[string]int{}

	var root yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&root); err != nil {
		return nil, &Errors{File: file, List: []FieldError{syntaxError(data, err)}}
	}
	var second yaml.Node
	if err := dec.Decode(&second); !errors.Is(err, io.EOF) {
		fe := FieldError{Line: documentLine(data, &second), Msg: "a second YAML document (after ---) is not allowed: opsd reads one document per file"}
		if err != nil {
			fe = syntaxError(data, err)
		}
		return nil, &Errors{File: file, List: []FieldError{fe}}
	}
	if fe, ok := checkTree(&root); !ok {
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
	// A value that failed to decode is reported once, not again by validation: neither the
	// value, nor the rule holding it ("has no keep rule"), nor the secret its *_file was for.
	errs := d.errs
	failed := map[string]bool{}
	for _, e := range d.errs {
		failed[e.Path] = true
		if i := strings.LastIndexByte(e.Path, '.'); i > 0 {
			failed[e.Path[:i]] = true
		}
		if p, ok := strings.CutSuffix(e.Path, "_file"); ok {
			failed[p] = true
		}
	}
	for _, e := range cfg.Validate() {
		if !failed[e.Path] {
			errs = append(errs, e)
		}
	}
	if len(errs) > 0 {
		sortByLine(errs)
		redactSecrets(errs, cfg.Secrets())
		return nil, &Errors{File: file, List: errs}
	}
	return cfg, nil
}

// redactSecrets replaces every secret value (of 6 bytes or more) quoted in a message: a secret
// that also reached a plain field (node_id: ${DO_SPACES_SECRET_KEY}) is never echoed.
func redactSecrets(errs []FieldError, secrets []string) {
	var pairs []string
	for _, s := range secrets {
		if len(s) >= 6 {
			pairs = append(pairs, s, "[redacted]")
		}
	}
	if len(pairs) == 0 {
		return
	}
	r := strings.NewReplacer(pairs...)
	for i := range errs {
		errs[i].Msg = r.Replace(errs[i].Msg)
	}
}

// syntaxError turns a YAML syntax error into a FieldError on the line of the problem. The YAML
// library names the line where the enclosing mapping or list started (a missing key on line 9 of
// a mapping from line 3 says "line 3"); the first line whose prefix of the file fails with the
// same message is the line of the problem.
func syntaxError(data []byte, err error) FieldError {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line := 0
	if m := yamlLine.FindStringSubmatch(err.Error()); m != nil {
		fmt.Sscan(m[1], &line)
		msg = m[2]
	}
	if errors.Is(err, io.EOF) || strings.Contains(err.Error(), "EOF") {
		return FieldError{Msg: "the file is empty"}
	}
	fe := FieldError{Line: problemLine(data, line, msg), Msg: msg}
	if strings.HasPrefix(msg, "unknown anchor ") {
		// The anchor's name is whatever followed a '*': it may be an unquoted secret.
		fe.Msg = "an alias (*name) refers to an anchor that is not defined (quote a value that starts with *)"
	}
	return fe
}

// maxRefineSize is the largest file whose syntax error line is refined by re-parsing prefixes
// (about 17 parses at most); a bigger file keeps the line the YAML library names, so a hostile
// 4 MiB file cannot make the check parse 70 MiB.
const maxRefineSize = 256 << 10

// problemLine binary-searches the lines from reported on for the first whose prefix of data
// fails to parse with the message msg (parsing is left to right, so every longer prefix fails
// the same way). It parses O(log lines) prefixes.
func problemLine(data []byte, reported int, msg string) int {
	if len(data) > maxRefineSize {
		return reported
	}
	var ends []int // ends[i] is the offset just after line i+1
	for i, c := range data {
		if c == '\n' {
			ends = append(ends, i+1)
		}
	}
	if len(data) > 0 && data[len(data)-1] != '\n' {
		ends = append(ends, len(data))
	}
	fails := func(line int) bool {
		dec := yaml.NewDecoder(bytes.NewReader(data[:ends[line-1]]))
		for {
			var n yaml.Node
			err := dec.Decode(&n)
			if err == nil {
				continue
			}
			m := strings.TrimPrefix(err.Error(), "yaml: ")
			if sm := yamlLine.FindStringSubmatch(err.Error()); sm != nil {
				m = sm[2]
			}
			return m == msg
		}
	}
	lo, hi := max(reported, 1), len(ends)
	if lo > hi || !fails(hi) {
		return reported
	}
	for lo < hi {
		mid := (lo + hi) / 2
		if fails(mid) {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return lo
}

// documentLine is the line of the --- that starts the document n (or of its first value).
func documentLine(data []byte, n *yaml.Node) int {
	line := n.Line
	if len(n.Content) > 0 {
		line = n.Content[0].Line
	}
	lines := strings.Split(string(data), "\n")
	for l := min(line, len(lines)); l >= 1; l-- {
		if strings.HasPrefix(lines[l-1], "---") {
			return l
		}
	}
	return line
}

// checkTree refuses nesting deeper than MaxDepth and aliases that expand to more than
// MaxAliasExpansion values, before anything walks the expanded document.
func checkTree(root *yaml.Node) (FieldError, bool) {
	var deep *yaml.Node
	nodes, aliases := 0, 0
	var walk func(n *yaml.Node, depth int)
	walk = func(n *yaml.Node, depth int) {
		nodes++
		if n.Kind == yaml.AliasNode {
			aliases++
		}
		if depth > MaxDepth && deep == nil {
			deep = n
		}
		for _, c := range n.Content {
			walk(c, depth+1)
		}
	}
	walk(root, 0)
	if deep != nil {
		return FieldError{Line: deep.Line, Msg: fmt.Sprintf("nested deeper than %d levels", MaxDepth)}, false
	}
	if aliases == 0 {
		return FieldError{}, true
	}
	// size is the number of values n stands for once aliases are expanded, saturating at limit;
	// it is remembered for anchored nodes (the ones aliases point at), so each is sized once.
	limit := nodes + MaxAliasExpansion
	memo := map[*yaml.Node]int{}
	var firstAlias *yaml.Node
	var size func(n *yaml.Node) int
	size = func(n *yaml.Node) int {
		if n.Kind == yaml.AliasNode && n.Alias != nil {
			if firstAlias == nil {
				firstAlias = n
			}
			n = n.Alias
		}
		if s, ok := memo[n]; ok {
			return s
		}
		if n.Anchor != "" {
			memo[n] = limit // a node that contains itself is as big as the limit
		}
		s := 1
		for _, c := range n.Content {
			s += size(c)
			if s >= limit {
				s = limit
				break
			}
		}
		if n.Anchor != "" {
			memo[n] = s
		}
		return s
	}
	if size(root) >= limit && firstAlias != nil {
		return FieldError{Line: firstAlias.Line, Msg: fmt.Sprintf("YAML aliases expand to more than %d values (an alias/anchor bomb?): write the values out instead", MaxAliasExpansion)}, false
	}
	return FieldError{}, true
}

// sortByLine orders problems by line (those without a line last), keeping the order of problems
// on one line. It is O(n log n): a file with 80,000 problems sorts at once.
func sortByLine(errs []FieldError) {
	sort.SliceStable(errs, func(i, j int) bool { return lineLess(errs[i], errs[j]) })
}

// lineLess orders two problems by line; a variable so a test can count the comparisons.
var lineLess = func(a, b FieldError) bool { return lineKey(a) < lineKey(b) }

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
		b, err := readRegular(file, MaxSecretFileSize)
		if err != nil {
			d.fail(path+"_file", c.line(path+"_file"), "cannot read secret file: %v", err)
			return
		}
		v := strings.TrimRight(string(b), "\r\n")
		if strings.TrimSpace(v) == "" {
			d.fail(path+"_file", c.line(path+"_file"), "secret file %s is empty", file)
			return
		}
		*inline = Secret(v)
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
	if v, set := env("S3_BUCKET"); s3.Bucket == "" && set && strings.TrimSpace(v) == "" && c.Storage.Backend == "s3" {
		d.fail("storage.s3.bucket", c.line("storage.s3"), "S3_BUCKET is set but empty: set it to the bucket, unset it, or set storage.s3.bucket")
	}
	setDefault(&s3.Bucket, get("S3_BUCKET"))
	setDefault(&s3.Bucket, "wopr-backups")
	s3.Bucket = strings.TrimSuffix(strings.TrimPrefix(s3.Bucket, "s3://"), "/")
	setDefault(&s3.Region, get("DO_SPACES_REGION"))
	if s3.Endpoint == "" && s3.Region != "" {
		s3.Endpoint = s3.Region + ".digitaloceanspaces.com"
	}
	setDefault(&s3.AccessKey, Secret(get("DO_SPACES_ACCESS_KEY")))
	setDefault(&s3.SecretKey, Secret(get("DO_SPACES_SECRET_KEY")))
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
	setDefault(&c.Alerts.Interval, Duration(time.Minute))
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
			s.Databases = withPlatformTables(s.Databases, platform)
			setDefault(&s.Key, "platform/{date}/{db}-{date}.db")
			setDefault(&s.Compression, "none")
			setDefault(&s.CopyTimeout, Duration(10*time.Minute))
			setDefault(&s.Parallel, 2)
		}
		if d := j.SQLiteDrill; d != nil {
			d.Databases = withPlatformTables(d.Databases, platform)
			setDefault(&d.RTOBreach, "fail")
			setDefault(&d.ReportKey, "drills/{date}/platform.json")
			setDefault(&d.Parallel, 3)
			setDefault(&d.RTOTargetDB, Duration(5*time.Minute))
			setDefault(&d.RTOTargetTotal, Duration(15*time.Minute))
			setDefault(&d.Lookback, 14)
		}
		if v := j.OffsiteVerify; v != nil {
			if v.Databases == nil {
				for _, db := range PlatformDatabases() {
					v.Databases = append(v.Databases, db.Name)
				}
			}
			setDefault(&v.Dates, 3)
			setDefault(&v.MaxAge, Duration(26*time.Hour))
			setDefault(&v.NightlyMaxAge, Duration(26*time.Hour))
			setDefault(&v.HotMaxAge, Duration(7*time.Hour)) // 6 h plus grace
		}
		if c := j.ContainerExport; c != nil {
			setDefault(&c.NamePrefix, "tenant_")
			setDefault(&c.Compression, "gzip")
			setDefault(&c.TierLabel, "wopr.tier")
			ext := archiveExt(c.Compression)
			if c.ChangedOnly {
				setDefault(&c.Key, "latest/{container}/latest"+ext)
			} else {
				setDefault(&c.Key, "nightly/{node}/{container}/{container}_{date}"+ext)
			}
			setDefault(&c.Parallel, 2)
		}
		if d := j.DirSnapshot; d != nil {
			setDefault(&d.BaseDir, "/data/instances")
			setDefault(&d.Compression, "gzip")
			setDefault(&d.Tier, "free")
			ext := archiveExt(d.Compression)
			setDefault(&d.Key, "nightly/{node}/{instance}/{instance}_{date}"+ext)
			setDefault(&d.Parallel, 2)
		}
		if c := j.ContainerDrill; c != nil {
			setDefault(&c.RTOBreach, "fail")
			if c.ProbeCmd == nil {
				c.ProbeCmd = []string{"/bin/sh", "-c", "true"}
			}
			setDefault(&c.ProbeTimeout, Duration(time.Minute))
			setDefault(&c.RTOTarget, Duration(10*time.Minute))
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

// setDefault sets *p to v when it is the zero value (not set in the file).
func setDefault[T comparable](p *T, v T) {
	var zero T
	if *p == zero {
		*p = v
	}
}

// withPlatformTables returns dbs (the platform's databases when nil) where every platform
// database that names no tables gets the platform's tables and critical tables.
func withPlatformTables(dbs []Database, platform map[string]Database) []Database {
	if dbs == nil {
		dbs = PlatformDatabases()
	}
	for k := range dbs {
		db := &dbs[k]
		if p, ok := platform[db.Name]; ok && db.Tables == nil {
			db.Tables, db.Critical = p.Tables, p.Critical
		}
	}
	return dbs
}

// archiveExt is the ending of a default archive key: ".tar" for zstd (whose suffix follows),
// ".tar.gz" otherwise (the historical keys).
func archiveExt(compression string) string {
	if compression == "zstd" {
		return ".tar"
	}
	return ".tar.gz"
}
