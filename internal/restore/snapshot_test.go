package restore

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

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
	key, err := SnapshotKey(context.Background(), store, "n1", "bot-1")
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
