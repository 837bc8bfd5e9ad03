package jobs

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/wopr-network/opsd/internal/artifact/artifacttest"
	"github.com/wopr-network/opsd/internal/demo"
	"github.com/wopr-network/opsd/internal/sqlite"
	"github.com/wopr-network/opsd/internal/storage/storagetest"
)

// TestSQLiteBackupSourceRenamedOverMidCopy: an operator (or the platform's own migration)
// replaces the database by renaming a new file over it while the backup copies it. The backup
// must be one consistent database, the one it started copying (its connection holds the old
// file), never a mix of the two files' pages; the bucket holds only objects matching their
// manifests.
func TestSQLiteBackupSourceRenamedOverMidCopy(t *testing.T) {
	store := storagetest.NewS3(t, storagetest.NewFakeS3(t).Config)
	dir := t.TempDir()
	src := filepath.Join(dir, "big.db")
	if err := demo.ItemsDB(src, 12000); err != nil {
		t.Fatal(err)
	}
	before, err := sqlite.CountRows(context.Background(), src, "items")
	if err != nil {
		t.Fatal(err)
	}
	replacement := filepath.Join(dir, "new.db")
	if err := demo.ItemsDB(replacement, 50); err != nil {
		t.Fatal(err)
	}
	steps := 0
	defer sqlite.SetStepHook(func() {
		if steps++; steps == 1 {
			if err := os.Rename(replacement, src); err != nil {
				t.Error(err)
			}
		}
	})()
	j := NewSQLiteBackup("big", SQLiteBackupConfig{Databases: []SQLiteDatabase{{Name: "big", Path: src}}, KeyTemplate: "platform/{date}/{db}-{date}.db",
		Compression: "zstd", TempDir: filepath.Join(dir, "tmp"), Node: "n1"}, store)
	res, err := j.Run(context.Background())
	if steps < 2 {
		t.Fatalf("the copy took %d steps: the rename did not land mid-copy", steps)
	}
	if err != nil {
		t.Logf("backup failed (acceptable: nothing published): %v", err)
		artifacttest.Check(t, store, "")
		return
	}
	restored := filepath.Join(dir, "restored.db")
	download(t, store, res.Targets[0].Key, restored, nil)
	if err := sqlite.Check(context.Background(), restored); err != nil {
		t.Fatalf("the backup of a database renamed over mid-copy is corrupt: %v", err)
	}
	if n, _ := sqlite.CountRows(context.Background(), restored, "items"); n != before {
		t.Fatalf("restored copy has %d rows, want the %d of the database the copy started on", n, before)
	}
	if got := artifacttest.Check(t, store, ""); got != 1 {
		t.Fatalf("checker verified %d artifacts", got)
	}
}
