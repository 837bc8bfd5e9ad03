package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/wopr-network/opsd/config"
	"github.com/wopr-network/opsd/internal/postgres/pgtest"
)

// TestAdminHealthFromPostgres: /admin/health of a daemon reading the platform's PostgreSQL
// database (alerts.postgres_dsn) has the same gateway and billing JSON as one reading the same
// rows from SQLite files, the gateway presets are on, and the password is in neither the body
// nor the log.
func TestAdminHealthFromPostgres(t *testing.T) {
	server, _ := pgtest.Server(t)
	ctx := context.Background()
	pgdb := pgtest.NewDatabase(t, server, "opsd_health")
	dir := t.TempDir()
	now := time.Now()
	minute := now.Truncate(time.Minute)
	type row struct {
		key            int64
		capability     string
		reqs, errs, cf int
	}
	var rows []row
	for i := 1; i <= 3; i++ {
		k := minute.Add(-time.Duration(i) * time.Minute).UnixMilli()
		rows = append(rows, row{k, "chat", 40 * i, i, 0}, row{k, "image", 10, 3, 0}, row{k, "__credit_failures__", 0, 0, 2})
	}
	rows = append(rows, row{minute.Add(-30 * time.Minute).UnixMilli(), "chat", 500, 50, 0}) // only in the 60 min window
	credits := [][2]int64{{-5, now.Unix() - 60}, {-7, now.Unix() - 3600}, {100, now.Unix() - 60}, {-1000, now.Unix() - 3*86400}}

	gw, cr := filepath.Join(dir, "gateway.db"), filepath.Join(dir, "credits.db")
	for _, f := range []string{gw, cr} {
		db, err := sql.Open("sqlite", "file:"+f)
		if err != nil {
			t.Fatal(err)
		}
		db.Exec(`CREATE TABLE gateway_metrics (minute_key INTEGER, capability TEXT, requests INTEGER, errors INTEGER, credit_failures INTEGER)`)
		db.Exec(`CREATE TABLE credit_transactions (id INTEGER PRIMARY KEY, tenant TEXT, amount INTEGER, reason TEXT, at INTEGER)`)
		for _, r := range rows {
			db.Exec(`INSERT INTO gateway_metrics VALUES (?, ?, ?, ?, ?)`, r.key, r.capability, r.reqs, r.errs, r.cf)
		}
		for _, c := range credits {
			db.Exec(`INSERT INTO credit_transactions (tenant, amount, reason, at) VALUES ('t', ?, 'x', ?)`, c[0], c[1])
		}
		db.Close()
	}
	c, err := pgdb.Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	c.Exec(ctx, `CREATE TABLE gateway_metrics (minute_key bigint, capability text, requests int, errors int, credit_failures int)`)
	c.Exec(ctx, `CREATE TABLE credit_transactions (id bigserial PRIMARY KEY, tenant text, amount bigint, reason text, at bigint)`)
	for _, r := range rows {
		if _, err := c.Exec(ctx, `INSERT INTO gateway_metrics VALUES ($1, $2, $3, $4, $5)`, r.key, r.capability, r.reqs, r.errs, r.cf); err != nil {
			t.Fatal(err)
		}
	}
	for _, cc := range credits {
		c.Exec(ctx, `INSERT INTO credit_transactions (tenant, amount, reason, at) VALUES ('t', $1, 'x', $2)`, cc[0], cc[1])
	}

	health := func(name, alertsBlock string) (map[string]any, string, string) {
		cfgPath := filepath.Join(dir, name+".yaml")
		writeConfig(t, cfgPath, fmt.Sprintf(`node_id: %s
http:
  admin_token: %s
state:
  path: %s/%s.db
storage:
  backend: local
  local: {path: %s/store}
alerts:
  interval: 1h
%s`, name, token, dir, name, dir, alertsBlock))
		cfg, err := config.Load(cfgPath)
		if err != nil {
			t.Fatal(err)
		}
		logs := &syncBuffer{}
		m, err := NewMain(ctx, cfg, Options{Stderr: logs, Listen: "127.0.0.1:0"})
		if err != nil {
			t.Fatal(err)
		}
		if err := m.Run(ctx); err != nil {
			t.Fatal(err)
		}
		defer m.Close(ctx)
		m.evaluator.EvaluateOnce(ctx, time.Now())
		code, body := getAuth(t, "http://"+m.Addr().String()+"/admin/health", token)
		if code != 200 {
			t.Fatalf("%s: /admin/health %d %s", name, code, body)
		}
		var out map[string]any
		json.Unmarshal([]byte(body), &out)
		return out, body, logs.String()
	}
	lite, _, _ := health("lite", fmt.Sprintf("  gateway_db: %s\n  credits_db: %s\n", gw, cr))
	pg, body, logs := health("pg", fmt.Sprintf("  postgres_dsn: %q\n", strings.Replace(pgdb.String(), "@", ":"+server.Password()+"@", 1)))
	for _, k := range []string{"gateway", "billing"} {
		if pg[k] == nil || !reflect.DeepEqual(pg[k], lite[k]) {
			t.Fatalf("%s: postgres %v, sqlite %v", k, pg[k], lite[k])
		}
	}
	if got := pg["billing"].(map[string]any)["creditsConsumed24h"]; got != 12.0 {
		t.Fatalf("creditsConsumed24h %v, want 12", got)
	}
	if !strings.Contains(body, `"name":"gateway-error-rate"`) || !strings.Contains(body, `"name":"sev1-inference-gateway-down"`) {
		t.Fatalf("presets not evaluated: %s", body)
	}
	if strings.Contains(body+logs, server.Password()) {
		t.Fatal("password in /admin/health or the log")
	}
}
