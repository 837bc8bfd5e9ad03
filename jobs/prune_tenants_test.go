package jobs

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/wopr-network/opsd/internal/storage/local"
)

// TestPruneRefusesATenantQueryMatchingNoTarget: the tenant query (a real SQLite platform
// database) answers rows, but none of them is a tenant backed up under nightly/ (here the query
// reads user ids, not tenant ids). Prune deletes nothing there and fails saying why; it deleted
// every backup of each tenant whose newest backup was older than orphan_keep (a lost node's
// tenants), as if every tenant were gone. With the right ids the same run prunes as usual.
func TestPruneRefusesATenantQueryMatchingNoTarget(t *testing.T) {
	ctx := context.Background()
	var objs []seedObj
	for d := 60; d < 64; d++ {
		objs = append(objs, seedObj{nightlyKey("lostnode", d), "pro", "container"}) // its node is gone
	}
	for d := 0; d < 6; d++ {
		objs = append(objs, seedObj{nightlyKey("alive", d), "free", "container"})
	}
	prune := func(record map[string]string) (*local.Store, Result, error) {
		store, _ := local.New(t.TempDir())
		seed(t, store, objs)
		p := NewPrune("prune", PruneConfig{Rules: referenceRules(), Tiers: referenceTiers(), DeletesPerSecond: 100000,
			OrphanKeep: 30 * 24 * time.Hour, Tenants: querySource(platformDB(t, record)), Now: func() time.Time { return pruneNow }}, store)
		res, err := p.Run(ctx)
		return store, res, err
	}

	store, res, err := prune(map[string]string{"user_1": "pro", "user_2": "free", "user_3": "free"})
	if got := storeKeys(t, store, "nightly/"); len(got) != 2*len(objs) {
		t.Fatalf("deleted with a tenant record matching no target: kept %d of %d objects\n%s", len(got), 2*len(objs), res.Report)
	}
	if err == nil || !strings.Contains(err.Error(), "has 3 tenants but none of the 2 tenants backed up under nightly/, on-demand/") {
		t.Fatalf("run error: %v\n%s", err, res.Report)
	}
	if !strings.Contains(res.Report, "skipped: nothing pruned: the tenant record") || strings.Contains(res.Report, "ORPHAN") {
		t.Fatalf("report:\n%s", res.Report)
	}

	// The record with the tenants' ids: the lost node's tenant is still a tenant (kept by its
	// tier), the live one is pruned to the free tier's 3 newest.
	store, res, err = prune(map[string]string{"lostnode": "pro", "alive": "free", "user_1": "pro"})
	if err != nil {
		t.Fatalf("run with the right ids: %v\n%s", err, res.Report)
	}
	if got := storeKeys(t, store, "nightly/n1/tenant_alive/"); len(got) != 6 {
		t.Fatalf("tenant_alive after prune: %v\n%s", got, res.Report)
	}
	if got := storeKeys(t, store, "nightly/n1/tenant_lostnode/"); len(got) == 0 {
		t.Fatalf("tenant_lostnode, still a tenant, lost every backup\n%s", res.Report)
	}
}
