package alerts

import (
	"context"
	"time"

	"github.com/rs/zerolog"

	"github.com/wopr-network/opsd/config"
	"github.com/wopr-network/opsd/internal/docker"
)

// healthTimeout bounds how long /admin/health waits for the platform's databases.
var healthTimeout = 10 * time.Second

// AdminHealth is the platform's /admin/health: the gateway and billing figures from the
// platform's databases when they are configured (from PostgreSQL when alerts.postgres_dsn is
// set, else the SQLite files), the fleet's running bots when activeBots knows them, and the
// alerts; a figure whose source is not configured or fails is null. The windows end at now.
func AdminHealth(ctx context.Context, now time.Time, a config.Alerts, activeBots func(context.Context) (int, bool), statuses []Status, log zerolog.Logger) map[string]any {
	out := map[string]any{"timestamp": now.UTC().Format(time.RFC3339), "gateway": nil, "fleet": nil, "billing": nil}
	// A database that does not answer (down, locked by a migration) makes its figures null
	// instead of holding the request.
	dbctx, cancel := context.WithTimeout(ctx, healthTimeout)
	defer cancel()
	var gateway map[string]any
	var credits float64
	var gerr, cerr error
	switch {
	case a.PostgresDSN != "":
		dsn, q := a.PostgresDSN.Value(), a.CreditsQuery
		if q == "" {
			q = DefaultCreditsQuery
		}
		gateway, gerr = GatewaySummaryPostgres(dbctx, dsn, now)
		credits, cerr = QueryNumber(dbctx, dsn, q, now)
	default:
		if a.GatewayDB != "" {
			gateway, gerr = GatewaySummary(dbctx, a.GatewayDB, now)
		}
		if a.CreditsDB != "" {
			credits, cerr = CreditsConsumed(dbctx, a.CreditsDB, a.CreditsQuery, now)
		}
	}
	if gerr != nil {
		log.Warn().Err(gerr).Msg("admin health: gateway figures")
	} else if gateway != nil {
		out["gateway"] = gateway
	}
	if cerr != nil {
		log.Warn().Err(cerr).Msg("admin health: billing figures")
	} else if a.PostgresDSN != "" || a.CreditsDB != "" {
		out["billing"] = map[string]any{"creditsConsumed24h": credits}
	}
	if n, ok := activeBots(ctx); ok {
		out["fleet"] = map[string]any{"activeBots": n}
	}
	type alert struct {
		Name    string `json:"name"`
		Firing  bool   `json:"firing"`
		Message string `json:"message"`
	}
	list := []alert{}
	for _, s := range statuses {
		list = append(list, alert{s.Name, s.Firing, s.Message})
	}
	out["alerts"] = list
	return out
}

// ContainerLister lists containers by name prefix (the Docker client).
type ContainerLister interface {
	List(ctx context.Context, prefix string, labels map[string]string) ([]docker.Container, error)
}

// RunningContainers counts the running containers whose names start with prefix; false when the
// engine does not answer.
func RunningContainers(ctx context.Context, l ContainerLister, prefix string) (int, bool) {
	list, err := l.List(ctx, prefix, nil)
	if err != nil {
		return 0, false
	}
	n := 0
	for _, c := range list {
		if c.State == "running" {
			n++
		}
	}
	return n, true
}
