package alerts

import (
	"context"
	"database/sql"
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/wopr-network/opsd/config"
)

// TestPlatformFigures: the /admin/health gateway and billing figures from real SQLite files.
func TestPlatformFigures(t *testing.T) {
	e := newEnv(t)
	now := time.Now()
	e.fill(t, now, 100, 10, 0, false) // 5 minutes of 100 req/min, 10 errors/min; 1000/1000 ten minutes ago
	g, err := GatewaySummary(context.Background(), e.db, now)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(g)
	var got struct {
		Last5m struct {
			TotalRequests, TotalErrors int64
			ErrorRate                  float64
		} `json:"last5m"`
		Last60m struct{ TotalRequests int64 } `json:"last60m"`
	}
	json.Unmarshal(b, &got)
	if got.Last5m.TotalRequests != 500 || got.Last5m.TotalErrors != 50 || got.Last5m.ErrorRate != 0.1 || got.Last60m.TotalRequests != 1500 {
		t.Fatalf("gateway summary: %s", b)
	}

	credits := filepath.Join(e.dir, "credits.db")
	c, _ := sql.Open("sqlite", "file:"+credits)
	c.Exec(`CREATE TABLE credit_transactions (id INTEGER PRIMARY KEY, tenant TEXT, amount INTEGER, reason TEXT, at INTEGER)`)
	sec := now.Unix()
	for _, r := range []struct{ amount, at int64 }{{-30, sec - 60}, {-12, sec - 3600}, {500, sec - 60}, {-99, sec - 90000}} {
		c.Exec(`INSERT INTO credit_transactions (tenant, amount, reason, at) VALUES ('t', ?, 'x', ?)`, r.amount, r.at)
	}
	c.Close()
	if v, err := CreditsConsumed(context.Background(), credits, "", now); err != nil || v != 42 {
		t.Fatalf("credits consumed in 24h = %v, %v; want 42", v, err)
	}
	if _, err := CreditsConsumed(context.Background(), filepath.Join(e.dir, "absent.db"), "", now); err == nil {
		t.Fatal("a missing credits database gave no error")
	}

	// /admin/health from the SQLite sources: every figure present; the fleet's from activeBots.
	bots := func(context.Context) (int, bool) { return 3, true }
	h := AdminHealth(context.Background(), now, config.Alerts{GatewayDB: e.db, CreditsDB: credits}, bots,
		[]Status{{Name: "stale", Firing: true, Message: "2 stale"}}, zerolog.Nop())
	b, _ = json.Marshal(h)
	var body struct {
		Gateway *struct{ Last5m struct{ TotalRequests int64 } }
		Fleet   struct{ ActiveBots int }
		Billing struct{ CreditsConsumed24h float64 }
		Alerts  []struct {
			Name   string
			Firing bool
		}
	}
	json.Unmarshal(b, &body)
	if body.Gateway == nil || body.Gateway.Last5m.TotalRequests != 500 || body.Fleet.ActiveBots != 3 || body.Billing.CreditsConsumed24h != 42 ||
		len(body.Alerts) != 1 || !body.Alerts[0].Firing {
		t.Fatalf("/admin/health: %s", b)
	}
	// No source configured, an unknown fleet: null figures, an empty alert list (not null).
	h = AdminHealth(context.Background(), now, config.Alerts{CreditsDB: filepath.Join(e.dir, "absent.db")},
		func(context.Context) (int, bool) { return 0, false }, nil, zerolog.Nop())
	b, _ = json.Marshal(h)
	var empty map[string]any
	json.Unmarshal(b, &empty)
	if empty["gateway"] != nil || empty["fleet"] != nil || empty["billing"] != nil || empty["alerts"] == nil {
		t.Fatalf("/admin/health without sources: %s", b)
	}
}
