package alerts

import (
	"context"
	"database/sql"
	"strings"
	"testing"
	"time"

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
