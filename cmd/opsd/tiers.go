package main

import (
	"github.com/wopr-network/opsd/config"
	"github.com/wopr-network/opsd/jobs"
)

// tierSource turns a job's resolved tier_source into the jobs' resolver, with the tier table's
// names as the known tiers.
func tierSource(ts config.TierSource, cfg *config.Config) (*jobs.TierSource, error) {
	s := &jobs.TierSource{Kind: ts.Kind, Label: ts.Label, Map: ts.Map, Query: ts.Query, TenantFrom: ts.TenantFrom,
		Tiers: cfg.TierNames(), Timeout: ts.Timeout.D()}
	if ts.Default != nil {
		s.Default = *ts.Default
	}
	if ts.Kind == "query" {
		if ts.DB != "" {
			s.Driver, s.DSN = "sqlite", ts.DB
		} else {
			dsn, err := ts.DSNValue()
			if err != nil {
				return nil, err
			}
			s.Driver, s.DSN = "pgx", dsn
		}
	}
	return s, nil
}

// tenantSource is the tier source that knows the platform's tenants (a container_export job's map
// or query source), for the prune job's orphan policy; nil when there is none.
func tenantSource(cfg *config.Config) (*jobs.TierSource, error) {
	for _, j := range cfg.Jobs {
		if c := j.ContainerExport; c != nil && c.TierSource.KnowsTenants() {
			return tierSource(c.ResolvedTierSource(), cfg)
		}
	}
	return nil, nil
}
