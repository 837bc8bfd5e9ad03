package main

import (
	"context"
	"fmt"
	"time"

	"github.com/wopr-network/opsd/alerts"
	"github.com/wopr-network/opsd/config"
)

// buildAlerts turns the config's rules into specs. The docker_events rule reuses one watcher
// (it holds what the event stream said), started by the daemon.
func (m *Main) buildAlerts(cfg *config.Config) ([]alerts.Spec, error) {
	var specs []alerts.Spec
	for i, r := range cfg.Alerts.Rules {
		var rule alerts.Rule
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
			p, err := alerts.Preset(r.Preset, db)
			if err != nil {
				return nil, fmt.Errorf("alerts.rules[%d]: %w", i, err)
			}
			rule = renamed{p, r.Name}
		case "sql":
			rule = &alerts.SQLRule{RuleName: r.Name, DB: r.DB, Query: r.Query, Denom: r.Denominator, Op: r.Op, Threshold: threshold}
		case "http_json":
			rule = &alerts.HTTPJSONRule{RuleName: r.Name, URL: r.URL.Value(), Token: r.Token.Value(), Path: r.Path, Op: r.Op, Threshold: threshold}
		case "docker_events":
			if m.stops == nil {
				m.stops = &alerts.UnexpectedStops{RuleName: r.Name, Source: m.docker, Prefix: r.NamePrefix, ResolveAfter: r.ResolveAfter.D(), Log: m.log, Check: m.docker.Ping}
			}
			rule = m.stops
		case "system":
			rule = &alerts.SystemRule{RuleName: r.Name, Kind: r.Resource, Path: r.DiskPath, Threshold: threshold}
		default: // the built-ins over opsd's own state
			rule = &alerts.StateRule{RuleName: r.Name, Kind: r.Kind, State: m.state, Failures: r.Failures,
				StaleAfter: func() time.Duration { return m.cfg().State.StaleAfter.D() },
				Jobs: func() []string {
					var names []string
					for _, j := range m.cfg().Jobs {
						names = append(names, j.Name)
					}
					return names
				}}
		}
		// Gateway rules watch the platform as a whole; the others watch this node (its host, its
		// containers, its own jobs and backups), so each node's firing is its own incident.
		perNode := r.Kind != "preset" && r.Kind != "sql" && r.Kind != "http_json"
		specs = append(specs, alerts.Spec{Rule: rule, For: r.For.D(), Severity: r.Severity, PerNode: perNode})
	}
	return specs, nil
}

// renamed gives a preset the rule's configured name.
type renamed struct {
	alerts.Rule
	name string
}

func (r renamed) Name() string { return r.name }

// notifiers builds the configured notifiers (they take effect at start).
func (m *Main) notifiers(cfg *config.Config) []alerts.Notifier {
	var ns []alerts.Notifier
	n := cfg.Alerts.Notify
	if (n.Sentry == nil || *n.Sentry) && m.sentry.Enabled() {
		ns = append(ns, alerts.SentryNotifier{Sentry: m.sentry})
	}
	if n.PagerDuty.RoutingKey != "" {
		ns = append(ns, alerts.PagerDuty{URL: n.PagerDuty.URL, RoutingKey: n.PagerDuty.RoutingKey.Value()})
	}
	if n.Webhook.URL != "" {
		ns = append(ns, alerts.Webhook{URL: n.Webhook.URL.Value(), Token: n.Webhook.Token.Value()})
	}
	return ns
}

// startAlerts starts the evaluator, the notification dispatcher and the docker event watcher.
func (m *Main) startAlerts(ctx context.Context) {
	m.dispatch.Start(context.WithoutCancel(ctx)) // drains on Close, bounded there
	if m.stops != nil {
		m.stops.Kick = m.evaluator.Kick
		m.bg.Add(1)
		go func() {
			defer m.bg.Done()
			m.stops.Watch(ctx)
		}()
	}
	m.bg.Add(1)
	go func() {
		defer m.bg.Done()
		m.evaluator.Run(ctx)
	}()
}
