package restore

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wopr-network/opsd/internal/artifact"
	"github.com/wopr-network/opsd/internal/httpapi"
	"github.com/wopr-network/opsd/internal/layout"
	"github.com/wopr-network/opsd/internal/state"
	"github.com/wopr-network/opsd/internal/storage"
	"github.com/wopr-network/opsd/internal/storage/local"
)

// TestCheckAdminRequests: an admin container restore is refused for another node, a key of
// another container and a key without a manifest; a node restore for a parallel out of range
// and a node without backups.
func TestCheckAdminRequests(t *testing.T) {
	ctx := context.Background()
	store, _ := local.New(t.TempDir())
	keys := layout.Default()
	key := "nightly/n2/tenant_a/tenant_a_20261125.tar.gz"
	if _, err := artifact.Store(ctx, store, strings.NewReader("x"), artifact.Options{}, artifact.Manifest{Key: key, Kind: "container", Target: "tenant_a"}); err != nil {
		t.Fatal(err)
	}
	store.Put(ctx, "nightly/n2/tenant_a/tenant_a_20261126.tar.gz", strings.NewReader("cut"), storage.PutOptions{Size: 3})

	if prefix, err := CheckContainerRequest(ctx, store, keys, "n1", "", "tenant_a", key); err != nil || prefix != "nightly/" {
		t.Fatalf("a valid request: %q %v", prefix, err)
	}
	for _, c := range []struct {
		target, container, key string
		want                   error
	}{
		{"n3", "tenant_a", key, httpapi.ErrBadRequest},
		{"n1", "tenant_b", key, httpapi.ErrForbidden},
		{"", "tenant_a", "nightly/n2/tenant_a/tenant_a_20261126.tar.gz", httpapi.ErrNotFound},
	} {
		if _, err := CheckContainerRequest(ctx, store, keys, "n1", c.target, c.container, c.key); !errors.Is(err, c.want) {
			t.Errorf("%+v: %v, want %v", c, err, c.want)
		}
	}

	if err := CheckNodeRequest(ctx, store, keys, "n2", 0, 0, []string{"tenant_a"}, nil); err != nil {
		t.Fatalf("a valid node request: %v", err)
	}
	if err := CheckNodeRequest(ctx, store, keys, "n2", MaxParallel+1, 0, nil, nil); !errors.Is(err, httpapi.ErrBadRequest) {
		t.Fatalf("parallel out of range: %v", err)
	}
	if err := CheckNodeRequest(ctx, store, keys, "n2", 2, -1, nil, nil); !errors.Is(err, httpapi.ErrBadRequest) || !strings.Contains(err.Error(), "startParallel") {
		t.Fatalf("startParallel out of range: %v", err)
	}
	if err := CheckNodeRequest(ctx, store, keys, "n9", 2, 2, nil, nil); !errors.Is(err, httpapi.ErrNotFound) {
		t.Fatalf("a node without backups: %v", err)
	}
	if err := CheckNodeRequest(ctx, store, keys, "n2", 2, 2, nil, []string{"tenant_typo"}); !errors.Is(err, httpapi.ErrBadRequest) || !strings.Contains(err.Error(), "tenant_typo (exclude)") {
		t.Fatalf("an exclude naming no backup: %v", err)
	}
}

// TestRegistryStart: a background restore is recorded, one per name at a time, cancellable,
// released once it ended; one its runner refuses is aborted and released.
func TestRegistryStart(t *testing.T) {
	ctx := context.Background()
	st, err := state.Open(ctx, filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var reg Registry
	run := &Run{Kind: KindContainer, Target: "tenant_a", Key: "k", RequestedBy: "api", State: st}
	released := 0
	var finish func(int64, error)
	var rctx context.Context
	id, err := reg.Start(ctx, ctx, run, func() { released++ }, func(c context.Context, f func(int64, error)) error {
		rctx, finish = c, f
		return nil
	})
	if err != nil || id == 0 {
		t.Fatalf("start: %d %v", id, err)
	}
	second := &Run{Kind: KindContainer, Target: "tenant_a", Key: "k", RequestedBy: "api", State: st}
	if _, err := reg.Start(ctx, ctx, second, func() { released++ }, nil); !errors.Is(err, httpapi.ErrConflict) || released != 1 {
		t.Fatalf("a second restore of the same container: %v (released %d)", err, released)
	}
	if err := reg.Cancel(ctx, st, id); err != nil || rctx.Err() == nil {
		t.Fatalf("cancel: %v, context %v", err, rctx.Err())
	}
	finish(7, context.Canceled)
	if released != 2 {
		t.Fatalf("not released once it ended: %d", released)
	}

	refused := &Run{Kind: KindContainer, Target: "tenant_b", Key: "k", RequestedBy: "api", State: st}
	if _, err := reg.Start(ctx, ctx, refused, func() { released++ }, func(context.Context, func(int64, error)) error { return errors.New("runner busy") }); !errors.Is(err, httpapi.ErrConflict) || released != 3 {
		t.Fatalf("a restore the runner refuses: %v (released %d)", err, released)
	}
	r, err := st.GetRestore(ctx, refused.ID())
	if err != nil || r.Outcome == state.OutcomeRunning {
		t.Fatalf("a restore that never started is left running: %+v %v", r, err)
	}
	if _, ok := reg.Reserve(refused.Name()); !ok {
		t.Fatal("a refused restore keeps its name reserved")
	}
}
