package postgres

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
)

// archiveWriter writes the custom format as pg_dump's WriteHead, WriteToc and _StartData do, for
// the archive versions no installed pg_dump writes here (the real-archive tests use the
// installed one, 15: version 1.14).
type archiveWriter struct {
	bytes.Buffer
	intSize, offSize int
}

func (w *archiveWriter) int(v int) {
	if v < 0 {
		w.WriteByte(1)
		v = -v
	} else {
		w.WriteByte(0)
	}
	for i := 0; i < w.intSize; i++ {
		w.WriteByte(byte(v >> (8 * i)))
	}
}

func (w *archiveWriter) str(s string) {
	w.int(len(s))
	w.WriteString(s)
}

func (w *archiveWriter) null() { w.int(-1) }

// synthArchive returns an archive of version 1.minor with a table (no data), its data (two
// chunks), a sequence (no data) and a BLOBS entry (two large objects), written to a pipe (no
// offsets), and where the two data blocks start.
func synthArchive(minor int) ([]byte, []int64) {
	w := &archiveWriter{intSize: 4, offSize: 8}
	w.WriteString("PGDMP")
	w.Write([]byte{1, byte(minor), 0, 4, 8, archCustom})
	if minor >= 15 {
		w.WriteByte(0) // compression algorithm: none
	} else {
		w.int(0) // compression level
	}
	for _, v := range []int{5, 4, 3, 1, 11, 126, 0} {
		w.int(v)
	}
	w.str("wopr_platform")
	w.str("16.4")
	w.str("16.4")
	type entry struct {
		id      int
		desc    string
		hasData bool
		deps    []string
	}
	entries := []entry{{1, "TABLE", false, nil}, {2, "TABLE DATA", true, []string{"1"}}, {3, "SEQUENCE", false, []string{"1"}}, {4, "BLOBS", true, nil}}
	w.int(len(entries))
	for _, e := range entries {
		w.int(e.id)
		if e.hasData {
			w.int(1)
		} else {
			w.int(0)
		}
		w.str("1259")
		w.str("16384")
		w.str("credit_transactions")
		w.str(e.desc)
		w.int(2)
		w.str("CREATE TABLE public.credit_transactions (id bigint);\n")
		w.str("DROP TABLE public.credit_transactions;\n")
		if e.hasData {
			w.str("COPY public.credit_transactions (id) FROM stdin;\n")
		} else {
			w.null()
		}
		w.str("public")
		w.null()      // tablespace
		w.str("heap") // tableam (1.14)
		if minor >= 16 {
			w.int('r') // relkind
		}
		w.str("wopr")
		w.str("false") // withOids
		for _, d := range e.deps {
			w.str(d)
		}
		w.null()
		if e.hasData {
			w.WriteByte(offsetPosNotSet)
		} else {
			w.WriteByte(offsetNoData)
		}
		w.Write(make([]byte, w.offSize))
	}
	var starts []int64
	starts = append(starts, int64(w.Len()))
	w.WriteByte(blkData)
	w.int(2)
	for _, row := range []string{"1\n", "2\n"} {
		w.str(row)
	}
	w.int(0)
	starts = append(starts, int64(w.Len()))
	w.WriteByte(blkBlobs)
	w.int(4)
	for _, oid := range []int{16500, 16501} {
		w.int(oid)
		w.str("large object bytes")
		w.int(0)
	}
	w.int(0)
	return w.Bytes(), starts
}

// TestSetDataOffsetsVersions: archives of versions 1.14 (pg_dump 12-15), 1.15 (16) and 1.16 (17)
// get the offsets of their data blocks (a table's data and the large objects) in their TOC
// entries, and nothing else changes; 1.13 and 1.17 are refused and left unchanged.
func TestSetDataOffsetsVersions(t *testing.T) {
	for _, minor := range []int{14, 15, 16} {
		data, starts := synthArchive(minor)
		p := filepath.Join(t.TempDir(), "dump")
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		n, err := SetDataOffsets(p)
		if err != nil || n != 2 {
			t.Fatalf("1.%d: set %d, %v; want 2", minor, n, err)
		}
		got, _ := os.ReadFile(p)
		if minor == 14 {
			restoredSame(t, data, p)
		}
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		l, err := scanArchive(f, int64(len(got)))
		f.Close()
		if err != nil {
			t.Fatalf("1.%d: rescan: %v", minor, err)
		}
		var set []int64
		changed := 0
		for _, s := range l.slots {
			if s.state == offsetPosSet {
				set = append(set, s.value)
				changed += 1 + l.offSize
			}
		}
		if len(set) != 2 || set[0] != starts[0] || set[1] != starts[1] {
			t.Errorf("1.%d: offsets %v, blocks start at %v", minor, set, starts)
		}
		diff := 0
		for i := range data {
			if data[i] != got[i] {
				diff++
			}
		}
		if len(got) != len(data) || diff == 0 || diff > changed {
			t.Errorf("1.%d: %d bytes changed (size %d → %d), at most %d expected", minor, diff, len(data), len(got), changed)
		}
	}
	for _, minor := range []int{13, 17} {
		data, _ := synthArchive(minor)
		p := filepath.Join(t.TempDir(), "dump")
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		if n, err := SetDataOffsets(p); err == nil || n != 0 {
			t.Errorf("1.%d: set %d, %v; want refused", minor, n, err)
		}
		if got, _ := os.ReadFile(p); !bytes.Equal(got, data) {
			t.Errorf("1.%d: file modified", minor)
		}
	}
}

var restrictRe = regexp.MustCompile(`(?m)^\\(un)?restrict .*$`)

// restoredSame checks, with the installed pg_restore (when there is one), that the synthetic
// archive and its patched copy print the same script, data and large objects included: the
// installed pg_restore reads version 1.14, which checks the writer above against the real format.
func restoredSame(t *testing.T, plain []byte, patched string) {
	t.Helper()
	tools, err := FindTools(os.Getenv("OPSD_TEST_PG_BINDIR"))
	if err != nil {
		t.Log("no pg_restore: the synthetic archive is not checked against it")
		return
	}
	orig := filepath.Join(t.TempDir(), "plain")
	if err := os.WriteFile(orig, plain, 0o600); err != nil {
		t.Fatal(err)
	}
	var scripts [2][]byte
	for i, f := range []string{orig, patched} {
		out, err := exec.Command(tools.Path("pg_restore"), "--file=-", f).Output()
		if err != nil {
			t.Fatalf("pg_restore %s: %v", f, err)
		}
		scripts[i] = restrictRe.ReplaceAll(out, nil)
	}
	for _, want := range []string{"COPY public.credit_transactions (id) FROM stdin;\n1\n2\n", "lo_open('16501'"} {
		if !bytes.Contains(scripts[1], []byte(want)) {
			t.Errorf("pg_restore of the patched archive lacks %q:\n%s", want, scripts[1])
		}
	}
	if !bytes.Equal(scripts[0], scripts[1]) {
		t.Errorf("pg_restore prints different scripts:\n%s\n---\n%s", scripts[0], scripts[1])
	}
}
