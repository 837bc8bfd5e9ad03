package jobs

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wopr-network/opsd/internal/artifact"
	"github.com/wopr-network/opsd/internal/artifact/artifacttest"
	"github.com/wopr-network/opsd/internal/demo"
	"github.com/wopr-network/opsd/internal/storage/storagetest"
)

// smallTmpfs mounts a tmpfs of the given size for the test (root only) and unmounts it at the end.
func smallTmpfs(t *testing.T, size string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
	dir := filepath.Join(t.TempDir(), "small")
	os.MkdirAll(dir, 0o700)
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs: %v %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", "-l", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v %s", dir, err, out)
		}
	})
	return dir
}

// TestSQLiteBackupTempDirFillsMidCopy: the backup's temp_dir fills while the copy is written (a
// 4 MiB filesystem for an 11 MB database). The database fails with the temp dir's disk named as
// the full one (SQLite's "database or disk is full" alone reads as the source's), nothing is
// uploaded, the good backup of the day stays, and the partial copy is removed (a copy left
// behind would keep the disk full for every later run).
func TestSQLiteBackupTempDirFillsMidCopy(t *testing.T) {
	small := smallTmpfs(t, "4m")
	store := storagetest.NewS3(t, storagetest.NewFakeS3(t).Config)
	dir := t.TempDir()
	src := filepath.Join(dir, "auth.db")
	if err := demo.ItemsDB(src, 10000); err != nil {
		t.Fatal(err)
	}
	job := func(tmp string) Job {
		return NewSQLiteBackup("platform-db-backup", SQLiteBackupConfig{Databases: []SQLiteDatabase{{Name: "auth", Path: src, Tables: []string{"items"}}},
			Compression: "zstd", TempDir: tmp, Node: "n1", Now: func() time.Time { return day1 }}, store)
	}
	ctx := context.Background()
	r := newRig(t)
	if o := r.runner.Run(ctx, job(filepath.Join(dir, "tmp")), time.Minute, TriggerManual); !o.OK() {
		t.Fatalf("first run: %v", o.Err)
	}
	key := "platform/20261125/auth-20261125.db.zst"
	good, err := artifact.ReadManifest(ctx, store, key)
	if err != nil {
		t.Fatal(err)
	}
	o := r.runner.Run(ctx, job(small), time.Minute, TriggerManual)
	if o.OK() {
		t.Fatal("a backup whose temp dir filled succeeded")
	}
	terr := o.Result.Targets[0].Err
	t.Logf("target error: %v", terr)
	if terr == nil || !strings.Contains(terr.Error(), "the disk holding the copy "+small+"/") || !strings.Contains(terr.Error(), "is full") {
		t.Fatalf("the error does not say the temp dir's disk is full: %v", terr)
	}
	if m, err := artifact.ReadManifest(ctx, store, key); err != nil || m.SHA256 != good.SHA256 {
		t.Fatalf("manifest after the failed run: %+v %v", m, err)
	}
	left, _ := os.ReadDir(small)
	for _, e := range left {
		t.Errorf("left in the full temp dir: %s", e.Name())
	}
	if st, _ := r.state.GetBackup(ctx, "auth", time.Now(), 24*time.Hour); st.LastBackupSuccess {
		t.Fatalf("status says success: %+v", st)
	}
	artifacttest.Check(t, store, "")
}
