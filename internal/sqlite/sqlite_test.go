package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wopr-network/opsd/internal/demo"
)

// writer commits inserts back to back, pausing every between them, until stop; committed counts them.
func writer(t testing.TB, path string, every time.Duration, stop <-chan struct{}, committed *atomic.Int64, wg *sync.WaitGroup) {
	db, err := sql.Open("sqlite", dsn(path, "rw", "busy_timeout(30000)"))
	if err != nil {
		t.Error(err)
		return
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer db.Close()
		// Commit back to back with a short pause: a ticker drops ticks on a busy machine.
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := db.Exec(`INSERT INTO items (payload) VALUES (randomblob(200))`); err != nil {
				t.Errorf("writer: %v", err)
				return
			}
			committed.Add(1)
			time.Sleep(every)
		}
	}()
}

func TestBackupUnderWrites(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 110 MB; runs in the full (non-short) pass")
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "live.db")
	if err := demo.ItemsDB(src, 100000); err != nil {
		t.Fatal(err)
	} // ~110 MB
	var committed atomic.Int64
	var wg sync.WaitGroup
	stop := make(chan struct{})
	writer(t, src, 500*time.Microsecond, stop, &committed, &wg)
	time.Sleep(100 * time.Millisecond)
	before := committed.Load()
	dst := filepath.Join(dir, "copy.db")
	start := time.Now()
	if err := Backup(context.Background(), src, dst); err != nil {
		t.Fatalf("backup: %v", err)
	}
	took := time.Since(start)
	during := committed.Load() - before
	close(stop)
	wg.Wait()
	if rate := float64(during) / took.Seconds(); during < 10 || rate < 200 {
		t.Fatalf("the writer committed %d transactions (%.0f/s) during the backup: want at least 10 at 200/s, else the test proves nothing", during, rate)
	}
	if err := Check(context.Background(), dst); err != nil {
		t.Fatalf("copy: %v", err)
	}
	n, err := CountRows(context.Background(), dst, "items")
	if err != nil {
		t.Fatal(err)
	}
	if n < 100000+before {
		t.Fatalf("copy has %d rows, want at least %d (every row committed before the copy began)", n, 100000+before)
	}
	t.Logf("backup took %s while the writer committed %d transactions; copy has %d rows", took, during, n)
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
	afterStep = func() {
		steps++
		if steps == 2 {
			cancel()
		}
	}
	defer func() { afterStep = func() {} }()
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
