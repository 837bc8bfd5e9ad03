package config

import (
	"reflect"
	"testing"
)

// TestPlatformSchedules: the heartbeat's schedules are the enabled, scheduled platform jobs' own,
// spaces normalised and a cron time followed by the node's zone.
func TestPlatformSchedules(t *testing.T) {
	off := false
	c := &Config{Timezone: "Europe/Paris", Coordination: Coordination{Postgres: CoordinationPostgres{DSN: "postgres://x"}}, Jobs: []Job{
		{Name: "prune", Kind: "prune", Schedule: "0  3 * * *"},
		{Name: "verify", Kind: "offsite_verify", Schedule: "@every 6h"},
		{Name: "db", Kind: "sqlite_backup", Schedule: "0 * * * *"},                  // node-scoped
		{Name: "drill", Kind: "sqlite_drill", Schedule: "0 4 * * *", Enabled: &off}, // disabled
		{Name: "manual", Kind: "prune"},                                             // no schedule
	}}
	want := map[string]string{"prune": "0 3 * * * (Europe/Paris)", "verify": "@every 6h"}
	if got := c.PlatformSchedules(); !reflect.DeepEqual(got, want) {
		t.Fatalf("PlatformSchedules = %v, want %v", got, want)
	}
	c.Coordination = Coordination{} // without coordination every job is node-scoped
	if got := c.PlatformSchedules(); got != nil {
		t.Fatalf("without coordination: %v, want nil", got)
	}
}
