// Package pgtest gives tests a real PostgreSQL server: the one .ci/start-postgres.sh started
// (OPSD_TEST_PG_DSN, a superuser with a password), a fresh database per test (dropped at its end)
// and the platform's tables filled with realistic rows. Tests skip without OPSD_TEST_PG_DSN
// unless OPSD_TEST_REQUIRE_PG=1.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/wopr-network/opsd/internal/postgres"
)

// Server returns the test server's DSN (its maintenance database) and its tools.
func Server(t testing.TB) (postgres.DSN, postgres.Tools) {
	t.Helper()
	raw := os.Getenv("OPSD_TEST_PG_DSN")
	if raw == "" {
		if os.Getenv("OPSD_TEST_REQUIRE_PG") == "1" {
			t.Fatal("OPSD_TEST_PG_DSN is not set and OPSD_TEST_REQUIRE_PG=1: start a server with eval \"$(.ci/start-postgres.sh)\"")
		}
		t.Skip("no PostgreSQL server: eval \"$(.ci/start-postgres.sh)\" sets OPSD_TEST_PG_DSN")
	}
	dsn, err := postgres.ParseDSN(raw)
	if err != nil {
		t.Fatal(err)
	}
	tools, err := postgres.FindTools(os.Getenv("OPSD_TEST_PG_BINDIR"))
	if err != nil {
		t.Fatal(err)
	}
	return dsn, tools
}

// Name returns a unique database name with a prefix.
func Name(prefix string) string {
	b := make([]byte, 4)
	rand.Read(b)
	return fmt.Sprintf("%s_%s", prefix, hex.EncodeToString(b))
}

// NewDatabase creates an empty database on the server, dropped when the test ends.
func NewDatabase(t testing.TB, server postgres.DSN, prefix string) postgres.DSN {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	name := Name(prefix)
	c, err := server.Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	if err := postgres.CreateDatabase(ctx, c, name, ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { DropDatabase(t, server, name) })
	return server.WithDatabase(name)
}

// DropDatabase drops a database if it exists (cleanup of what a test made).
func DropDatabase(t testing.TB, server postgres.DSN, name string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := server.Connect(ctx)
	if err != nil {
		t.Errorf("drop %s: %v", name, err)
		return
	}
	defer c.Close(ctx)
	if err := postgres.DropDatabase(ctx, c, name); err != nil {
		t.Errorf("drop %s: %v", name, err)
	}
}

// PlatformTables are the platform's tables (REFERENCE.md).
var PlatformTables = []string{"backup_status", "snapshots", "restore_log", "gateway_metrics", "fleet_events", "meter_events",
	"credit_transactions", "audit_log", "bot_instances", "tenant_api_keys", "user", "session", "account"}

// Schema creates the platform's tables.
const Schema = `
CREATE TABLE "user" (id text PRIMARY KEY, email text NOT NULL UNIQUE, name text, created_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE session (id text PRIMARY KEY, user_id text NOT NULL REFERENCES "user"(id), token text NOT NULL, expires_at timestamptz NOT NULL);
CREATE TABLE account (id text PRIMARY KEY, user_id text NOT NULL REFERENCES "user"(id), provider text NOT NULL, password_hash text);
CREATE TABLE backup_status (container_id text PRIMARY KEY, node_id text, last_backup_at timestamptz, last_backup_size_mb double precision,
  last_backup_path text, last_backup_success boolean NOT NULL DEFAULT false, last_backup_error text, total_backups int NOT NULL DEFAULT 0,
  created_at timestamptz NOT NULL DEFAULT now(), updated_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE snapshots (id text PRIMARY KEY, tenant text NOT NULL, name text, path text NOT NULL, size_bytes bigint, created_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE restore_log (id bigserial PRIMARY KEY, tenant text NOT NULL, snapshot_id text, restored_at timestamptz NOT NULL DEFAULT now(), by_user text);
CREATE TABLE gateway_metrics (minute_key bigint NOT NULL, capability text NOT NULL, requests int NOT NULL DEFAULT 0, errors int NOT NULL DEFAULT 0,
  credit_failures int NOT NULL DEFAULT 0, PRIMARY KEY (minute_key, capability));
CREATE TABLE fleet_events (id bigserial PRIMARY KEY, node_id text NOT NULL, container text NOT NULL, event text NOT NULL, at timestamptz NOT NULL DEFAULT now());
CREATE TABLE meter_events (id bigserial PRIMARY KEY, tenant text NOT NULL, capability text NOT NULL, units bigint NOT NULL, cost_credits bigint NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(), payload jsonb);
CREATE TABLE credit_transactions (id bigserial PRIMARY KEY, tenant text NOT NULL, amount bigint NOT NULL, reason text NOT NULL,
  reference text, at bigint NOT NULL);
CREATE INDEX credit_transactions_at ON credit_transactions (at);
CREATE TABLE audit_log (id bigserial PRIMARY KEY, actor text NOT NULL, action text NOT NULL, target text, details jsonb, at timestamptz NOT NULL DEFAULT now());
CREATE TABLE bot_instances (id text PRIMARY KEY, tenant text NOT NULL, node_id text NOT NULL, container text NOT NULL, status text NOT NULL, created_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE tenant_api_keys (id text PRIMARY KEY, tenant text NOT NULL, key_hash text NOT NULL, created_at timestamptz NOT NULL DEFAULT now());
`

// Fill creates the platform's tables in db and fills them (credit_transactions(amount, at in
// seconds) and gateway_metrics(minute_key in ms) as the alert sources read them): n rows in each of the large tables
// (meter_events, credit_transactions, audit_log, each row a few hundred bytes), fewer elsewhere.
func Fill(ctx context.Context, db postgres.DSN, n int) error {
	c, err := db.Connect(ctx)
	if err != nil {
		return err
	}
	defer c.Close(ctx)
	stmts := []string{Schema,
		`INSERT INTO "user" SELECT 'u' || i, 'user' || i || '@example.com', 'User ' || i, now() - i * interval '1 hour' FROM generate_series(1, 200) i`,
		`INSERT INTO session SELECT 's' || i, 'u' || (1 + i % 200), md5(i::text), now() + interval '7 days' FROM generate_series(1, 300) i`,
		`INSERT INTO account SELECT 'a' || i, 'u' || i, 'credential', md5('pw' || i) FROM generate_series(1, 200) i`,
		`INSERT INTO backup_status (container_id, node_id, last_backup_at, last_backup_size_mb, last_backup_path, last_backup_success, total_backups)
		 SELECT 'tenant_' || i, 'node-' || (1 + i % 3), now(), i * 1.5, 'nightly/node-1/tenant_' || i || '/x.tar.gz', true, i FROM generate_series(1, 50) i`,
		`INSERT INTO snapshots SELECT 'snap' || i, 'tenant_' || (i % 50), NULL, 'on-demand/t/' || i || '.tar.gz', i * 1000 FROM generate_series(1, 100) i`,
		`INSERT INTO restore_log (tenant, snapshot_id, by_user) SELECT 'tenant_' || (i % 50), 'snap' || i, 'admin' FROM generate_series(1, 20) i`,
		`INSERT INTO gateway_metrics SELECT (extract(epoch FROM now())::bigint / 60 - i) * 60000, c, 100, i % 3, 0
		 FROM generate_series(0, 59) i, unnest(ARRAY['chat', 'image', 'tts']) c`,
		`INSERT INTO fleet_events (node_id, container, event) SELECT 'node-1', 'tenant_' || (i % 50), 'start' FROM generate_series(1, 100) i`,
		`INSERT INTO bot_instances SELECT 'bot' || i, 'tenant_' || i, 'node-1', 'tenant_' || i, 'running' FROM generate_series(1, 50) i`,
		`INSERT INTO tenant_api_keys SELECT 'key' || i, 'tenant_' || i, md5('k' || i) FROM generate_series(1, 50) i`,
		fmt.Sprintf(`INSERT INTO meter_events (tenant, capability, units, cost_credits, payload)
		 SELECT 'tenant_' || (i %% 50), 'chat', i %% 1000, i %% 17, jsonb_build_object('model', 'm' || (i %% 7), 'prompt', repeat(md5(i::text), 4))
		 FROM generate_series(1, %d) i`, n),
		fmt.Sprintf(`INSERT INTO credit_transactions (tenant, amount, reason, reference, at)
		 SELECT 'tenant_' || (i %% 50), -(1 + i %% 100), 'deduction', md5(i::text) || md5((i + 1)::text), extract(epoch FROM now())::bigint - i
		 FROM generate_series(1, %d) i`, n),
		fmt.Sprintf(`INSERT INTO audit_log (actor, action, target, details)
		 SELECT 'u' || (i %% 200), 'bot.update', 'bot' || (i %% 50), jsonb_build_object('note', repeat(md5(i::text), 3)) FROM generate_series(1, %d) i`, n),
		`ANALYZE`,
	}
	for _, s := range stmts {
		if _, err := c.Exec(ctx, s); err != nil {
			return fmt.Errorf("fill %s: %w", db.Database(), err)
		}
	}
	return nil
}
