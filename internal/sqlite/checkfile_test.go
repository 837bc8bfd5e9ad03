package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// posixLocks returns the POSIX locks this process holds on path's inode, from /proc/locks.
func posixLocks(t *testing.T, path string) int {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile("/proc/locks")
	if err != nil {
		t.Skip("no /proc/locks")
	}
	// "1: POSIX  ADVISORY  READ 1234 08:01:5678 1073741824 1073741824"
	inode := fmt.Sprintf(":%d ", st.Ino)
	pid := fmt.Sprintf(" %d ", os.Getpid())
	n := 0
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, "POSIX") && strings.Contains(l, pid) && strings.Contains(l, inode) {
			n++
		}
	}
	return n
}

// TestCheckFileKeepsOtherConnectionsLocks: the backup job's gate on a live database must not
// drop the SHARED lock another connection of the same process holds on it (closing any
// descriptor of a file releases all of the process's POSIX locks on it, so a gate that opened and
// closed the file itself would let the platform write under a reader that thinks it is
// protected).
func TestCheckFileKeepsOtherConnectionsLocks(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "live.db")
	db, err := sql.Open("sqlite", dsn(path, "rwc", "journal_mode(DELETE)"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec("CREATE TABLE t (x); INSERT INTO t VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "BEGIN"); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := conn.QueryRowContext(ctx, "SELECT count(*) FROM t").Scan(&n); err != nil {
		t.Fatal(err)
	}
	before := posixLocks(t, path)
	if before == 0 {
		t.Fatal("the reading connection holds no POSIX lock on the database: the test proves nothing")
	}
	if err := CheckFile(ctx, path); err != nil {
		t.Fatal(err)
	}
	if after := posixLocks(t, path); after != before {
		t.Fatalf("the gate dropped the reader's locks: %d POSIX locks before, %d after", before, after)
	}
	conn.ExecContext(ctx, "ROLLBACK")
}

// TestCheckFileRefusesWhatIsNotADatabase: missing, empty and non-SQLite files, with the file named.
func TestCheckFileRefusesWhatIsNotADatabase(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty.db")
	os.WriteFile(empty, nil, 0o600)
	text := filepath.Join(dir, "text.db")
	os.WriteFile(text, []byte(strings.Repeat("not a database\n", 100)), 0o600)
	short := filepath.Join(dir, "short.db")
	os.WriteFile(short, []byte("SQLite"), 0o600)
	for _, c := range []struct {
		path string
		want error
	}{{filepath.Join(dir, "missing.db"), ErrNotExist}, {empty, ErrEmpty}, {text, ErrNotSQLite}, {short, ErrNotSQLite}} {
		err := CheckFile(context.Background(), c.path)
		if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.path) {
			t.Errorf("%s: %v, want %v naming the file", c.path, err, c.want)
		}
	}
}
