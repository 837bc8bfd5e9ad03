package config

import (
	"fmt"
	"regexp"
	"strings"
	"time"
)

// Coordination configures fleet coordination through the platform's PostgreSQL database.
type Coordination struct {
	Postgres CoordinationPostgres `yaml:"postgres"`
	// HeartbeatInterval: how often this node records that it is alive (default 30s).
	HeartbeatInterval Duration `yaml:"heartbeat_interval"`
	// NodeLostAfter: a node that backs up containers and has not sent a heartbeat for this long
	// is lost (default 3 heartbeat intervals).
	NodeLostAfter Duration `yaml:"node_lost_after"`
}

// CoordinationPostgres is the coordination database.
type CoordinationPostgres struct {
	DSN     Secret `yaml:"dsn"`
	DSNFile string `yaml:"dsn_file"`
	// Schema holds opsd's own tables, created and migrated by opsd (default opsd).
	Schema string `yaml:"schema"`
}

// Enabled reports whether coordination is configured.
func (c Coordination) Enabled() bool { return c.Postgres.DSN != "" }

// Scope returns the job's scope: as set, or the kind's default when coordination is configured
// (bucket-wide kinds are platform-scoped; backups of this node's files and containers are
// node-scoped), or "node" without coordination.
func (c *Config) Scope(j Job) string {
	if j.Scope != "" {
		return j.Scope
	}
	if !c.Coordination.Enabled() {
		return "node"
	}
	return DefaultScope(j.Kind)
}

// DefaultScope is a kind's scope when coordination is configured.
func DefaultScope(kind string) string {
	switch kind {
	case "prune", "offsite_verify", "sqlite_drill", "container_drill", "node_drill", "postgres_backup", "postgres_drill":
		return "platform"
	}
	return "node"
}

var coordSchemaRe = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

func (c *Config) setCoordinationDefaults() {
	k := &c.Coordination
	setDefault(&k.Postgres.Schema, "opsd")
	setDefault(&k.HeartbeatInterval, Duration(30*time.Second))
	setDefault(&k.NodeLostAfter, 3*k.HeartbeatInterval)
}

func (c *Config) validateCoordination(bad func(path, format string, args ...any)) {
	k := c.Coordination
	if !coordSchemaRe.MatchString(k.Postgres.Schema) {
		bad("coordination.postgres.schema", "%q: want lowercase letters, digits and _ (at most 63)", k.Postgres.Schema)
	}
	if k.HeartbeatInterval < Duration(time.Second) || k.HeartbeatInterval > Duration(time.Hour) {
		bad("coordination.heartbeat_interval", "must be between 1s and 1h")
	}
	if k.NodeLostAfter < k.HeartbeatInterval || k.NodeLostAfter > Duration(7*24*time.Hour) {
		bad("coordination.node_lost_after", "must be between heartbeat_interval and 7d")
	}
	for i, j := range c.Jobs {
		p := fmt.Sprintf("jobs[%d].scope", i)
		switch j.Scope {
		case "", "node":
		case "platform":
			if !k.Enabled() {
				bad(p, "platform needs coordination.postgres (a platform job runs once across the fleet, and only through the coordination database)")
			}
		default:
			bad(p, "must be platform or node, got %q", j.Scope)
		}
	}
}

// PlatformSchedules are the schedules of the enabled, scheduled platform-scoped jobs by job name,
// as the fleet's heartbeats compare them across nodes: the expression with single spaces, a cron
// time followed by the config's time zone (@every is not in one); nil when there is none.
func (c *Config) PlatformSchedules() map[string]string {
	var out map[string]string
	for _, j := range c.Jobs {
		if !j.IsEnabled() || j.Schedule == "" || c.Scope(j) != "platform" {
			continue
		}
		if out == nil {
			out = map[string]string{}
		}
		sched := strings.Join(strings.Fields(j.Schedule), " ")
		if !strings.HasPrefix(sched, "@every") {
			sched += " (" + c.Timezone + ")" // a cron time is in the node's zone
		}
		out[j.Name] = sched
	}
	return out
}
