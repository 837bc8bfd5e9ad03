package restore

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wopr-network/opsd/internal/artifact"
	"github.com/wopr-network/opsd/internal/storage/local"
)

func snapshotOf(t *testing.T, store *local.Store, key string, entries map[string]string, links map[string]string) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for name, body := range entries {
		tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg})
		tw.Write([]byte(body))
	}
	for name, target := range links {
		tw.WriteHeader(&tar.Header{Name: name, Linkname: target, Typeflag: tar.TypeSymlink})
	}
	tw.Close()
	if _, err := artifact.Store(context.Background(), store, &buf, artifact.Options{Compression: artifact.Gzip}, artifact.Manifest{Key: key, Kind: "snapshot", Target: "bot-1"}); err != nil {
		t.Fatal(err)
	}
}

func TestRestoreSnapshotSwapsAndRollsBack(t *testing.T) {
	store, _ := local.New(t.TempDir())
	base := t.TempDir()
	os.MkdirAll(filepath.Join(base, "bot-1", "memory"), 0o755)
	os.WriteFile(filepath.Join(base, "bot-1", "memory", "notes.md"), []byte("current"), 0o644)
	os.WriteFile(filepath.Join(base, "bot-1", "new-since-backup.txt"), []byte("x"), 0o644)
	snapshotOf(t, store, "nightly/n1/bot-1/bot-1_20261125.tar.gz", map[string]string{"bot-1/memory/notes.md": "from backup"}, map[string]string{"bot-1/latest": "memory/notes.md"})
	key, err := SnapshotKey(context.Background(), store, nil, "n1", "bot-1")
	if err != nil || key != "nightly/n1/bot-1/bot-1_20261125.tar.gz" {
		t.Fatalf("key %s %v", key, err)
	}
	// A failure after the swap puts the directory back.
	_, err = RestoreSnapshot(context.Background(), SnapshotOptions{Store: store, BaseDir: base, Instance: "bot-1", Key: key, AfterSwap: func() error { return errors.New("injected") }})
	if err == nil || !strings.Contains(err.Error(), "rolled back") {
		t.Fatalf("err = %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(base, "bot-1", "memory", "notes.md")); string(b) != "current" {
		t.Fatalf("after rollback: %q", b)
	}
	res, err := RestoreSnapshot(context.Background(), SnapshotOptions{Store: store, BaseDir: base, Instance: "bot-1", Key: key})
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(base, "bot-1", "memory", "notes.md")); string(b) != "from backup" {
		t.Fatalf("after restore: %q", b)
	}
	if _, err := os.Stat(filepath.Join(base, "bot-1", "new-since-backup.txt")); !os.IsNotExist(err) {
		t.Fatal("a file created after the backup survived")
	}
	if b, _ := os.ReadFile(filepath.Join(res.Previous, "memory", "notes.md")); string(b) != "current" {
		t.Fatal("the previous directory was not kept")
	}
	if l, _ := os.Readlink(filepath.Join(base, "bot-1", "latest")); l != "memory/notes.md" {
		t.Fatalf("symlink: %q", l)
	}
}

func TestRestoreSnapshotRefusesTraversal(t *testing.T) {
	store, _ := local.New(t.TempDir())
	base := t.TempDir()
	for i, bad := range []struct {
		entries map[string]string
		links   map[string]string
	}{
		{map[string]string{"bot-1/../../etc/evil": "x"}, nil},
		{map[string]string{"/etc/evil": "x"}, nil},
		{map[string]string{"bot-2/file": "x"}, nil},
		{map[string]string{"bot-1/ok": "x"}, map[string]string{"bot-1/escape": "../../etc/passwd"}},
		// A sibling instance whose name starts with this one's: bot-10 is not inside bot-1.
		{map[string]string{"bot-1/ok": "x"}, map[string]string{"bot-1/sibling": "../bot-10/secrets"}},
		{map[string]string{"bot-1/ok": "x"}, map[string]string{"bot-1/deep/sibling": "../../bot-1x"}},
		{map[string]string{"bot-10/file": "x"}, nil},
	} {
		key := "on-demand/bot-1/bad" + string(rune('a'+i)) + ".tar.gz"
		snapshotOf(t, store, key, bad.entries, bad.links)
		if _, err := RestoreSnapshot(context.Background(), SnapshotOptions{Store: store, BaseDir: base, Instance: "bot-1", Key: key}); err == nil || !strings.Contains(err.Error(), "nothing was changed") {
			t.Fatalf("case %d: err = %v", i, err)
		}
	}
	if entries, _ := os.ReadDir(base); len(entries) != 0 {
		t.Fatalf("refused restores left files: %v", entries)
	}
}

// TestRestoreSnapshotKeepsOwnerAndMode: every restored entry has the mode, owner (as root) and
// modification time its tar header says, whatever the restorer's umask.
func TestRestoreSnapshotKeepsOwnerAndMode(t *testing.T) {
	store, _ := local.New(t.TempDir())
	base := t.TempDir()
	at := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)
	entries := []tar.Header{
		{Name: "bot-1/", Typeflag: tar.TypeDir, Mode: 0o2750, Uid: 1234, Gid: 5678, ModTime: at},
		{Name: "bot-1/secret.key", Typeflag: tar.TypeReg, Mode: 0o600, Uid: 1234, Gid: 5678, ModTime: at, Size: 3},
		{Name: "bot-1/bin/", Typeflag: tar.TypeDir, Mode: 0o555, Uid: 0, Gid: 0, ModTime: at},
		{Name: "bot-1/bin/run", Typeflag: tar.TypeReg, Mode: 0o775, Uid: 4321, Gid: 5678, ModTime: at, Size: 3},
		{Name: "bot-1/link", Typeflag: tar.TypeSymlink, Linkname: "secret.key", Uid: 1234, Gid: 5678, ModTime: at},
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range entries {
		tw.WriteHeader(&h)
		if h.Size > 0 {
			tw.Write([]byte("abc"))
		}
	}
	tw.Close()
	key := "on-demand/bot-1/modes.tar.gz"
	if _, err := artifact.Store(context.Background(), store, &buf, artifact.Options{Compression: artifact.Gzip}, artifact.Manifest{Key: key, Kind: "snapshot", Target: "bot-1"}); err != nil {
		t.Fatal(err)
	}
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	if _, err := RestoreSnapshot(context.Background(), SnapshotOptions{Store: store, BaseDir: base, Instance: "bot-1", Key: key}); err != nil {
		t.Fatal(err)
	}
	for _, h := range entries {
		p := filepath.Join(base, filepath.Clean(h.Name))
		fi, err := os.Lstat(p)
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		if h.Typeflag != tar.TypeSymlink {
			if got := int64(st.Mode & 0o7777); got != h.Mode {
				t.Errorf("%s: mode %o, want %o", h.Name, got, h.Mode)
			}
			if !fi.ModTime().Equal(at) {
				t.Errorf("%s: modified %s, want %s", h.Name, fi.ModTime(), at)
			}
		}
		if os.Geteuid() == 0 && (int(st.Uid) != h.Uid || int(st.Gid) != h.Gid) {
			t.Errorf("%s: owner %d:%d, want %d:%d", h.Name, st.Uid, st.Gid, h.Uid, h.Gid)
		}
	}
}

// TestRestoreSnapshotRefusesLinkChainEscape: symlinks that each resolve inside the instance on
// paper ("b" -> ".", "a" -> "b/..") climb out of it on disk once followed, and a later entry
// written through them landed outside the staging tree (in the base directory, or anywhere the
// restorer can write). Every entry is written inside the extraction directory or refused.
func TestRestoreSnapshotRefusesLinkChainEscape(t *testing.T) {
	store, _ := local.New(t.TempDir())
	base := t.TempDir()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range []tar.Header{
		{Name: "bot-1/", Typeflag: tar.TypeDir, Mode: 0o755},
		{Name: "bot-1/b", Typeflag: tar.TypeSymlink, Linkname: "."},
		{Name: "bot-1/a", Typeflag: tar.TypeSymlink, Linkname: "b/.."}, // the staging tree
		{Name: "bot-1/c", Typeflag: tar.TypeSymlink, Linkname: "a/.."}, // the staging directory
		{Name: "bot-1/d", Typeflag: tar.TypeSymlink, Linkname: "c/.."}, // the base directory
		{Name: "bot-1/d/victim/", Typeflag: tar.TypeDir, Mode: 0o777},
		{Name: "bot-1/d/escaped.txt", Typeflag: tar.TypeReg, Mode: 0o644, Size: 1},
	} {
		tw.WriteHeader(&h)
		if h.Size > 0 {
			tw.Write([]byte("x"))
		}
	}
	tw.Close()
	key := "on-demand/bot-1/chain.tar.gz"
	if _, err := artifact.Store(context.Background(), store, &buf, artifact.Options{Compression: artifact.Gzip}, artifact.Manifest{Key: key, Kind: "snapshot", Target: "bot-1"}); err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(base, "bot-1"), 0o755)
	os.WriteFile(filepath.Join(base, "bot-1", "keep"), []byte("live"), 0o644)
	_, err := RestoreSnapshot(context.Background(), SnapshotOptions{Store: store, BaseDir: base, Instance: "bot-1", Key: key})
	for _, p := range []string{"escaped.txt", "victim"} {
		if _, serr := os.Lstat(filepath.Join(base, p)); serr == nil {
			t.Errorf("the snapshot wrote %s outside the instance (err = %v)", filepath.Join(base, p), err)
		}
	}
	if err == nil || !strings.Contains(err.Error(), "nothing was changed") {
		t.Fatalf("err = %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(base, "bot-1", "keep")); string(b) != "live" {
		t.Fatal("the live directory was changed")
	}
}

// sparseEntry is a tar holding one GNU sparse (PAX 1.0) file of size bytes that are all a hole:
// a few KiB of archive whose entry expands to size bytes when extracted.
func sparseEntry(t *testing.T, name string, size int64) []byte {
	record := func(k, v string) string {
		r := fmt.Sprintf(" %s=%s\n", k, v)
		for n := len(r); ; {
			s := fmt.Sprintf("%d%s", n, r)
			if len(s) == n {
				return s
			}
			n = len(s)
		}
	}
	pax := record("GNU.sparse.major", "1") + record("GNU.sparse.minor", "0") + record("GNU.sparse.name", name) + record("GNU.sparse.realsize", fmt.Sprint(size))
	header := func(name string, flag byte, n int64) []byte {
		var b bytes.Buffer
		if err := tar.NewWriter(&b).WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Size: n, Mode: 0o644, Format: tar.FormatUSTAR}); err != nil {
			t.Fatal(err)
		}
		blk := append([]byte{}, b.Bytes()[:512]...)
		blk[156] = flag
		copy(blk[148:156], "        ")
		sum := 0
		for _, c := range blk {
			sum += int(c)
		}
		copy(blk[148:], fmt.Sprintf("%06o\x00 ", sum))
		return blk
	}
	pad := func(b *bytes.Buffer) { b.Write(make([]byte, (512-b.Len()%512)%512)) }
	var out bytes.Buffer
	out.Write(header("PaxHeaders/x", tar.TypeXHeader, int64(len(pax))))
	out.WriteString(pax)
	pad(&out)
	out.Write(header(name, tar.TypeReg, 512))
	out.WriteString("1\n" + fmt.Sprint(size) + "\n0\n") // one data region of 0 bytes at the end
	pad(&out)
	out.Write(make([]byte, 1024))
	return out.Bytes()
}

// TestRestoreSnapshotRefusesSparseBomb: a snapshot whose entries declare more bytes than the
// archive's content holds (a sparse entry, a few KiB expanding to any size) is refused before
// anything is written; it was expanded to real zeros on disk (2^60 bytes would fill any disk the
// live data shares).
func TestRestoreSnapshotRefusesSparseBomb(t *testing.T) {
	store, _ := local.New(t.TempDir())
	base := t.TempDir()
	key := "on-demand/bot-1/sparse.tar.gz"
	if _, err := artifact.Store(context.Background(), store, bytes.NewReader(sparseEntry(t, "bot-1/bomb", 64<<20)), artifact.Options{Compression: artifact.Gzip},
		artifact.Manifest{Key: key, Kind: "snapshot", Target: "bot-1"}); err != nil {
		t.Fatal(err)
	}
	_, err := RestoreSnapshot(context.Background(), SnapshotOptions{Store: store, BaseDir: base, Instance: "bot-1", Key: key})
	if err == nil || !strings.Contains(err.Error(), "nothing was changed") || !strings.Contains(err.Error(), "bot-1/bomb") {
		t.Fatalf("err = %v", err)
	}
	if entries, _ := os.ReadDir(base); len(entries) != 0 {
		t.Fatalf("a refused restore left files: %v", entries)
	}
}
