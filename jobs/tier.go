package jobs

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" database/sql driver (tier queries on PostgreSQL)
	_ "modernc.org/sqlite"             // the "sqlite" database/sql driver
)

// TierSource says where the retention tier of a target (a container or an instance) comes from:
// a container label, a static map, or a read-only query against the platform database. It is
// resolved per target at export time and recorded in the manifest; prune reads it from there.
type TierSource struct {
	// Kind: label, map or query.
	Kind string
	// Label is the container label holding the tier (kind label).
	Label string
	// Map: tenant id → tier (kind map).
	Map map[string]string
	// Driver and DSN locate the platform database (kind query): "sqlite" with a file path, or
	// "pgx" with a PostgreSQL DSN.
	Driver, DSN string
	// Query returns rows of (tenant id, tier); read once per run, in a read-only connection.
	Query string
	// TenantFrom is the pattern that gives the tenant id from a target's name: {id} stands for it
	// (tenant_{id}: container tenant_abc is tenant abc). Empty: the name is the id.
	TenantFrom string
	// Default is the tier of a tenant the source has no tier for; "" makes that an error.
	Default string
	// Tiers are the known tier names: any other value is an error for that target.
	Tiers   []string
	Timeout time.Duration
}

// FixedTier is a source that gives every target one tier.
func FixedTier(tier string) *TierSource {
	return &TierSource{Kind: "map", Default: tier}
}

// String describes the source without its DSN.
func (s *TierSource) String() string {
	switch s.Kind {
	case "label":
		return "label " + s.Label
	case "query":
		if s.Driver == "sqlite" {
			return "query on " + s.DSN
		}
		return "query on postgresql"
	case "map":
		if len(s.Map) == 0 {
			return "fixed " + s.Default
		}
		return "map"
	}
	return s.Kind
}

// TenantOf returns the tenant id a target's name stands for.
func (s *TierSource) TenantOf(name string) (string, bool) {
	if s.TenantFrom == "" || s.TenantFrom == "{id}" {
		return name, name != ""
	}
	pre, post, _ := strings.Cut(s.TenantFrom, "{id}")
	if len(name) <= len(pre)+len(post) || !strings.HasPrefix(name, pre) || !strings.HasSuffix(name, post) {
		return "", false
	}
	return name[len(pre) : len(name)-len(post)], true
}

// TierLookup is one run's view of a tier source: the map, or the query's rows read once.
type TierLookup struct {
	src   *TierSource
	known map[string]bool
	// rows: tenant id → tier (map and query kinds).
	rows map[string]string
}

// Load reads the source for one run (the query runs here, once).
func (s *TierSource) Load(ctx context.Context) (*TierLookup, error) {
	l := &TierLookup{src: s, known: map[string]bool{}, rows: map[string]string{}}
	for _, t := range s.Tiers {
		l.known[t] = true
	}
	switch s.Kind {
	case "label":
	case "map":
		for k, v := range s.Map {
			l.rows[k] = v
		}
	case "query":
		rows, err := s.query(ctx)
		if err != nil {
			return nil, err
		}
		l.rows = rows
	default:
		return nil, fmt.Errorf("tier source: unknown kind %q", s.Kind)
	}
	return l, nil
}

// query runs the tier query in a read-only connection and returns tenant → tier.
func (s *TierSource) query(ctx context.Context) (map[string]string, error) {
	timeout := s.Timeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var db *sql.DB
	var err error
	switch s.Driver {
	case "sqlite":
		if _, err := os.Stat(s.DSN); err != nil {
			return nil, fmt.Errorf("tier query: open platform database: %w", err)
		}
		q := url.Values{}
		q.Set("mode", "ro")
		q.Add("_pragma", "query_only(1)")
		q.Add("_pragma", "busy_timeout(5000)")
		db, err = sql.Open("sqlite", "file:"+s.DSN+"?"+q.Encode())
	case "pgx":
		db, err = sql.Open("pgx", s.DSN)
	default:
		return nil, fmt.Errorf("tier query: unknown driver %q", s.Driver)
	}
	if err != nil {
		return nil, fmt.Errorf("tier query: open platform database: %w", redactErr(err, s.DSN))
	}
	defer db.Close()
	tx, err := db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("tier query: connect to the platform database: %w", redactErr(err, s.DSN))
	}
	defer tx.Rollback() //nolint:errcheck // read-only: nothing to keep
	rows, err := tx.QueryContext(ctx, s.Query)
	if err != nil {
		return nil, fmt.Errorf("tier query: %w", redactErr(err, s.DSN))
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return nil, fmt.Errorf("tier query: %w", err)
	}
	if len(cols) < 2 {
		return nil, fmt.Errorf("tier query: returns %d column(s); it must return (tenant id, tier)", len(cols))
	}
	out := map[string]string{}
	dest := make([]any, len(cols))
	for i := range dest {
		dest[i] = new(sql.NullString)
	}
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			return nil, fmt.Errorf("tier query: read a row: %w", err)
		}
		id, tier := dest[0].(*sql.NullString), dest[1].(*sql.NullString)
		if !id.Valid || id.String == "" {
			continue
		}
		// A NULL tier is the platform's column default.
		out[id.String] = tier.String
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("tier query: %w", redactErr(err, s.DSN))
	}
	return out, nil
}

// redactErr keeps a DSN (it may hold a password) out of error text.
func redactErr(err error, dsn string) error {
	if err == nil || dsn == "" || !strings.Contains(err.Error(), dsn) {
		return err
	}
	return errors.New(strings.ReplaceAll(err.Error(), dsn, "[redacted dsn]"))
}

// TierOf is a resolved tier and where it came from, as the manifest records it.
type TierOf struct {
	Tenant, Tier, Source string
}

// Resolve returns the tier of the target with this name (and, for containers, labels). An
// unknown tier value, a name the tenant pattern does not match, or (without a default) a tenant
// the source does not know is an error for that target: never a silent free.
func (l *TierLookup) Resolve(name string, labels map[string]string) (TierOf, error) {
	s := l.src
	r := TierOf{Source: s.String()}
	tenant, ok := s.TenantOf(name)
	if ok {
		r.Tenant = tenant
	}
	switch s.Kind {
	case "label":
		r.Tier = labels[s.Label]
		if r.Tier == "" {
			r.Tier = s.Default
		}
		if r.Tier == "" {
			return r, fmt.Errorf("tier: %s has no %s label (and the tier source has no default)", name, s.Label)
		}
	default:
		if !ok && !(len(s.Map) == 0 && s.Kind == "map") {
			return r, fmt.Errorf("tier: %s does not match tenant_from %q", name, s.TenantFrom)
		}
		tier, found := l.rows[tenant]
		switch {
		case found && tier != "":
			r.Tier = tier
		case found: // a NULL or empty tier column
			r.Tier = s.Default
			if r.Tier == "" {
				return r, fmt.Errorf("tier: tenant %q (%s) has no tier in the tier source (%s)", tenant, name, s)
			}
		default:
			r.Tier = s.Default
			if r.Tier == "" {
				return r, fmt.Errorf("tier: tenant %q (%s) not found in the tier source (%s)", tenant, name, s)
			}
		}
	}
	if len(l.known) > 0 && !l.known[r.Tier] {
		known := slices.Sorted(maps.Keys(l.known))
		return r, fmt.Errorf("tier: unknown tier %q for %s from %s (known: %s)", r.Tier, name, s, strings.Join(known, ", "))
	}
	return r, nil
}

// TenantExists reports whether the tenant of a target still has a record in the source; ok is
// false when the source cannot say (a label source, a fixed tier, a name that names no tenant).
func (l *TierLookup) TenantExists(name string) (exists, ok bool) {
	if l.src.Kind == "label" || (l.src.Kind == "map" && (len(l.src.Map) == 0 || l.src.Default != "")) {
		// A map with a default lists the tenants off the default tier, not every tenant.
		return false, false
	}
	tenant, ok := l.src.TenantOf(name)
	if !ok {
		return false, false
	}
	_, exists = l.rows[tenant]
	return exists, true
}

// runTiers is one run's tier lookup, or why it could not be loaded (then every target of the
// run reports it; the backups themselves still happen).
type runTiers struct {
	look *TierLookup
	err  error
}

func loadRunTiers(ctx context.Context, src *TierSource) runTiers {
	look, err := src.Load(ctx)
	return runTiers{look: look, err: err}
}

// resolve resolves one target; a failed load is that target's error too.
func (r runTiers) resolve(name string, labels map[string]string) (TierOf, error) {
	if r.err != nil {
		return TierOf{}, r.err
	}
	if r.look == nil {
		return TierOf{}, errors.New("tier: no tier source")
	}
	return r.look.Resolve(name, labels)
}

// tierError is the error of a target that was backed up but whose tier is unknown: its manifest
// records no tier, so prune keeps every backup of it until the tier is fixed.
func tierError(key string, err error) error {
	return fmt.Errorf("backed up to %s, but prune keeps all its backups until its tier is known: %w", key, err)
}
