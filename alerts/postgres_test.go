package alerts

import (
	"context"
	"database/sql"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/wopr-network/opsd/config"
	"github.com/wopr-network/opsd/internal/postgres/pgtest"
	"github.com/wopr-network/opsd/internal/state"
)

// TestPresetsReadPostgresLikeSQLite: with the same gateway_metrics rows in a SQLite file and in
// a PostgreSQL database, every preset gives the same value, firing state and message, in
// scenarios where each of them fires and where none does.
func TestPresetsReadPostgresLikeSQLite(t *testing.T) {
	server, _ := pgtest.Server(t)
	ctx := context.Background()
	pgdb := pgtest.NewDatabase(t, server, "opsd_alerts")
	c, err := pgdb.Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, `CREATE TABLE gateway_metrics (minute_key bigint NOT NULL, capability text NOT NULL, requests int NOT NULL,
		errors int NOT NULL, credit_failures int NOT NULL, PRIMARY KEY (minute_key, capability))`); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t)
	now := time.Date(2026, 11, 25, 12, 0, 30, 0, time.UTC)
	copyRows := func() {
		if _, err := c.Exec(ctx, `DELETE FROM gateway_metrics`); err != nil {
			t.Fatal(err)
		}
		g, _ := sql.Open("sqlite", "file:"+e.db)
		defer g.Close()
		rows, err := g.Query(`SELECT minute_key, capability, requests, errors, credit_failures FROM gateway_metrics`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		for rows.Next() {
			var k int64
			var cap string
			var r, er, cf int
			rows.Scan(&k, &cap, &r, &er, &cf)
			if _, err := c.Exec(ctx, `INSERT INTO gateway_metrics VALUES ($1, $2, $3, $4, $5)`, k, cap, r, er, cf); err != nil {
				t.Fatal(err)
			}
		}
	}
	scenarios := []struct {
		name                       string
		reqs, errs, creditFailures int
		skipLast                   bool
		firing                     map[string]bool
	}{
		{"quiet", 100, 2, 0, false, map[string]bool{}},
		{"errors", 100, 12, 0, false, map[string]bool{"gateway-error-rate": true, "sev1-payment-processing": true}},
		{"credit failures", 100, 0, 25, false, map[string]bool{"credit-deduction-spike": true, "sev1-billing-pipeline": true}},
		{"gateway down", 100, 0, 0, true, map[string]bool{"sev1-inference-gateway-down": true}},
	}
	for _, sc := range scenarios {
		e.fill(t, now, sc.reqs, sc.errs, sc.creditFailures, sc.skipLast)
		copyRows()
		for _, name := range Presets {
			lite, _ := Preset(name, e.db)
			pg, _ := Preset(name, pgdb.String()+"&password="+server.Password())
			want, err := lite.Evaluate(ctx, now)
			if err != nil {
				t.Fatal(err)
			}
			got, err := pg.Evaluate(ctx, now)
			if err != nil {
				t.Fatalf("%s %s on postgres: %v", sc.name, name, err)
			}
			if got != want {
				t.Errorf("%s %s: postgres %+v, sqlite %+v", sc.name, name, got, want)
			}
			if got.Firing != sc.firing[name] {
				t.Errorf("%s %s: firing %v", sc.name, name, got.Firing)
			}
		}
	}
}

// TestDrillFailedCoversPostgresDrills: a failed postgres_drill report fires drill-failed.
func TestDrillFailedCoversPostgresDrills(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	now := time.Now()
	drill := &StateRule{RuleName: "drill-failed", Kind: "drill_failed", State: e.st}
	e.st.SaveReport(ctx, state.Report{Job: "platform-postgres-drill", Kind: "postgres_drill", CreatedAt: now, Passed: false, Body: `{"passed":false}`})
	if ev, _ := drill.Evaluate(ctx, now); !ev.Firing || !strings.Contains(ev.Message, "platform-postgres-drill failed") {
		t.Fatalf("drill: %+v", ev)
	}
}

// TestIsPostgres: URLs and libpq's key=value settings are PostgreSQL; file paths are SQLite.
func TestIsPostgres(t *testing.T) {
	for db, want := range map[string]bool{
		"postgresql://wopr:pw@postgres:5432/wopr_platform":         true,
		"postgres://wopr@db/x":                                     true,
		"host=postgres user=wopr password=pw dbname=wopr_platform": true,
		"dbname=wopr_platform host=/var/run/postgresql":            true,
		"/data/platform/gateway.db":                                false,
		"/data/odd=name/gateway.db":                                false,
		"file:/data/gateway.db?mode=ro":                            false,
	} {
		if got := IsPostgres(db); got != want {
			t.Errorf("IsPostgres(%q) = %v, want %v", db, got, want)
		}
	}
}

// TestPostgresSourceLockedDoesNotStallAlerts: gateway_metrics and credit_transactions are held by
// an ACCESS EXCLUSIVE lock (a migration) for longer than anyone waits. /admin/health answers with
// the figures null (not stale ones), and an evaluation still evaluates the other rules and
// reports the PostgreSQL rule's error instead of waiting for the lock.
func TestPostgresSourceLockedDoesNotStallAlerts(t *testing.T) {
	server, _ := pgtest.Server(t)
	ctx := context.Background()
	pgdb := pgtest.NewDatabase(t, server, "opsd_alerts_lock")
	c, err := pgdb.Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, `CREATE TABLE gateway_metrics (minute_key bigint NOT NULL, capability text NOT NULL, requests int NOT NULL,
		errors int NOT NULL, credit_failures int NOT NULL, PRIMARY KEY (minute_key, capability));
		CREATE TABLE credit_transactions (amount bigint, at bigint)`); err != nil {
		t.Fatal(err)
	}
	tx, err := c.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `LOCK TABLE gateway_metrics, credit_transactions IN ACCESS EXCLUSIVE MODE`); err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	defer func(h, r time.Duration) { healthTimeout, ruleTimeout = h, r }(healthTimeout, ruleTimeout)
	healthTimeout, ruleTimeout = 2*time.Second, 2*time.Second
	dsn := pgdb.String() + "&password=" + server.Password()
	now := time.Date(2026, 11, 25, 12, 0, 30, 0, time.UTC)

	health := make(chan map[string]any, 1)
	go func() {
		health <- AdminHealth(ctx, now, config.Alerts{PostgresDSN: config.Secret(dsn)}, func(context.Context) (int, bool) { return 0, false }, nil, zerolog.Nop())
	}()
	select {
	case h := <-health:
		if h["gateway"] != nil || h["billing"] != nil {
			t.Fatalf("figures from a database that did not answer: %v", h)
		}
	case <-time.After(time.Minute):
		t.Fatal("/admin/health waits for the locked tables")
	}

	e := newEnv(t)
	e.fill(t, now, 100, 12, 0, false)
	ev := NewEvaluator(e.st, e.m, zerolog.Nop(), e.d, "n1", time.Minute)
	pg, _ := Preset("gateway-error-rate", dsn)
	lite, _ := Preset("sev1-payment-processing", e.db)
	ev.SetRules([]Spec{{Rule: pg}, {Rule: lite}})
	done := make(chan struct{})
	go func() {
		ev.EvaluateOnce(ctx, now)
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(time.Minute):
		t.Fatal("the evaluation waits for the locked table: no rule is evaluated meanwhile")
	}
	for _, s := range ev.Statuses() {
		switch s.Name {
		case "gateway-error-rate":
			if s.Error == "" {
				t.Fatalf("the locked source's rule has no error: %+v", s)
			}
		case "sev1-payment-processing":
			if !s.Firing || s.Error != "" {
				t.Fatalf("the other rule was not evaluated: %+v", s)
			}
		}
	}
	// The server gave up too: no session opsd gave up on is left queued behind the lock (each
	// /admin/health call and evaluation would add one, up to max_connections).
	for i := 0; ; i++ {
		var n int
		if err := c.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND wait_event_type = 'Lock'`, pgdb.Database()).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
		if i > 300 {
			t.Fatalf("%d sessions still wait for the lock", n)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
