package jobs

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/wopr-network/opsd/internal/storage/local"
)

// TestRemovedDatabaseStopsBeingStale: a database taken out of the sqlite_backup job is no
// longer tracked (nor stale) after the job's next run, through the Runner as in the daemon; a
// one-off run restricted to some databases retires nothing.
func TestRemovedDatabaseStopsBeingStale(t *testing.T) {
	r := newRig(t)
	ctx := context.Background()
	store, err := local.New(filepath.Join(r.dir, "store"))
	if err != nil {
		t.Fatal(err)
	}
	j, _ := platformJob(t, filepath.Join(r.dir, "src"), store, func(c *SQLiteBackupConfig) { c.Now = time.Now })
	if o := r.runner.Run(ctx, j, time.Minute, TriggerManual); !o.OK() {
		t.Fatal(o.Err)
	}
	tracked := func() map[string]bool {
		all, err := r.state.ListBackups(ctx, time.Now(), 24*time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]bool{}
		for _, b := range all {
			if b.Job != "platform-db-backup" {
				t.Fatalf("row of job %q", b.Job)
			}
			out[b.ContainerID] = true
		}
		return out
	}
	if got := tracked(); len(got) != 7 {
		t.Fatalf("tracked after the first run: %v", got)
	}
	one, err := j.Only([]string{"auth"})
	if err != nil {
		t.Fatal(err)
	}
	if o := r.runner.Run(ctx, one, time.Minute, TriggerManual); !o.OK() {
		t.Fatal(o.Err)
	}
	if got := tracked(); len(got) != 7 {
		t.Fatalf("a --db run retired targets: %v", got)
	}
	// The config drops "billing": the next run stops tracking it.
	cfg := j.cfg
	cfg.Databases = nil
	for _, d := range j.cfg.Databases {
		if d.Name != "billing" {
			cfg.Databases = append(cfg.Databases, d)
		}
	}
	j2 := NewSQLiteBackup("platform-db-backup", cfg, store)
	if o := r.runner.Run(ctx, j2, time.Minute, TriggerManual); !o.OK() {
		t.Fatal(o.Err)
	}
	if got := tracked(); len(got) != 6 || got["billing"] {
		t.Fatalf("a removed database is still tracked: %v", got)
	}
	if _, ok := r.metrics.Backups.GetFor("platform-db-backup", "billing"); ok {
		t.Fatal("a removed database still has metric series")
	}
}
