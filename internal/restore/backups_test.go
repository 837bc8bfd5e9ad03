package restore

import (
	"bytes"
	"context"
	"strings"
	"testing"

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
