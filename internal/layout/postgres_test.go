package layout

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/wopr-network/opsd/internal/artifact"
	"github.com/wopr-network/opsd/internal/storage"
	"github.com/wopr-network/opsd/internal/storage/local"
)

// TestPostgresKeys: the layout builds and parses the PostgreSQL dump keys and their pre-restore
// safety dumps; Artifacts finds a database's dumps with manifests, newest first; DateSets groups
// a prefix's objects by date folder, staging uploads left out.
func TestPostgresKeys(t *testing.T) {
	l := Default()
	tpl := l.Templates(Postgres)[0]
	key := tpl.Key(Fields{Target: "wopr_platform", Date: "20261130"})
	if key != "postgres/20261130/wopr_platform-20261130.dump" || l.Root(Postgres) != PostgresRoot {
		t.Fatalf("key %s, root %s", key, l.Root(Postgres))
	}
	if k, f, ok := l.Owner(key + ".zst.age"); !ok || k != Postgres || f.Target != "wopr_platform" || f.Date != "20261130" {
		t.Fatalf("Owner: %s %+v %v", k, f, ok)
	}
	at := time.Date(2026, 11, 30, 20, 1, 2, 0, time.FixedZone("CET", 3600))
	safety := PostgresPreRestoreKey("wopr_platform", at, ".zst")
	if safety != "pre-restore/postgres/wopr_platform/20261130T190102Z/wopr_platform.dump.zst" {
		t.Fatalf("safety key %s", safety)
	}
	if db, got, ok := MatchPostgresPreRestore(safety); !ok || db != "wopr_platform" || !got.Equal(at) {
		t.Fatalf("MatchPostgresPreRestore: %s %v %v", db, got, ok)
	}
	if _, _, ok := MatchPostgresPreRestore("pre-restore/postgres/a/20261130T190102Z/b.dump"); ok {
		t.Fatal("a safety key naming two databases matched")
	}
	// A configured template is the layout's too.
	custom, err := New(Templates{Postgres: []string{"pg/{node}/{database}/{date}.dump"}})
	if err != nil {
		t.Fatal(err)
	}
	if k, f, ok := custom.Owner("pg/n1/billing/20261130.dump.zst"); !ok || k != Postgres || f.Node != "n1" || f.Target != "billing" {
		t.Fatalf("custom Owner: %s %+v %v", k, f, ok)
	}

	ctx := context.Background()
	store, _ := local.New(t.TempDir())
	for _, d := range []string{"20261128", "20261130", "20261129"} {
		k := tpl.Key(Fields{Target: "wopr_platform", Date: d}) + ".zst"
		if _, err := artifact.Store(ctx, store, strings.NewReader("dump "+d), artifact.Options{Compression: artifact.None},
			artifact.Manifest{Key: k, Kind: "postgres", Target: "wopr_platform"}); err != nil {
			t.Fatal(err)
		}
	}
	// No manifest: not a dump. Staging: no set.
	store.Put(ctx, "postgres/20261201/wopr_platform-20261201.dump", strings.NewReader("cut short"), storage.PutOptions{Size: 9})
	store.Put(ctx, "postgres/20261202/wopr_platform-20261202.dump"+storage.StagingMarker+"0123456789abcdef", strings.NewReader("x"), storage.PutOptions{Size: 1})
	list, err := l.Artifacts(ctx, store, Fields{Target: "wopr_platform"}, Postgres)
	if err != nil || len(list) != 3 || list[0].Date != "20261130" || list[2].Date != "20261128" {
		t.Fatalf("Artifacts: %+v %v", list, err)
	}
	sets, err := DateSets(ctx, store, PostgresRoot)
	if err != nil || len(sets) != 4 || sets[0].Date != "20261201" || sets[3].Date != "20261128" {
		t.Fatalf("DateSets: %+v %v", sets, err)
	}
	ms, err := sets[1].Manifests(ctx, store, "postgres")
	if m, ok := ms["wopr_platform"]; err != nil || !ok || m.Key != "postgres/20261130/wopr_platform-20261130.dump.zst" {
		t.Fatalf("Manifests of 20261130: %+v %v", ms, err)
	}
}
