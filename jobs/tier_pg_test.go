package jobs

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"net/url"
	"os"
	"strings"
	"testing"

	"github.com/wopr-network/opsd/internal/storage/local"
)

// pgPlatform creates a fresh PostgreSQL database holding the platform's tenant record
// (tenant_customers.tier, default 'free'), dropped at the end of the test, and returns its DSN.
// It needs a server: eval "$(.ci/start-postgres.sh)" sets OPSD_TEST_PG_DSN (a superuser).
func pgPlatform(t *testing.T, tenants map[string]string) (dsn string, exec func(q string, args ...any)) {
	t.Helper()
	admin := os.Getenv("OPSD_TEST_PG_DSN")
	if admin == "" {
		if os.Getenv("OPSD_TEST_REQUIRE_PG") == "1" {
			t.Fatal("OPSD_TEST_PG_DSN is not set and OPSD_TEST_REQUIRE_PG=1")
		}
		t.Skip("no PostgreSQL server: eval \"$(.ci/start-postgres.sh)\" sets OPSD_TEST_PG_DSN")
	}
	ctx := context.Background()
	adb, err := sql.Open("pgx", admin)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { adb.Close() })
	name := fmt.Sprintf("opsd_tiers_%d", rand.Uint32())
	if _, err := adb.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { adb.ExecContext(context.Background(), "DROP DATABASE "+name+" WITH (FORCE)") })
	u, err := url.Parse(admin)
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + name
	dsn = u.String()
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	exec = func(q string, args ...any) {
		t.Helper()
		if _, err := db.ExecContext(ctx, q, args...); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	exec(`CREATE TABLE tenant_customers (tenant text PRIMARY KEY, name text NOT NULL, tier text NOT NULL DEFAULT 'free', created_at timestamptz NOT NULL DEFAULT now())`)
	for id, tier := range tenants {
		exec(`INSERT INTO tenant_customers (tenant, name, tier) VALUES ($1, $2, $3)`, id, "Tenant "+id, tier)
	}
	return dsn, exec
}

func pgSource(dsn string) *TierSource {
	return &TierSource{Kind: "query", Driver: "pgx", DSN: dsn, Query: "SELECT tenant, tier FROM tenant_customers",
		TenantFrom: "tenant_{id}", Tiers: tierNames}
}

func TestTierQueryOnPostgreSQL(t *testing.T) {
	dsn, _ := pgPlatform(t, map[string]string{"abc": "pro", "plat": "platinum"})
	ctx := context.Background()
	look, err := pgSource(dsn).Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if r, err := look.Resolve("tenant_abc", nil); err != nil || r.Tier != "pro" || r.Source != "query on postgresql" {
		t.Fatalf("tenant_abc: %+v %v", r, err)
	}
	if _, err := look.Resolve("tenant_plat", nil); err == nil || !strings.Contains(err.Error(), `unknown tier "platinum"`) {
		t.Fatalf("platinum: %v", err)
	}
	// Read-only: a writing statement fails in the read-only transaction and changes nothing.
	src := pgSource(dsn)
	src.Query = "UPDATE tenant_customers SET tier = 'free' RETURNING tenant, tier"
	if _, err := src.Load(ctx); err == nil || !strings.Contains(err.Error(), "read-only transaction") {
		t.Fatalf("a writing query: %v", err)
	}
	if look, _ := pgSource(dsn).Load(ctx); look.rows["abc"] != "pro" {
		t.Fatalf("the tier query wrote: %v", look.rows)
	}
	// A wrong password: a clear error without the DSN's secret.
	u, _ := url.Parse(dsn)
	u.User = url.UserPassword(u.User.Username(), "wrong-password-xyz")
	_, err = pgSource(u.String()).Load(ctx)
	t.Logf("wrong password: %v", err)
	if err == nil || strings.Contains(err.Error(), "wrong-password-xyz") || !strings.Contains(err.Error(), "tier query") {
		t.Fatalf("wrong password: %v", err)
	}
}

// TestTierRetentionYearPostgreSQL is TestTierRetentionYear with the tenant record in PostgreSQL.
func TestTierRetentionYearPostgreSQL(t *testing.T) {
	dsn, exec := pgPlatform(t, yearTenants)
	store, _ := local.New(t.TempDir())
	tierRetentionYear(t, store, pgSource(dsn), func(id, tier string) {
		exec(`UPDATE tenant_customers SET tier = $1 WHERE tenant = $2`, tier, id)
	})
}
