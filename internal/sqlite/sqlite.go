// Package sqlite makes consistent online copies of live SQLite databases and checks them
// (modernc.org/sqlite: pure Go, CGO_ENABLED=0 builds).
//
// The copy uses SQLite's online backup API under a read transaction held on the source
// connection for the whole copy. A stepwise backup without it restarts every time another
// connection writes, and under a steady writer never finishes (FINDINGS.md); one Step(-1) call
// finishes but cannot be cancelled. Holding the read transaction pins one snapshot (in WAL mode
// writers keep committing to the -wal meanwhile), so the copy proceeds in chunks, checks its
// context between chunks, and always finishes.
package sqlite

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/wopr-network/opsd/internal/scratch"
)

// chunkPages is how many pages one backup step copies (4 MiB at the default page size).
const chunkPages = 1024

// Info describes a database file.
type Info struct {
	PageCount int64
	PageSize  int64
	Tables    []string
}

// stepHook, when set, runs after every copy step of Backup (see SetStepHook).
var stepHook atomic.Pointer[func()]

// SetStepHook installs f to run after every copy step of Backup, on the copying goroutine, and
// returns a function that removes it. It exists for tests: they interleave a writer's commits with
// the copy, or cancel mid-copy, deterministically instead of by timing. nil removes any hook.
func SetStepHook(f func()) (remove func()) {
	if f == nil {
		stepHook.Store(nil)
	} else {
		stepHook.Store(&f)
	}
	return func() { stepHook.Store(nil) }
}

// afterStep runs the installed step hook, if any.
func afterStep() {
	if f := stepHook.Load(); f != nil {
		(*f)()
	}
}

// ErrNotExist is returned (wrapped) when the source database file does not exist.
var ErrNotExist = errors.New("database file does not exist")

// dsn builds a modernc DSN for path with the given pragmas and mode.
func dsn(path, mode string, pragmas ...string) string {
	q := url.Values{}
	if mode != "" {
		q.Set("mode", mode)
	}
	for _, p := range pragmas {
		q.Add("_pragma", p)
	}
	return "file:" + path + "?" + q.Encode()
}

// Open opens a database read-write without creating it.
func Open(path string) (*sql.DB, error) {
	if _, err := os.Stat(path); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("open %s: %w", path, ErrNotExist)
		}
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	db, err := sql.Open("sqlite", dsn(path, "rw", "busy_timeout(30000)"))
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	return db, nil
}

type backuper interface {
	NewBackup(string) (*sqlite.Backup, error)
}

// Backup copies the live database at src into a new file dst (which must not exist), as one
// consistent snapshot, while other connections keep reading and writing src, and makes the copy
// durable (one fsync of the file and its directory at the end). On any error or cancellation dst
// (and its journal) is removed.
func Backup(ctx context.Context, src, dst string) error {
	if err := backup(ctx, src, dst); err != nil {
		return err
	}
	if err := syncFile(dst); err != nil {
		removeDB(dst)
		return fmt.Errorf("backup %s: sync copy: %w", src, err)
	}
	return nil
}

// BackupScratch is Backup for a scratch copy that is checked, uploaded and deleted: it skips the
// final fsync, so the kernel writes the copy back while the caller reads it from the page cache
// (and never, if the copy is deleted first). A crash leaves a scratch file, which is not a backup
// and is removed at the next start (scratch.Clean).
func BackupScratch(ctx context.Context, src, dst string) error {
	return backup(ctx, src, dst)
}

// destPragmas configure the copy's connection. The copy is a new file nobody else opens until it
// is complete, so it needs no rollback journal and no fsync per step: a failed copy is removed
// whole, and Backup syncs once at the end.
var destPragmas = []string{"journal_mode(OFF)", "synchronous(OFF)"}

func backup(ctx context.Context, src, dst string) (err error) {
	if _, err := os.Stat(dst); err == nil {
		return fmt.Errorf("backup %s: destination %s exists", src, dst)
	}
	db, err := Open(src)
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	defer db.Close()
	defer func() {
		if err != nil {
			removeDB(dst)
		}
	}()
	conn, err := db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("backup %s: %w", src, err)
	}
	defer conn.Close()
	// Pin one snapshot for the whole copy.
	if _, err := conn.ExecContext(ctx, "BEGIN"); err != nil {
		return fmt.Errorf("backup %s: begin: %w", src, err)
	}
	defer conn.ExecContext(context.WithoutCancel(ctx), "ROLLBACK")
	var n int
	if err := conn.QueryRowContext(ctx, "SELECT count(*) FROM sqlite_schema").Scan(&n); err != nil {
		return fmt.Errorf("backup %s: read schema: %w", src, err)
	}
	return conn.Raw(func(dc any) error {
		b, ok := dc.(backuper)
		if !ok {
			return fmt.Errorf("backup %s: driver has no backup API", src)
		}
		bk, err := b.NewBackup(dsn(dst, "rwc", destPragmas...))
		if err != nil {
			return fmt.Errorf("backup %s: start: %w", src, err)
		}
		for {
			if err := ctx.Err(); err != nil {
				bk.Finish()
				return fmt.Errorf("backup %s: %w", src, err)
			}
			more, err := bk.Step(chunkPages)
			if err != nil {
				bk.Finish()
				return fmt.Errorf("backup %s: copy: %w", src, destError(dst, err))
			}
			afterStep()
			if !more {
				break
			}
		}
		if err := bk.Finish(); err != nil {
			return fmt.Errorf("backup %s: finish: %w", src, destError(dst, err))
		}
		return nil
	})
}

// destError names the copy's side in an error of a backup step: SQLite reports a full disk as
// "database or disk is full", which reads as the source's disk, while it is the one holding the
// copy (a temp_dir, the safety copy's directory).
func destError(dst string, err error) error {
	var se *sqlite.Error
	if errors.As(err, &se) && se.Code()&0xff == sqlite3.SQLITE_FULL {
		return fmt.Errorf("the disk holding the copy %s is full: %w", dst, err)
	}
	return fmt.Errorf("writing the copy %s: %w", dst, err)
}

// syncFile fsyncs a file and the directory that holds it.
func syncFile(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// removeDB removes a database file and its side files.
func removeDB(path string) {
	for _, suffix := range []string{"", "-journal", "-wal", "-shm"} {
		os.Remove(path + suffix)
	}
}

// RemoveDB removes a database file and its -journal, -wal and -shm files.
func RemoveDB(path string) { removeDB(path) }

// Check runs PRAGMA integrity_check on the database at path and returns nil only when it
// reports exactly "ok"; otherwise the error carries the first problems it found.
func Check(ctx context.Context, path string) error {
	db, err := Open(path)
	if err != nil {
		return err
	}
	defer db.Close()
	return check(ctx, db)
}

func check(ctx context.Context, db *sql.DB) error {
	rows, err := db.QueryContext(ctx, "PRAGMA integrity_check(20)")
	if err != nil {
		return fmt.Errorf("integrity check failed: %w", cleanErr(err))
	}
	defer rows.Close()
	var msgs []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return fmt.Errorf("integrity check failed: %w", cleanErr(err))
		}
		msgs = append(msgs, s)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("integrity check failed: %w", cleanErr(err))
	}
	if len(msgs) == 1 && msgs[0] == "ok" {
		return nil
	}
	if len(msgs) > 3 {
		msgs = append(msgs[:3], fmt.Sprintf("... (%d more)", len(msgs)-3))
	}
	return fmt.Errorf("integrity check failed: %s", strings.Join(msgs, "; "))
}

func cleanErr(err error) error {
	if errors.Is(err, driver.ErrBadConn) {
		return errors.New("database connection failed")
	}
	return err
}

// Inspect returns the page count, page size and table names of the database at path.
func Inspect(ctx context.Context, path string) (Info, error) {
	db, err := Open(path)
	if err != nil {
		return Info{}, err
	}
	defer db.Close()
	var info Info
	if err := db.QueryRowContext(ctx, "PRAGMA page_count").Scan(&info.PageCount); err != nil {
		return Info{}, fmt.Errorf("inspect %s: %w", path, err)
	}
	if err := db.QueryRowContext(ctx, "PRAGMA page_size").Scan(&info.PageSize); err != nil {
		return Info{}, fmt.Errorf("inspect %s: %w", path, err)
	}
	rows, err := db.QueryContext(ctx, "SELECT name FROM sqlite_schema WHERE type='table' AND name NOT LIKE 'sqlite_%' ORDER BY name")
	if err != nil {
		return Info{}, fmt.Errorf("inspect %s: %w", path, err)
	}
	defer rows.Close()
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return Info{}, fmt.Errorf("inspect %s: %w", path, err)
		}
		info.Tables = append(info.Tables, n)
	}
	return info, rows.Err()
}

// CountRows returns the number of rows in a table (quoted safely).
func CountRows(ctx context.Context, path, table string) (int64, error) {
	db, err := Open(path)
	if err != nil {
		return 0, err
	}
	defer db.Close()
	var n int64
	q := `SELECT count(*) FROM "` + strings.ReplaceAll(table, `"`, `""`) + `"`
	if err := db.QueryRowContext(ctx, q).Scan(&n); err != nil {
		return 0, fmt.Errorf("count rows of %s: %w", table, err)
	}
	return n, nil
}

// TempPath returns a fresh temp path for a copy of a database named name in dir, named so that
// a crashed process's copies are removed at the next start (scratch.Clean).
func TempPath(dir, name string) string {
	return filepath.Join(dir, scratch.Name(name, ".db"))
}

// header is the first 16 bytes of every SQLite 3 database file.
const header = "SQLite format 3\x00"

// ErrEmpty is returned (wrapped) when a database file has no bytes or no tables.
var ErrEmpty = errors.New("database is empty")

// ErrNotSQLite is returned (wrapped) when a file is not a SQLite 3 database.
var ErrNotSQLite = errors.New("not a SQLite database")

// CheckFile fails unless the live database at path is a non-empty SQLite 3 database: it exists,
// has bytes and SQLite reads its header (SQLite would treat a 0-byte file as a new empty
// database and happily "back it up"). It reads the header through SQLite's own file layer, never
// with a descriptor of its own: closing any descriptor of a file drops every POSIX lock the
// process holds on it, including the SHARED lock another of opsd's connections (an alert rule
// reading the same database, another backup of it) holds while the platform writes.
func CheckFile(ctx context.Context, path string) error {
	st, err := os.Stat(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("%s: %w", path, ErrNotExist)
	case err != nil:
		return fmt.Errorf("%s: %w", path, err)
	case st.Size() == 0:
		return fmt.Errorf("%s: %w (0 bytes)", path, ErrEmpty)
	}
	db, err := sql.Open("sqlite", dsn(path, "ro", "busy_timeout(30000)"))
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	defer db.Close()
	var pages int64
	err = db.QueryRowContext(ctx, "PRAGMA page_count").Scan(&pages)
	var se *sqlite.Error
	switch {
	case errors.As(err, &se) && se.Code() == sqlite3.SQLITE_NOTADB:
		return fmt.Errorf("%s: %w (no SQLite header)", path, ErrNotSQLite)
	case err != nil:
		return fmt.Errorf("%s: read header: %w", path, err)
	case pages == 0:
		return fmt.Errorf("%s: %w (0 pages)", path, ErrEmpty)
	}
	return nil
}

// checkFile is CheckFile with errors that do not name the file.
func checkFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return ErrNotExist
		}
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if st.Size() == 0 {
		return fmt.Errorf("%w (0 bytes)", ErrEmpty)
	}
	buf := make([]byte, len(header))
	if n, _ := f.Read(buf); n < len(header) || string(buf) != header {
		return fmt.Errorf("%w (no SQLite header)", ErrNotSQLite)
	}
	return nil
}

// Verify is the gate every copy must pass before it counts as a database: a non-empty SQLite
// file (CheckFile) whose integrity_check says exactly "ok", that holds at least one table and
// every table in want. It returns what Inspect returns.
func Verify(ctx context.Context, path string, want []string) (Info, error) {
	info, err := VerifyCopy(ctx, path, want)
	if err != nil && !strings.HasPrefix(err.Error(), path) {
		err = fmt.Errorf("%s: %w", path, err)
	}
	return info, err
}

// VerifyCopy is Verify for a temporary copy whose path means nothing to the reader: its errors
// do not name the file (the caller names what it is a copy of).
func VerifyCopy(ctx context.Context, path string, want []string) (Info, error) {
	if err := checkFile(path); err != nil {
		return Info{}, err
	}
	if err := Check(ctx, path); err != nil {
		return Info{}, err
	}
	info, err := Inspect(ctx, path)
	if err != nil {
		return Info{}, err
	}
	if len(info.Tables) == 0 {
		return info, fmt.Errorf("%w (no tables)", ErrEmpty)
	}
	if missing := MissingTables(info.Tables, want); len(missing) > 0 {
		return info, fmt.Errorf("missing tables: %s (has: %s)", strings.Join(missing, ", "), strings.Join(info.Tables, ", "))
	}
	return info, nil
}

// MissingTables returns the names in want that are not in have.
func MissingTables(have, want []string) []string {
	set := map[string]bool{}
	for _, t := range have {
		set[t] = true
	}
	var missing []string
	for _, t := range want {
		if !set[t] {
			missing = append(missing, t)
		}
	}
	return missing
}
