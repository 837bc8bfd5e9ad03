package alerts

import (
	"fmt"
	"time"

	"github.com/rs/zerolog"

	"github.com/wopr-network/opsd/config"
	"github.com/wopr-network/opsd/internal/docker"
	"github.com/wopr-network/opsd/internal/state"
	"github.com/wopr-network/opsd/internal/telemetry"
)

// Builder turns the job file's alert rules into specs. The docker_events rule reuses one
// watcher across reloads (it holds what the event stream said): Stops, once built, is the
// daemon's to start.
type Builder struct {
	State  *state.Store
	Docker *docker.Client
	Log    zerolog.Logger
	// Config returns the config in force (state rules read stale_after and the job list live).
	Config func() *config.Config
	Stops  *UnexpectedStops
}

// Specs builds the rules of cfg.
func (b *Builder) Specs(cfg *config.Config) ([]Spec, error) {
	var specs []Spec
	for i, r := range cfg.Alerts.Rules {
		var rule Rule
		threshold := 0.0
		if r.Threshold != nil {
			threshold = *r.Threshold
		}
		switch r.Kind {
		case "preset":
			db := r.DB
			if db == "" {
				db = cfg.Alerts.GatewayDB
			}
			if r.DB == "" && cfg.Alerts.PostgresDSN != "" {
				db = cfg.Alerts.PostgresDSN.Value() // the platform's PostgreSQL database wins
			}
			p, err := Preset(r.Preset, db)
			if err != nil {
				return nil, fmt.Errorf("alerts.rules[%d]: %w", i, err)
			}
			rule = renamed{p, r.Name}
		case "sql":
			rule = &SQLRule{RuleName: r.Name, DB: r.DB, Query: r.Query, Denom: r.Denominator, Op: r.Op, Threshold: threshold}
		case "http_json":
			rule = &HTTPJSONRule{RuleName: r.Name, URL: r.URL.Value(), Token: r.Token.Value(), Path: r.Path, Op: r.Op, Threshold: threshold}
		case "docker_events":
			if b.Stops == nil {
				b.Stops = &UnexpectedStops{RuleName: r.Name, Source: b.Docker, Prefix: r.NamePrefix, ResolveAfter: r.ResolveAfter.D(), Log: b.Log, Check: b.Docker.Ping}
			}
			rule = b.Stops
		case "system":
			rule = &SystemRule{RuleName: r.Name, Kind: r.Resource, Path: r.DiskPath, Threshold: threshold}
		default: // the built-ins over opsd's own state
			rule = &StateRule{RuleName: r.Name, Kind: r.Kind, State: b.State, Failures: r.Failures,
				StaleAfter: func() time.Duration { return b.Config().State.StaleAfter.D() },
				Jobs: func() []string {
					var names []string
					for _, j := range b.Config().Jobs {
						names = append(names, j.Name)
					}
					return names
				}}
		}
		// Gateway rules watch the platform as a whole; the others watch this node (its host, its
		// containers, its own jobs and backups), so each node's firing is its own incident.
		perNode := r.Kind != "preset" && r.Kind != "sql" && r.Kind != "http_json"
		specs = append(specs, Spec{Rule: rule, For: r.For.D(), Severity: r.Severity, PerNode: perNode})
	}
	return specs, nil
}

// renamed gives a preset the rule's configured name.
type renamed struct {
	Rule
	name string
}

func (r renamed) Name() string { return r.name }

// Notifiers builds the configured notifiers (they take effect at start). PagerDuty and the
// webhook pass every event through the redactor Sentry's events use (it follows config
// reloads).
func Notifiers(n config.Notify, sentry *telemetry.Sentry) []Notifier {
	red := sentry.Redactor()
	var ns []Notifier
	if (n.Sentry == nil || *n.Sentry) && sentry.Enabled() {
		ns = append(ns, SentryNotifier{Sentry: sentry})
	}
	if n.PagerDuty.RoutingKey != "" {
		ns = append(ns, PagerDuty{URL: n.PagerDuty.URL, RoutingKey: n.PagerDuty.RoutingKey.Value(), Redactor: red})
	}
	if n.Webhook.URL != "" {
		ns = append(ns, Webhook{URL: n.Webhook.URL.Value(), Token: n.Webhook.Token.Value(), Redactor: red})
	}
	return ns
}
