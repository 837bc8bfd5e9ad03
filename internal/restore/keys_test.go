package restore

import (
	"context"
	"strings"
	"testing"

	"filippo.io/age"

	"github.com/wopr-network/opsd/internal/artifact"
	"github.com/wopr-network/opsd/internal/layout"
	"github.com/wopr-network/opsd/internal/storage"
	"github.com/wopr-network/opsd/internal/storage/local"
)

// TestContainerKeyFollowsTheLayout: --latest, --date and the default resolve through the key
// templates, whatever the format suffix, and only to artifacts with a manifest.
func TestContainerKeyFollowsTheLayout(t *testing.T) {
	l, err := layout.New(layout.Templates{Nightly: []string{"exports/{container}/{date}/{node}.tar"}, Hot: []string{"hot/{container}.tar"}})
	if err != nil {
		t.Fatal(err)
	}
	store, _ := local.New(t.TempDir())
	ctx := context.Background()
	id, _ := age.GenerateX25519Identity()
	for _, k := range []string{"exports/tenant_a/20261124/n1.tar.zst.age", "exports/tenant_a/20261125/n1.tar.zst.age", "exports/tenant_a/20261126/n2.tar.zst.age", "hot/tenant_a.tar.zst.age"} {
		if _, err := artifact.Store(ctx, store, strings.NewReader(k), artifact.Options{Compression: artifact.Zstd, Recipients: []age.Recipient{id.Recipient()}},
			artifact.Manifest{Key: k, Kind: "container", Target: "tenant_a"}); err != nil {
			t.Fatal(err)
		}
	}
	store.Put(ctx, "exports/tenant_a/20261127/n1.tar.zst.age", strings.NewReader("cut short"), storage.PutOptions{Size: 9}) // no manifest
	for _, c := range []struct {
		date   string
		latest bool
		want   string
	}{{"", false, "exports/tenant_a/20261125/n1.tar.zst.age"}, {"20261124", false, "exports/tenant_a/20261124/n1.tar.zst.age"}, {"", true, "hot/tenant_a.tar.zst.age"}} {
		got, err := ContainerKey(ctx, store, l, "n1", "tenant_a", "", c.date, c.latest)
		if err != nil || got != c.want {
			t.Fatalf("date %q latest %v: %s %v, want %s", c.date, c.latest, got, err, c.want)
		}
	}
	if _, err := ContainerKey(ctx, store, l, "n1", "tenant_a", "", "20261123", false); err == nil || !strings.Contains(err.Error(), "20261123") {
		t.Fatalf("a date without a backup: %v", err)
	}
}
