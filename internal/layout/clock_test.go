package layout

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/wopr-network/opsd/internal/artifact"
	"github.com/wopr-network/opsd/internal/storage"
	"github.com/wopr-network/opsd/internal/storage/local"
)

// TestClockAheadIsNotTheNewest: one night the node's clock was a year ahead, so the writers
// dated that night's keys a year on (platform/20271125/..., nightly/.../c_20271125.tar.gz); the
// clock was fixed and the next nights were dated right. Ordered by their keys' dates, the
// future-dated backups stayed "the newest" for a year: `restore db`, `restore container` and
// the drills took that night's backups instead of last night's, losing every day since. A key
// dated more than two days after the store received its object was dated by a clock that was
// ahead; it counts from when the store received it.
func TestClockAheadIsNotTheNewest(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	store, err := local.New(root)
	if err != nil {
		t.Fatal(err)
	}
	l := Default()
	nights := []struct{ keyDate, uploaded string }{
		{"20261124", "2026-11-24T03:00:00Z"},
		{"20271125", "2026-11-25T03:00:00Z"}, // the clock was a year ahead
		{"20261126", "2026-11-26T03:00:00Z"},
	}
	put := func(key, kind, target, uploaded string) {
		t.Helper()
		body := []byte("backup " + key)
		if _, err := store.Put(ctx, key, bytes.NewReader(body), storage.PutOptions{Size: int64(len(body))}); err != nil {
			t.Fatal(err)
		}
		if err := artifact.WriteManifest(ctx, store, artifact.Manifest{Key: key, Kind: kind, Target: target, Size: int64(len(body)), SHA256: "x"}); err != nil {
			t.Fatal(err)
		}
		at, _ := time.Parse(time.RFC3339, uploaded)
		for _, k := range []string{key, artifact.ManifestKey(key)} {
			if err := os.Chtimes(filepath.Join(root, filepath.FromSlash(k)), at, at); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, n := range nights {
		put(MustParse(DefaultSQLite).Key(Fields{Target: "auth", Date: n.keyDate}), "sqlite", "auth", n.uploaded)
		put(MustParse(DefaultNightly).Key(Fields{Node: "n1", Target: "tenant_a", Date: n.keyDate}), "container", "tenant_a", n.uploaded)
		put("postgres/"+n.keyDate+"/wopr-"+n.keyDate+".dump", "postgres", "wopr", n.uploaded)
	}
	date, _, _, err := l.ChooseSet(ctx, store, []string{"auth"}, 30, "", true)
	if err != nil || date != "20261126" {
		t.Errorf("ChooseSet chose %s (%v), want last night's 20261126", date, err)
	}
	a, ok, err := l.Newest(ctx, store, Fields{Node: "n1", Target: "tenant_a"}, Nightly)
	if err != nil || !ok || a.Date != "20261126" {
		t.Errorf("Newest nightly is %s (%v), want last night's", a.Key, err)
	}
	sets, err := DateSets(ctx, store, "postgres/")
	if err != nil || len(sets) != 3 || sets[0].Date != "20261126" {
		var got []string
		for _, s := range sets {
			got = append(got, s.Date)
		}
		t.Errorf("postgres date sets %v (%v), want last night's first", got, err)
	}
	// A date asked for explicitly is still found.
	if date, _, _, err := l.ChooseSet(ctx, store, []string{"auth"}, 30, "20271125", true); err != nil || date != "20271125" {
		t.Errorf("ChooseSet of the future-dated set: %s %v", date, err)
	}
}
