package jobs

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wopr-network/opsd/internal/artifact"
	"github.com/wopr-network/opsd/internal/artifact/artifacttest"
	"github.com/wopr-network/opsd/internal/demo"
	"github.com/wopr-network/opsd/internal/storage"
	"github.com/wopr-network/opsd/internal/storage/storagetest"
)

// assertManifestsMatchObjects fails the test unless every manifest's object exists and matches
// its size and SHA-256 (the shared checker of the fault tests).
func assertManifestsMatchObjects(t *testing.T, store storage.Store) {
	t.Helper()
	artifacttest.Check(t, store, "")
}

// TestSQLiteBackupSourceGates: an empty source, a source that is not SQLite, and a database
// without its expected tables (billing's file at auth's path) fail the backup naming the path;
// nothing is uploaded for them, the others are backed up, and yesterday's backups stay.
func TestSQLiteBackupSourceGates(t *testing.T) {
	fake := storagetest.NewFakeS3(t)
	store := storagetest.NewS3(t, fake.Config)
	dir := t.TempDir()
	tables := map[string][]string{"auth": {"user", "session", "account"}, "billing": {"meter_events"}, "credits": {"credit_transactions"}}
	j, paths := platformJob(t, dir, store, func(c *SQLiteBackupConfig) {
		for i := range c.Databases {
			c.Databases[i].Tables = tables[c.Databases[i].Name]
		}
	})
	ctx := context.Background()
	if _, err := j.Run(ctx); err != nil {
		t.Fatal(err)
	}
	yesterday := map[string]string{}
	for _, n := range demo.Names {
		m, err := artifact.ReadManifest(ctx, store, "platform/20261125/"+n+"-20261125.db")
		if err != nil {
			t.Fatal(err)
		}
		yesterday[n] = m.SHA256
	}
	// Break three sources the way an operator would meet them.
	os.Truncate(paths["credits"], 0)                                               // a truncated file
	os.WriteFile(paths["quotas"], []byte("<html>502 Bad Gateway</html>\n"), 0o644) // not a database
	b, _ := os.ReadFile(paths["billing"])
	os.WriteFile(paths["auth"], b, 0o644) // billing's database under auth's name
	for _, s := range []string{"-wal", "-shm"} {
		os.Remove(paths["auth"] + s)
	}
	j.cfg.Now = func() time.Time { return day1.Add(24 * time.Hour) }
	res, err := j.Run(ctx)
	if err == nil || !strings.Contains(err.Error(), "3 of 7 databases failed") {
		t.Fatalf("run error = %v", err)
	}
	want := map[string]string{"credits": "database is empty (0 bytes)", "quotas": "not a SQLite database", "auth": "missing tables: user, session, account"}
	for _, tr := range res.Targets {
		key := "platform/20261126/" + tr.Name + "-20261126.db"
		if w, bad := want[tr.Name]; bad {
			if tr.Status != TargetFailed || !strings.Contains(tr.Err.Error(), w) || !strings.Contains(tr.Err.Error(), paths[tr.Name]) || !strings.Contains(tr.Err.Error(), "nothing uploaded") {
				t.Fatalf("%s: %+v, want %q naming %s", tr.Name, tr.Err, w, paths[tr.Name])
			}
			if fake.HasObject(key) || fake.HasObject(artifact.ManifestKey(key)) {
				t.Fatalf("%s: a bad source was uploaded", tr.Name)
			}
			continue
		}
		if tr.Status != TargetOK {
			t.Fatalf("%s was not backed up: %+v", tr.Name, tr)
		}
	}
	for n, sum := range yesterday {
		if m, err := artifact.ReadManifest(ctx, store, "platform/20261125/"+n+"-20261125.db"); err != nil || m.SHA256 != sum {
			t.Fatalf("yesterday's %s backup changed: %v", n, err)
		}
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "tmp", "*")); len(left) != 0 {
		t.Fatalf("temp files left: %v", left)
	}
	assertManifestsMatchObjects(t, store)
}
