package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wopr-network/opsd/internal/demo"
)

// TestBackupUnderWrites proves, without depending on machine speed, that the copy finishes while
// writes keep committing: after every copy step a second connection commits one more row (each
// commit must succeed while the copy holds its read transaction), and the copy holds exactly the
// rows committed before it began (the snapshot stays pinned however many commits land meanwhile).
// Both copy paths: the durable Backup and the job's BackupScratch.
func TestBackupUnderWrites(t *testing.T) {
	for _, c := range []struct {
		name string
		copy func(context.Context, string, string) error
	}{{"Backup", Backup}, {"BackupScratch", BackupScratch}} {
		t.Run(c.name, func(t *testing.T) { testBackupUnderWrites(t, c.copy) })
	}
}

func testBackupUnderWrites(t *testing.T, backup func(context.Context, string, string) error) {
	dir := t.TempDir()
	src := filepath.Join(dir, "live.db")
	rows := int64(30000) // ~33 MB: several 1024-page steps
	if !testing.Short() {
		rows = 100000 // ~110 MB
	}
	if err := demo.ItemsDB(src, int(rows)); err != nil {
		t.Fatal(err)
	}
	w, err := sql.Open("sqlite", dsn(src, "rw", "busy_timeout(10000)"))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	// Commit once before the copy so the writer's connection is open and the -wal exists.
	if _, err := w.Exec(`INSERT INTO items (payload) VALUES (randomblob(200))`); err != nil {
		t.Fatal(err)
	}
	before := rows + 1
	steps := 0
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	defer SetStepHook(func() {
		steps++
		if steps > 1000 { // a copy that restarts on every write never ends: fail instead of hanging
			cancel()
		}
		if _, err := w.Exec(`INSERT INTO items (payload) VALUES (randomblob(200))`); err != nil {
			t.Errorf("after copy step %d a writer could not commit while the copy was in progress: %v", steps, err)
		}
	})()
	dst := filepath.Join(dir, "copy.db")
	if err := backup(ctx, src, dst); err != nil {
		t.Fatalf("backup did not finish while writes committed (%d steps): %v", steps, err)
	}
	if steps < 3 {
		t.Fatalf("the copy took %d steps; the test needs at least 3 to interleave commits", steps)
	}
	if err := Check(context.Background(), dst); err != nil {
		t.Fatalf("copy: %v", err)
	}
	n, err := CountRows(context.Background(), dst, "items")
	if err != nil {
		t.Fatal(err)
	}
	if n != before {
		t.Fatalf("copy has %d rows, want exactly the %d committed before the copy began", n, before)
	}
	live, err := CountRows(context.Background(), src, "items")
	if err != nil {
		t.Fatal(err)
	}
	if live != before+int64(steps) {
		t.Fatalf("live database has %d rows, want %d: every commit made during the copy must have landed", live, before+int64(steps))
	}
}

func TestBackupMissingSource(t *testing.T) {
	dir := t.TempDir()
	err := Backup(context.Background(), filepath.Join(dir, "nope.db"), filepath.Join(dir, "copy.db"))
	if !errors.Is(err, ErrNotExist) || !strings.Contains(err.Error(), "nope.db") {
		t.Fatalf("err = %v, want ErrNotExist naming the path", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "nope.db")); !os.IsNotExist(err) {
		t.Fatal("backup created the missing source file")
	}
}

func TestBackupCancelledMidCopyRemovesCopy(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "live.db")
	if err := demo.ItemsDB(src, 12000); err != nil {
		t.Fatal(err)
	} // ~13 MB: four steps of 1024 pages
	ctx, cancel := context.WithCancel(context.Background())
	steps := 0
	defer SetStepHook(func() {
		steps++
		if steps == 2 {
			cancel()
		}
	})()
	dst := filepath.Join(dir, "copy.db")
	if err := Backup(ctx, src, dst); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if steps != 2 {
		t.Fatalf("copy stopped after %d steps, want 2 (cancelled mid-copy)", steps)
	}
	for _, s := range []string{"", "-journal", "-wal", "-shm"} {
		if _, err := os.Stat(dst + s); !os.IsNotExist(err) {
			t.Fatalf("%s left behind", dst+s)
		}
	}
}

// TestCheckCatchesCorruptCopy: a copy made without a journal or per-step fsyncs is still only
// trusted after PRAGMA integrity_check, which catches a page overwritten after the copy.
func TestCheckCatchesCorruptCopy(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "live.db")
	if err := demo.ItemsDB(src, 3000); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		copy func(context.Context, string, string) error
	}{{"Backup", Backup}, {"BackupScratch", BackupScratch}} {
		dst := filepath.Join(dir, c.name+".db")
		if err := c.copy(context.Background(), src, dst); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(dst + "-journal"); !os.IsNotExist(err) {
			t.Errorf("%s: the copy left a journal", c.name)
		}
		if _, err := Verify(context.Background(), dst, []string{"items"}); err != nil {
			t.Fatalf("%s: intact copy: %v", c.name, err)
		}
		info, err := Inspect(context.Background(), dst)
		if err != nil {
			t.Fatal(err)
		}
		// Overwrite one interior page of the items table with zeros.
		f, err := os.OpenFile(dst, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteAt(make([]byte, info.PageSize), info.PageSize*(info.PageCount/2)); err != nil {
			t.Fatal(err)
		}
		f.Close()
		if err := Check(context.Background(), dst); err == nil || !strings.Contains(err.Error(), "integrity check failed") {
			t.Fatalf("%s: corrupt copy: %v, want an integrity check failure", c.name, err)
		}
	}
}
