package config

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"
)

// TierSource says where the retention tier of a container (container_export) or an instance
// (dir_snapshot) comes from. It is resolved per target at export time and recorded in the
// artifact's manifest; prune reads the tier from the newest manifest.
//
//	tier_source:
//	  kind: query                      # label (containers' default), map or query
//	  tenant_from: "tenant_{id}"       # how a container or instance name gives the tenant id
//	  db: /data/platform/tenants.db    # query: a SQLite database, opened read-only
//	  # dsn: ${DATABASE_URL}           # query: or a PostgreSQL DSN (a read-only transaction)
//	  query: SELECT id, tier FROM tenant_customers
//	  default: ""                      # tier of a tenant the source does not know ("": an error)
type TierSource struct {
	// Kind: label (the container label, the default for container_export), map (a static map in
	// this file) or query (a read-only SQL query against the platform database).
	Kind string `yaml:"kind"`
	// Label is the container label holding the tier (kind label; default wopr.tier).
	Label string `yaml:"label"`
	// Map: tenant id → tier (kind map).
	Map map[string]string `yaml:"map"`
	// DB is a SQLite database path; DSN (or DSNFile) a PostgreSQL connection string. Kind query
	// takes exactly one of them.
	DB      string `yaml:"db"`
	DSN     Secret `yaml:"dsn"`
	DSNFile string `yaml:"dsn_file"`
	// Query returns rows of (tenant id, tier), the first two columns; read once per run.
	Query string `yaml:"query"`
	// TenantFrom is the name pattern that gives the tenant id: {id} stands for it. Default
	// tenant_{id} for containers and {id} for instances. A name that does not match it is an error
	// for that target.
	TenantFrom string `yaml:"tenant_from"`
	// Default is the tier of a tenant the source has no tier for. Default: free for kind label
	// (a container without the label), none for map and query (an unknown tenant is an error).
	Default *string `yaml:"default"`
	// Timeout bounds the query (default 30s).
	Timeout Duration `yaml:"timeout"`
}

// KnowsTenants reports whether the source is the platform's tenant record, which the orphan
// policy tells a gone tenant by: a query, or a map without a default (a map with a default lists
// only the tenants off the default tier, not every tenant).
func (ts *TierSource) KnowsTenants() bool {
	return ts != nil && (ts.Kind == "query" || (ts.Kind == "map" && ts.Default == nil))
}

// TierSourceKinds are the kinds of a tier_source.
var TierSourceKinds = []string{"label", "map", "query"}

// ResolvedTierSource returns the tier source of a container_export job with its defaults: the
// configured one, or the label (tier_label) as before.
func (s *ContainerExportSettings) ResolvedTierSource() TierSource {
	ts := TierSource{Kind: "label", Label: s.TierLabel}
	if s.TierSource != nil {
		ts = *s.TierSource
	}
	return ts.withDefaults("tenant_{id}")
}

// ResolvedTierSource returns the tier source of a dir_snapshot job with its defaults: the
// configured one, or every instance on the job's fixed tier.
func (s *DirSnapshotSettings) ResolvedTierSource() TierSource {
	if s.TierSource == nil {
		tier := s.Tier
		return TierSource{Kind: "map", Map: map[string]string{}, Default: &tier, TenantFrom: "{id}", Timeout: Duration(30 * time.Second)}
	}
	return s.TierSource.withDefaults("{id}")
}

func (ts TierSource) withDefaults(tenantFrom string) TierSource {
	setDefault(&ts.Kind, "label")
	if ts.Kind == "label" && ts.Label == "" {
		ts.Label = "wopr.tier"
	}
	setDefault(&ts.TenantFrom, tenantFrom)
	if ts.Default == nil && ts.Kind == "label" {
		free := "free"
		ts.Default = &free
	}
	setDefault(&ts.Timeout, Duration(30*time.Second))
	return ts
}

// DSNValue returns the PostgreSQL DSN, reading dsn_file when set.
func (ts TierSource) DSNValue() (string, error) {
	if ts.DSNFile == "" {
		return ts.DSN.Value(), nil
	}
	b, err := os.ReadFile(ts.DSNFile)
	if err != nil {
		return "", fmt.Errorf("read tier_source.dsn_file: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

var tenantFromRe = regexp.MustCompile(`^[A-Za-z0-9_.-]*\{id\}[A-Za-z0-9_.-]*$`)

// validateTierSources checks the tier_source of a container_export or dir_snapshot job.
func (c *Config) validateTierSources(p string, j Job) []FieldError {
	var errs []FieldError
	bad := c.reporter(&errs)
	var ts *TierSource
	switch {
	case j.ContainerExport != nil:
		ts = j.ContainerExport.TierSource
		if ts != nil && c.lines[p+".tier_label"] != 0 {
			bad(p+".tier_label", "set either tier_label or tier_source, not both")
		}
	case j.DirSnapshot != nil:
		ts = j.DirSnapshot.TierSource
		if ts != nil && c.lines[p+".tier"] != 0 {
			bad(p+".tier", "set either tier (one tier for every instance) or tier_source, not both")
		}
		if ts != nil && (ts.Kind == "" || ts.Kind == "label") {
			bad(p+".tier_source.kind", "instances have no labels: use map or query")
			return errs
		}
	}
	if ts == nil {
		return errs
	}
	sp := p + ".tier_source"
	if ts.Kind != "" && !slices.Contains(TierSourceKinds, ts.Kind) {
		bad(sp+".kind", "must be label, map or query, got %q", ts.Kind)
		return errs
	}
	known := func(path, tier string) {
		if _, ok := c.Tiers[tier]; !ok {
			bad(path, "unknown tier %q (known: %s)", tier, strings.Join(c.TierNames(), ", "))
		}
	}
	if ts.Default != nil && *ts.Default != "" {
		known(sp+".default", *ts.Default)
	}
	if ts.TenantFrom != "" && !tenantFromRe.MatchString(ts.TenantFrom) {
		bad(sp+".tenant_from", "must contain {id} once, with letters, digits, '.', '_' or '-' around it, got %q", ts.TenantFrom)
	}
	unused := func(key string, set bool) {
		if set {
			bad(sp+"."+key, "is not used by kind %s", ts.Kind)
		}
	}
	kind := ts.Kind
	if kind == "" {
		kind = "label"
	}
	switch kind {
	case "label":
		if ts.Label != "" && !labelRe.MatchString(ts.Label) {
			bad(sp+".label", "invalid label name %q", ts.Label)
		}
		unused("map", ts.Map != nil)
		unused("query", ts.Query != "")
		unused("db", ts.DB != "")
		unused("dsn", ts.DSN != "" || ts.DSNFile != "")
	case "map":
		if len(ts.Map) == 0 {
			bad(sp+".map", "must map at least one tenant id to a tier")
		}
		for _, id := range slices.Sorted(maps.Keys(ts.Map)) {
			known(sp+".map."+id, ts.Map[id])
		}
		unused("label", ts.Label != "")
		unused("query", ts.Query != "")
		unused("db", ts.DB != "")
		unused("dsn", ts.DSN != "" || ts.DSNFile != "")
	case "query":
		unused("label", ts.Label != "")
		unused("map", ts.Map != nil)
		if strings.TrimSpace(ts.Query) == "" {
			bad(sp+".query", "is required: a read-only query returning (tenant id, tier)")
		} else if q := strings.ToUpper(strings.TrimSpace(ts.Query)); !strings.HasPrefix(q, "SELECT") && !strings.HasPrefix(q, "WITH") {
			bad(sp+".query", "must be a SELECT (or WITH ... SELECT) returning (tenant id, tier)")
		}
		n := 0
		for _, set := range []bool{ts.DB != "", ts.DSN != "", ts.DSNFile != ""} {
			if set {
				n++
			}
		}
		switch {
		case n == 0:
			bad(sp+".db", "kind query needs db (a SQLite path) or dsn (PostgreSQL)")
		case n > 1:
			bad(sp+".dsn", "set exactly one of db, dsn and dsn_file")
		case ts.DB != "":
			if _, err := os.Stat(ts.DB); err != nil {
				bad(sp+".db", "cannot read %s: %v", ts.DB, errors.Unwrap(err))
			}
		case ts.DSNFile != "":
			if _, err := os.Stat(ts.DSNFile); err != nil {
				bad(sp+".dsn_file", "cannot read %s: %v", ts.DSNFile, errors.Unwrap(err))
			}
		case ts.DSN != "":
			if d := ts.DSN.Value(); !strings.HasPrefix(d, "postgres://") && !strings.HasPrefix(d, "postgresql://") && !strings.Contains(d, "=") {
				bad(sp+".dsn", "is not a PostgreSQL DSN (postgresql://USER@HOST/DB or key=value pairs)")
			}
		}
	}
	if ts.Timeout < 0 {
		bad(sp+".timeout", "must not be negative")
	}
	return errs
}

// validateOrphanKeep checks a prune job's orphan_keep: not negative, and a tier source that
// knows the platform's tenants to tell an orphan by.
func (c *Config) validateOrphanKeep(p string, j Job) []FieldError {
	if j.Prune == nil || j.Prune.OrphanKeep == nil {
		return nil
	}
	path := p + ".orphan_keep"
	bad := func(msg string) []FieldError { return []FieldError{{Path: path, Line: c.line(path), Msg: msg}} }
	if *j.Prune.OrphanKeep < 0 {
		return bad("must not be negative (omit it to keep orphans' backups forever)")
	}
	for _, o := range c.Jobs {
		if ts := jobTierSource(o); o.ContainerExport != nil && ts.KnowsTenants() {
			return nil
		}
	}
	return bad("needs a container_export job whose tier_source (kind query, or map without a default) knows the platform's tenants")
}

// tierSecrets are the DSNs of the tier sources, for redaction.
func (c *Config) tierSecrets() []string {
	var out []string
	for _, j := range c.Jobs {
		if ts := jobTierSource(j); ts != nil && ts.DSN != "" {
			out = append(out, ts.DSN.Value())
		}
	}
	return out
}

func jobTierSource(j Job) *TierSource {
	switch {
	case j.ContainerExport != nil:
		return j.ContainerExport.TierSource
	case j.DirSnapshot != nil:
		return j.DirSnapshot.TierSource
	}
	return nil
}

// QueryDatabase is the database a query tier source reads: ("sqlite", its db path) or ("pgx",
// its DSN, dsn_file read); empty for the other kinds.
func (ts TierSource) QueryDatabase() (driver, dsn string, err error) {
	switch {
	case ts.Kind != "query":
		return "", "", nil
	case ts.DB != "":
		return "sqlite", ts.DB, nil
	}
	dsn, err = ts.DSNValue()
	if err != nil {
		return "", "", err
	}
	return "pgx", dsn, nil
}

// TenantTierSource is the tier source that knows the platform's tenants (the first
// container_export job's map or query source), which the prune job's orphan policy reads; false
// when there is none.
func (c *Config) TenantTierSource() (TierSource, bool) {
	for _, j := range c.Jobs {
		if s := j.ContainerExport; s != nil && s.TierSource.KnowsTenants() {
			return s.ResolvedTierSource(), true
		}
	}
	return TierSource{}, false
}
