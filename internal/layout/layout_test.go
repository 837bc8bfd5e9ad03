package layout

import (
	"context"
	"strings"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/wopr-network/opsd/internal/artifact"
	"github.com/wopr-network/opsd/internal/storage"
	"github.com/wopr-network/opsd/internal/storage/local"
)

func TestTemplateKeyMatchPrefix(t *testing.T) {
	tpl := MustParse(DefaultNightly)
	f := Fields{Node: "n1", Target: "tenant_a_b", Date: "20261125"}
	key := tpl.Key(f)
	if key != "nightly/n1/tenant_a_b/tenant_a_b_20261125.tar.gz" {
		t.Fatalf("key %s", key)
	}
	for _, k := range []string{key, key + ".age"} {
		if got, ok := tpl.Match(k); !ok || got != f {
			t.Fatalf("Match(%s) = %+v %v", k, got, ok)
		}
	}
	// Written before the job switched to zstd, or after: the same container's backups.
	if got, ok := tpl.Match("nightly/n1/tenant_a_b/tenant_a_b_20261125.tar.zst.age"); !ok || got != f {
		t.Fatalf("a .tar.zst.age key: %+v %v", got, ok)
	}
	if got, ok := MustParse("latest/{container}/latest.tar").Match("latest/c/latest.tar.gz"); !ok || got.Target != "c" {
		t.Fatalf("a .tar template and a .tar.gz key: %+v %v", got, ok)
	}
	if _, ok := tpl.Match("nightly/n1/tenant_a_b/tenant_a_b_20261125.tar.gz.manifest.json"); ok {
		t.Fatal("a manifest matched")
	}
	// A placeholder used twice must have one value.
	if _, ok := tpl.Match("nightly/n1/tenant_a/tenant_b_20261125.tar.gz"); ok {
		t.Fatal("a key naming two containers matched")
	}
	for _, c := range []struct {
		f    Fields
		want string
	}{{Fields{}, "nightly/"}, {Fields{Node: "n1"}, "nightly/n1/"}, {Fields{Node: "n1", Target: "c"}, "nightly/n1/c/"},
		{Fields{Node: "n1", Target: "c", Date: "20261125"}, "nightly/n1/c/"}, {Fields{Target: "c"}, "nightly/"}} {
		if got := tpl.Prefix(c.f); got != c.want {
			t.Fatalf("Prefix(%+v) = %q, want %q", c.f, got, c.want)
		}
	}
	if f, ok := MustParse("postgres/{date}/{database}-{date}.dump").Match("postgres/20261125/wopr-20261125.dump.zst"); !ok || f.Target != "wopr" {
		t.Fatalf("{database}: %+v %v", f, ok)
	}
	if _, err := Parse("x/{tenant}/{date}"); err == nil || !strings.Contains(err.Error(), "{tenant}") {
		t.Fatalf("unknown placeholder: %v", err)
	}
}

func TestDatesAreUTC(t *testing.T) {
	berlin := time.FixedZone("CET", 3600)
	// 00:30 in Berlin on the 26th is 23:30 UTC on the 25th: every key says the 25th.
	at := time.Date(2026, 11, 26, 0, 30, 0, 0, berlin)
	if d := Date(at); d != "20261125" {
		t.Fatalf("Date = %s", d)
	}
	if s := Stamp(at); s != "20261125T233000Z" {
		t.Fatalf("Stamp = %s", s)
	}
	if d, ok := KeyDate("x/tenant_20261301_20261125.tar.gz"); !ok || Date(d) != "20261125" {
		t.Fatalf("KeyDate = %v %v", d, ok)
	}
	if IsDate("20261301") || IsDate("2026112") || !IsDate("20261125") {
		t.Fatal("IsDate")
	}
}

func TestBelongsTo(t *testing.T) {
	l := Default()
	for key, want := range map[string]bool{
		"nightly/n1/tenant_a/tenant_a_20261125.tar.gz":             true,
		"nightly/n1/tenant_a/tenant_a_20261125.tar.zst.age":        true, // written with zstd and age
		"nightly/n1/tenant_a/tenant_a_20261125.tar.gz.age":         true,
		"latest/tenant_a/latest.tar.gz":                            true,
		"pre-restore/n1/tenant_a/20261125T030000Z/tenant_a.tar.gz": true,
		"nightly/n1/tenant_b/tenant_b_20261125.tar.gz":             false,
		"nightly/n1/tenant_a/../tenant_b/x.tar.gz":                 false,
		"/nightly/n1/tenant_a/x.tar.gz":                            false,
		"latest/tenant_a/latest.tar.gz.manifest.json":              false,
		"platform/20261125/auth-20261125.db":                       false,
		"nightly//tenant_a/x.tar.gz":                               false,
		"latest/tenant_ab/latest.tar.gz":                           false,
	} {
		if got := l.BelongsTo(key, "tenant_a"); got != want {
			t.Errorf("BelongsTo(%q) = %v, want %v", key, got, want)
		}
	}
}

// put stores a zstd+age artifact the way writers do (with its manifest), or, without manifest,
// a bare object like an upload cut short (target "").
func put(t *testing.T, s storage.Store, key, target string) {
	t.Helper()
	ctx := context.Background()
	if target == "" {
		if _, err := s.Put(ctx, key, strings.NewReader("x"), storage.PutOptions{Size: 1}); err != nil {
			t.Fatal(err)
		}
		return
	}
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := artifact.Store(ctx, s, strings.NewReader("content of "+key), artifact.Options{Compression: artifact.Zstd, Recipients: []age.Recipient{id.Recipient()}},
		artifact.Manifest{Key: key, Kind: "sqlite", Target: target}); err != nil {
		t.Fatal(err)
	}
}

// TestCustomLayout answers every reader's question against a non-default layout whose keys
// carry .zst/.age suffixes.
func TestCustomLayout(t *testing.T) {
	l, err := New(Templates{
		SQLite:  []string{"db/{node}/{db}/{date}/{db}.sqlite"},
		Nightly: []string{"exports/{container}/{date}/{node}.tar"},
		Hot:     []string{"hot/{container}.tar"},
	})
	if err != nil {
		t.Fatal(err)
	}
	store, _ := local.New(t.TempDir())
	ctx := context.Background()
	put(t, store, "db/n1/auth/20261124/auth.sqlite.zst.age", "auth")
	put(t, store, "db/n1/auth/20261125/auth.sqlite.zst.age", "auth")
	put(t, store, "db/n1/billing/20261125/billing.sqlite.zst.age", "billing")
	put(t, store, "db/n1/billing/20261126/billing.sqlite.zst.age", "") // cut short: not a backup
	put(t, store, "exports/tenant_a/20261124/n1.tar.zst.age", "tenant_a")
	put(t, store, "exports/tenant_a/20261125/n1.tar.zst.age", "tenant_a")
	put(t, store, "exports/tenant_a/20261125/n2.tar.zst.age", "tenant_a")
	put(t, store, "exports/tenant_b/20261126/n1.tar.zst.age", "")
	put(t, store, "hot/tenant_a.tar.zst.age", "tenant_a")

	a, ok, err := l.Newest(ctx, store, Fields{Node: "n1", Target: "tenant_a"}, Nightly)
	if err != nil || !ok || a.Key != "exports/tenant_a/20261125/n1.tar.zst.age" {
		t.Fatalf("newest nightly: %+v %v %v", a, ok, err)
	}
	a, ok, err = l.Newest(ctx, store, Fields{Target: "tenant_a"}, Hot)
	if err != nil || !ok || a.Key != "hot/tenant_a.tar.zst.age" {
		t.Fatalf("newest hot: %+v %v %v", a, ok, err)
	}
	if _, ok, _ := l.Newest(ctx, store, Fields{Target: "tenant_b"}, Nightly); ok {
		t.Fatal("an artifact without a manifest counted")
	}
	per, err := l.NewestPerTarget(ctx, store, Fields{}, Nightly)
	if err != nil || len(per) != 1 || per["tenant_a"].Node == "" {
		t.Fatalf("per target: %+v %v", per, err)
	}
	sets, err := l.Sets(ctx, store)
	if err != nil || len(sets) != 3 || sets[0].Date != "20261126" {
		t.Fatalf("sets: %+v %v", sets, err)
	}
	set, ms, notes, err := l.ChooseSet(ctx, store, []string{"auth", "billing"}, 5, "", true)
	if err != nil || set != "20261125" || len(ms) != 2 || len(notes) == 0 {
		t.Fatalf("ChooseSet: %s %v %v %v", set, ms, notes, err)
	}
	if k, f, ok := l.Owner("db/n1/auth/20261125/auth.sqlite.zst.age"); !ok || k != SQLite || f.Target != "auth" || f.Node != "n1" {
		t.Fatalf("Owner: %s %+v %v", k, f, ok)
	}
	if !l.BelongsTo("hot/tenant_a.tar.zst.age", "tenant_a") || l.BelongsTo("db/n1/auth/20261125/auth.sqlite", "auth") {
		t.Fatal("BelongsTo")
	}
	if r := l.Root(SQLite); r != "db/" {
		t.Fatalf("Root = %q", r)
	}
}
