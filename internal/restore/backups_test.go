package restore

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/wopr-network/opsd/internal/artifact"
	"github.com/wopr-network/opsd/internal/layout"
	"github.com/wopr-network/opsd/internal/storage"
	"github.com/wopr-network/opsd/internal/storage/local"
)

// TestBackups: manifests are not listed, an object without one is marked not a backup, and
// --target keeps the keys the template names that target in.
func TestBackups(t *testing.T) {
	ctx := context.Background()
	store, _ := local.New(t.TempDir())
	for _, k := range []string{"nightly/n1/tenant_a/tenant_a_20261125.tar.gz", "nightly/n1/tenant_b/tenant_b_20261125.tar.gz"} {
		if _, err := artifact.Store(ctx, store, strings.NewReader("x"), artifact.Options{}, artifact.Manifest{Key: k, Kind: "container"}); err != nil {
			t.Fatal(err)
		}
	}
	store.Put(ctx, "nightly/n1/tenant_a/tenant_a_20261126.tar.gz", strings.NewReader("cut"), storage.PutOptions{Size: 3})
	all, err := Backups(ctx, store, layout.Default(), "nightly/", "")
	if err != nil || len(all) != 3 {
		t.Fatalf("backups: %+v %v", all, err)
	}
	rows, err := Backups(ctx, store, layout.Default(), "", "tenant_a")
	if err != nil || len(rows) != 2 {
		t.Fatalf("backups of tenant_a: %+v %v", rows, err)
	}
	var b bytes.Buffer
	WriteBackups(&b, rows)
	out := b.String()
	if !strings.Contains(out, "KEY") || !strings.Contains(out, "tenant_a_20261125.tar.gz  1 B ") || !strings.Contains(out, "tenant_a_20261126.tar.gz  3 B ") || !strings.Contains(out, "NO (not a backup)") {
		t.Fatalf("table:\n%s", out)
	}
}

// TestWriteBackupsQuotesHostileKeys: a key holding a newline, a tab or a terminal escape (any
// bucket writer can make one) is printed quoted, one row per object: it printed a forged row
// ("... yes") or cleared the operator's screen.
func TestWriteBackupsQuotesHostileKeys(t *testing.T) {
	at := time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC)
	rows := []Backup{
		{Key: "nightly/n/a.tar.gz\nnightly/n/forged.tar.gz  1.0 GiB  2026-11-25T00:00:00Z  yes", Size: 1, Modified: at},
		{Key: "nightly/n/\x1b[2Jb.tar.gz", Size: 1, Modified: at},
		{Key: "nightly/n/c\td.tar.gz", Size: 1, Modified: at},
		{Key: "nightly/n/ok-é.tar.gz", Size: 1, Modified: at, HasManifest: true},
	}
	var b strings.Builder
	WriteBackups(&b, rows)
	out := b.String()
	if lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n"); len(lines) != len(rows)+1 {
		t.Errorf("%d lines for %d rows:\n%s", len(lines), len(rows), out)
	}
	if strings.ContainsAny(out, "\x1b") {
		t.Errorf("a terminal escape was printed: %q", out)
	}
	if !strings.Contains(out, "nightly/n/ok-é.tar.gz ") {
		t.Errorf("a printable key is not printed as it is:\n%s", out)
	}
}
