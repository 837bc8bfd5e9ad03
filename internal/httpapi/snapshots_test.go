package httpapi

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wopr-network/opsd/internal/artifact"
	"github.com/wopr-network/opsd/internal/layout"
	"github.com/wopr-network/opsd/internal/state"
	"github.com/wopr-network/opsd/internal/storage"
	"github.com/wopr-network/opsd/internal/storage/local"
)

// TestListSnapshots: a target's stored backups, newest first, from the node its backups were
// recorded from; objects without a manifest and other targets' backups are not listed, and a
// target that is not one path element lists nothing.
func TestListSnapshots(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	store, err := local.New(filepath.Join(dir, "store"))
	if err != nil {
		t.Fatal(err)
	}
	st, err := state.Open(ctx, filepath.Join(dir, "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	put := func(key string, manifest bool) {
		if _, err := store.Put(ctx, key, strings.NewReader("data"), storage.PutOptions{Size: 4}); err != nil {
			t.Fatal(err)
		}
		if manifest {
			if err := artifact.WriteManifest(ctx, store, artifact.Manifest{Key: key, Size: 4, SHA256: "00"}); err != nil {
				t.Fatal(err)
			}
		}
	}
	put("nightly/n2/tenant_a/tenant_a_20261125.tar.gz", true)
	put("nightly/n2/tenant_a/tenant_a_20261126.tar.gz", true)
	put("nightly/n2/tenant_a/tenant_a_20261127.tar.gz", false) // unfinished: not a backup
	put("nightly/n2/tenant_b/tenant_b_20261126.tar.gz", true)
	put("latest/tenant_a/latest.tar.gz", true)
	// tenant_a's backups come from node n2 (this node is n1).
	st.RecordBackup(ctx, state.BackupAttempt{Target: "tenant_a", Job: "nightly", NodeID: "n2", Kind: "container", At: time.Now(), Success: true, SizeBytes: 4})

	got, err := ListSnapshots(ctx, layout.Default(), store, st, "n1", "tenant_a")
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, s := range got {
		paths = append(paths, s.Path+"@"+s.Date)
	}
	today := time.Now().UTC().Format(time.RFC3339)[:10]
	if len(got) != 3 || got[1].Path != "nightly/n2/tenant_a/tenant_a_20261126.tar.gz" || got[1].Date != "2026-11-26" ||
		got[2].Date != "2026-11-25" || got[0].Path != "latest/tenant_a/latest.tar.gz" || !strings.HasPrefix(got[0].Date, today) {
		t.Fatalf("snapshots of tenant_a: %v", paths)
	}
	for _, bad := range []string{"", "..", "a/b", `a\b`} {
		if list, err := ListSnapshots(ctx, layout.Default(), store, st, "n1", bad); err != nil || list != nil {
			t.Errorf("target %q: %v %v", bad, list, err)
		}
	}
}
