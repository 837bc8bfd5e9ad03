package postgres_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/wopr-network/opsd/internal/postgres"
	"github.com/wopr-network/opsd/internal/postgres/pgtest"
)

// pipeDump writes `pg_dump --format=custom --compress=0` of db, read from its pipe as opsd's
// backup reads it, to a file: an archive without data offsets.
func pipeDump(t *testing.T, tools postgres.Tools, db postgres.DSN, to string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	s, err := tools.Dump(ctx, db, postgres.DumpOptions{Uncompressed: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	f, err := os.Create(to)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(f, s); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// fileDump runs `pg_dump --format=custom --file F` (a seekable output: pg_dump sets the offsets).
func fileDump(t *testing.T, tools postgres.Tools, db postgres.DSN, to string) {
	t.Helper()
	u, err := url.Parse(os.Getenv("OPSD_TEST_PG_DSN"))
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + db.Database()
	out, err := exec.Command(tools.Path("pg_dump"), "--format=custom", "--compress=0", "--file="+to, "--dbname="+u.String()).CombinedOutput()
	if err != nil {
		t.Fatalf("pg_dump --file: %v: %s", err, out)
	}
}

// counts returns the row count of every platform table and the number of large objects.
func counts(t *testing.T, db postgres.DSN) map[string]int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := db.Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	got := map[string]int64{}
	for _, tbl := range append(pgtest.PlatformTables, "pg_largeobject_metadata") {
		var n int64
		if err := c.QueryRow(ctx, "SELECT count(*) FROM "+postgres.Quote(tbl)).Scan(&n); err != nil {
			t.Fatalf("count %s: %v", tbl, err)
		}
		got[tbl] = n
	}
	return got
}

// restoreInto restores an archive with pg_restore --jobs 2 into a new database and counts its rows.
func restoreInto(t *testing.T, server postgres.DSN, tools postgres.Tools, file string) map[string]int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	db := pgtest.NewDatabase(t, server, "opsd_offsets_restore")
	if err := tools.Restore(ctx, db, file, postgres.RestoreOptions{Jobs: 2, NoOwner: true}); err != nil {
		t.Fatal(err)
	}
	return counts(t, db)
}

// platformDB fills a database with the platform's tables and two large objects (a BLOBS block).
func platformDB(t *testing.T, server postgres.DSN, rows int) postgres.DSN {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	db := pgtest.NewDatabase(t, server, "opsd_offsets")
	if err := pgtest.Fill(ctx, db, rows); err != nil {
		t.Fatal(err)
	}
	c, err := db.Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, `SELECT lo_from_bytea(0, convert_to(repeat('large object ', 1000), 'UTF8')), lo_from_bytea(0, '\x00ff'::bytea)`); err != nil {
		t.Fatal(err)
	}
	return db
}

// TestSetDataOffsets: a dump read from pg_dump's pipe gets its data offsets; pg_restore lists the
// same entries and a parallel restore of the patched file gives the same rows (and large
// objects) as the unpatched one; only the offset fields changed; a second pass has nothing to do.
func TestSetDataOffsets(t *testing.T) {
	server, tools := pgtest.Server(t)
	db := platformDB(t, server, 3000)
	dir := t.TempDir()
	plain := filepath.Join(dir, "plain.dump")
	pipeDump(t, tools, db, plain)
	patched := filepath.Join(dir, "patched.dump")
	before, err := os.ReadFile(plain)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(patched, before, 0o600); err != nil {
		t.Fatal(err)
	}

	n, err := postgres.SetDataOffsets(patched)
	if err != nil {
		t.Fatal(err)
	}
	// 13 tables with rows, the sequences have no data block, one BLOBS block.
	if n != len(pgtest.PlatformTables)+1 {
		t.Errorf("set %d offsets, want %d (one per table and the large objects)", n, len(pgtest.PlatformTables)+1)
	}
	after, err := os.ReadFile(patched)
	if err != nil {
		t.Fatal(err)
	}
	if len(after) != len(before) {
		t.Fatalf("size changed: %d → %d", len(before), len(after))
	}
	diff := 0
	for i := range before {
		if before[i] != after[i] {
			diff++
		}
	}
	if diff == 0 || diff > n*9 {
		t.Errorf("%d bytes changed for %d offsets (each field is 9 bytes)", diff, n)
	}
	if again, err := postgres.SetDataOffsets(patched); err != nil || again != 0 {
		t.Errorf("second pass: %d, %v; want 0, nil", again, err)
	}
	if set, unset, err := postgres.DataOffsets(plain); err != nil || set != 0 || unset != n {
		t.Errorf("pipe dump: %d offsets set, %d not (%v); want 0, %d", set, unset, err, n)
	}
	if set, unset, err := postgres.DataOffsets(patched); err != nil || set != n || unset != 0 {
		t.Errorf("patched dump: %d offsets set, %d not (%v); want %d, 0", set, unset, err, n)
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	l1, err := tools.List(ctx, plain)
	if err != nil {
		t.Fatal(err)
	}
	l2, err := tools.List(ctx, patched)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(l1, l2) || len(l1) == 0 {
		t.Errorf("pg_restore --list differs:\n%v\n%v", l1, l2)
	}

	want := counts(t, db)
	if want["credit_transactions"] != 3000 || want["pg_largeobject_metadata"] != 2 {
		t.Fatalf("source counts %v", want)
	}
	if got := restoreInto(t, server, tools, plain); !reflect.DeepEqual(got, want) {
		t.Errorf("unpatched restore: %v, want %v", got, want)
	}
	if got := restoreInto(t, server, tools, patched); !reflect.DeepEqual(got, want) {
		t.Errorf("patched restore: %v, want %v", got, want)
	}

	// pg_dump's own offsets (written to a file it could seek in) are where the scan finds the
	// blocks (DataOffsets checks every set offset against its block), and the file is left as is.
	seek := filepath.Join(dir, "seek.dump")
	fileDump(t, tools, db, seek)
	sb, err := os.ReadFile(seek)
	if err != nil {
		t.Fatal(err)
	}
	if set, unset, err := postgres.DataOffsets(seek); err != nil || set != n || unset != 0 {
		t.Errorf("pg_dump --file archive: %d offsets set, %d not (%v); want %d, 0", set, unset, err, n)
	}
	if n, err := postgres.SetDataOffsets(seek); err != nil || n != 0 {
		t.Errorf("pg_dump --file archive: set %d, %v; want 0, nil (left as is)", n, err)
	}
	if sa, _ := os.ReadFile(seek); !bytes.Equal(sa, sb) {
		t.Error("pg_dump --file archive was modified")
	}
}

// TestSetDataOffsetsRefuses: a truncated archive, a file that is no archive and an archive of an
// unknown version are refused and left byte for byte as they were.
func TestSetDataOffsetsRefuses(t *testing.T) {
	server, tools := pgtest.Server(t)
	db := platformDB(t, server, 500)
	dir := t.TempDir()
	good := filepath.Join(dir, "good.dump")
	pipeDump(t, tools, db, good)
	full, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	unknown := bytes.Clone(full)
	unknown[6] = 99 // version 1.99
	junk := bytes.Clone(full[len(full)/2:])
	cases := []struct {
		name string
		data []byte
		want error
	}{
		{"truncated in the data", full[:len(full)-100], postgres.ErrNotArchive},
		{"truncated in the TOC", full[:300], postgres.ErrNotArchive},
		{"header only", full[:5], postgres.ErrNotArchive},
		{"empty", nil, postgres.ErrNotArchive},
		{"not an archive", junk, postgres.ErrNotArchive},
		{"trailing bytes", append(bytes.Clone(full), 9, 9, 9), postgres.ErrNotArchive},
		{"unknown version", unknown, postgres.ErrUnsupportedArchive},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := filepath.Join(dir, fmt.Sprintf("%x", c.name))
			if err := os.WriteFile(p, c.data, 0o600); err != nil {
				t.Fatal(err)
			}
			n, err := postgres.SetDataOffsets(p)
			if !errors.Is(err, c.want) || n != 0 {
				t.Fatalf("got %d, %v; want %v", n, err, c.want)
			}
			if got, _ := os.ReadFile(p); !bytes.Equal(got, c.data) {
				t.Error("file modified")
			}
		})
	}
}

// TestDSNSettingWithASpaceReachesPgDump: a DSN setting whose value holds a space (options=-c
// name=value), in a DSN that ParseDSN rewrites (its password is taken out of the query, or it
// is given as key=value settings), still reaches pg_dump as written: libpq reads a '+' in a
// URI as a '+', not a space, so the server refused "+statement_timeout".
func TestDSNSettingWithASpaceReachesPgDump(t *testing.T) {
	server, tools := pgtest.Server(t)
	db := pgtest.NewDatabase(t, server, "opsd_dsnspace")
	if err := pgtest.Fill(context.Background(), db, 5); err != nil {
		t.Fatal(err)
	}
	dsn, err := postgres.ParseDSN(db.String() + "&options=-c%20statement_timeout%3D0&password=" + server.Password())
	if err != nil {
		t.Fatal(err)
	}
	pipeDump(t, tools, dsn, filepath.Join(t.TempDir(), "dump"))
}
