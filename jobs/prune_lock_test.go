package jobs

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wopr-network/opsd/internal/artifact"
	"github.com/wopr-network/opsd/internal/artifact/artifacttest"
	"github.com/wopr-network/opsd/internal/coord"
	"github.com/wopr-network/opsd/internal/prefixlock"
	"github.com/wopr-network/opsd/internal/storage"
	"github.com/wopr-network/opsd/internal/storage/local"
)

// sessionKiller is a store whose n-th Delete terminates every session of the coordination
// database (as a database restart or a cut network does) and then waits until the deleting
// context ends, which the prefix lock's lease does once it notices its session is gone.
type sessionKiller struct {
	storage.Store
	t       *testing.T
	n       int64
	deletes atomic.Int64
	kill    func()
}

func (s *sessionKiller) Delete(ctx context.Context, key string) error {
	if s.deletes.Add(1) != s.n {
		return s.Store.Delete(ctx, key)
	}
	s.kill()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(30 * time.Second):
		s.t.Error("prune kept deleting for 30s after its lock's session was terminated")
		return s.Store.Delete(ctx, key)
	}
}

// lockLoss is a store and prefix locks across hosts on a coordination database of the test's
// own, whose sessions the store terminates at the n-th delete.
func lockLoss(t *testing.T, n int64) (*sessionKiller, *prefixlock.Locks) {
	t.Helper()
	dsn, _ := pgPlatform(t, nil) // a database of its own: its advisory locks are its own
	ctx := context.Background()
	p, err := coord.Open(ctx, coord.Options{DSN: dsn, Node: "a", NoMigrate: true, CheckInterval: 20 * time.Millisecond, LeaseTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	u, _ := url.Parse(dsn)
	db := strings.TrimPrefix(u.Path, "/")
	admin, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Close() })
	admin.SetMaxOpenConns(1)
	if err := admin.PingContext(ctx); err != nil {
		t.Fatal(err)
	}
	base, _ := local.New(t.TempDir())
	store := &sessionKiller{Store: base, t: t, n: n, kill: func() {
		if _, err := admin.ExecContext(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()`, db); err != nil {
			t.Error(err)
		}
	}}
	return store, prefixlock.With(prefixlock.Files(t.TempDir()), coord.PrefixLocks{P: p})
}

// putBackups writes one-byte artifacts with true manifests.
func putBackups(t *testing.T, store storage.Store, keys []string) {
	t.Helper()
	sum := sha256.Sum256([]byte("x"))
	for _, key := range keys {
		if _, err := store.Put(context.Background(), key, strings.NewReader("x"), storage.PutOptions{Size: 1}); err != nil {
			t.Fatal(err)
		}
		if err := artifact.WriteManifest(context.Background(), store, artifact.Manifest{Key: key, Kind: "sqlite", Size: 1, SHA256: hex.EncodeToString(sum[:])}); err != nil {
			t.Fatal(err)
		}
	}
}

// TestPruneStopsWhenItsLockIsLost: prune holds platform/ alone across hosts through the
// coordination database. When that session ends mid-run (terminated from outside), another host
// may take the prefix, so prune stops before its next delete and says why: the run fails
// naming the lost lock, nothing after the loss is deleted, and every manifest left in the store
// still matches its object. The next run takes a new session and finishes.
func TestPruneStopsWhenItsLockIsLost(t *testing.T) {
	ctx := context.Background()
	store, locks := lockLoss(t, 3)
	var keys []string
	for d := 0; d < 60; d++ { // 31 kept, 29 expired
		date := pruneNow.AddDate(0, 0, -d).Format("20060102")
		keys = append(keys, fmt.Sprintf("platform/%s/auth-%s.db", date, date))
	}
	putBackups(t, store.Store, keys)
	prune := NewPrune("prune", PruneConfig{Rules: referenceRules()[:1], Tiers: referenceTiers(), Locks: locks, LockWait: 10 * time.Second,
		DeletesPerSecond: 100000, Now: func() time.Time { return pruneNow }}, store)
	_, err := prune.Run(ctx)
	if !errors.Is(err, prefixlock.ErrLost) || !strings.Contains(err.Error(), "prune platform/") {
		t.Fatalf("prune after its lock's session was terminated: %v", err)
	}
	left, _ := storage.ListAll(ctx, store, "platform/")
	if deleted := 2*len(keys) - len(left); deleted != 2 {
		t.Fatalf("prune deleted %d objects; want the 2 deleted before the loss", deleted)
	}
	artifacttest.Check(t, store, "")
	if _, err := prune.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if left, _ = storage.ListAll(ctx, store, "platform/"); len(left) != 2*31 {
		t.Fatalf("after the second run %d objects, want %d", len(left), 2*31)
	}
	artifacttest.Check(t, store, "")
}

// TestForgetStopsWhenItsLockIsLost: the same for forget, which deletes a tenant's backups.
func TestForgetStopsWhenItsLockIsLost(t *testing.T) {
	ctx := context.Background()
	store, locks := lockLoss(t, 3)
	var keys []string
	for d := 0; d < 10; d++ {
		date := pruneNow.AddDate(0, 0, -d).Format("20060102")
		keys = append(keys, fmt.Sprintf("nightly/n1/tenant_abc/tenant_abc_%s.tar.gz", date))
	}
	putBackups(t, store.Store, keys)
	forget := NewForget(ForgetConfig{Tenant: "abc", Names: []string{"tenant_abc"}, Places: []ForgetPlace{{Prefix: "nightly/", Depth: 2}},
		DeletesPerSecond: 100000, Locks: locks}, store)
	_, err := forget.Run(ctx)
	if !errors.Is(err, prefixlock.ErrLost) || !strings.Contains(err.Error(), "forget") {
		t.Fatalf("forget after its lock's session was terminated: %v", err)
	}
	left, _ := storage.ListAll(ctx, store, "nightly/")
	if deleted := 2*len(keys) - len(left); deleted != 2 {
		t.Fatalf("forget deleted %d objects; want the 2 deleted before the loss", deleted)
	}
	artifacttest.Check(t, store, "")
	if _, err := forget.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if left, _ = storage.ListAll(ctx, store, "nightly/"); len(left) != 0 {
		t.Fatalf("after the second run %d objects are left", len(left))
	}
}

// TestPruneSkipsWithoutTheCoordinationDatabase: with the database unreachable prune cannot
// hold a prefix alone across hosts; it deletes nothing there and its report says why (not that
// a drill held it).
func TestPruneSkipsWithoutTheCoordinationDatabase(t *testing.T) {
	ctx := context.Background()
	p, err := coord.Open(ctx, coord.Options{DSN: "postgres://opsd:x@127.0.0.1:9/none?connect_timeout=1", Node: "n", NoMigrate: true, QueryTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	store, _ := local.New(t.TempDir())
	putBackups(t, store, []string{"platform/20200101/auth-20200101.db", "platform/20261126/auth-20261126.db"})
	locks := prefixlock.With(prefixlock.Files(t.TempDir()), coord.PrefixLocks{P: p})
	prune := NewPrune("prune", PruneConfig{Rules: referenceRules()[:1], Tiers: referenceTiers(), Locks: locks, LockWait: time.Second,
		Now: func() time.Time { return pruneNow }}, store)
	res, err := prune.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(res.Report, "skipped: could not hold platform/ alone") || !strings.Contains(res.Report, "coordination database unavailable") {
		t.Fatalf("report:\n%s", res.Report)
	}
	if all, _ := storage.ListAll(ctx, store, "platform/"); len(all) != 4 {
		t.Fatalf("prune deleted without its lock: %v", all)
	}
}
