package artifact_test

import (
	"context"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/wopr-network/opsd/internal/artifact"
	"github.com/wopr-network/opsd/internal/artifact/artifacttest"
	"github.com/wopr-network/opsd/internal/storage"
	"github.com/wopr-network/opsd/internal/storage/storagetest"
)

// gate is a second writer's store: it says when the writer has looked at key (Stat), holds its
// upload to key until open is closed, and runs afterPut once that upload returned.
type gate struct {
	storage.Store
	key      string
	looked   chan struct{}
	once     sync.Once
	open     chan struct{}
	afterPut func()
}

func (g *gate) Stat(ctx context.Context, k string) (storage.ObjectInfo, error) {
	st, err := g.Store.Stat(ctx, k)
	if k == g.key {
		g.once.Do(func() { close(g.looked) })
	}
	return st, err
}

func (g *gate) Put(ctx context.Context, k string, r io.Reader, o storage.PutOptions) (storage.ObjectInfo, error) {
	if k != g.key {
		return g.Store.Put(ctx, k, r, o)
	}
	<-g.open
	info, err := g.Store.Put(ctx, k, r, o)
	g.afterPut()
	return info, err
}

func (g *gate) CopyMovesBytes() bool { return storage.CopyMovesBytes(g.Store) }

// twoProcesses returns the key locks of two opsd processes on one host (the daemon and a CLI
// command): separate locks over one state directory, kept apart only by the lock files.
func twoProcesses(t *testing.T) (a, b *artifact.KeyLocks) {
	dir := t.TempDir()
	return artifact.NewKeyLocks(dir), artifact.NewKeyLocks(dir)
}

// TestTwoWritersOfANewKey: two processes write one new key at once (the CLI's `opsd backup db`
// during the daemon's nightly run: a database's key is its date's). B looks at the key first
// (nothing there: it uploads to the key itself), then A tries. Without the key lock A wrote the
// key and reported success, B's upload landed over A's object, and B, cancelled before its
// manifest, removed the object as its own: A's manifest named nothing. With it, A waits until B
// is done (here: failed and gone), then writes the key as if alone.
func TestTwoWritersOfANewKey(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		if b.proxied == nil {
			t.Skip("the local store stages every upload")
		}
		ctx := context.Background()
		locksA, locksB := twoProcesses(t)
		ctxB, cancelB := context.WithCancel(ctx)
		defer cancelB()
		g := &gate{Store: b.direct, key: key, looked: make(chan struct{}), open: make(chan struct{}), afterPut: cancelB}
		errB := make(chan error, 1)
		go func() {
			_, err := artifact.Store(ctxB, artifact.Locking(g, locksB), storagetest.Stream(2, 7<<20), artifact.Options{}, artifact.Manifest{Key: key})
			errB <- err
		}()
		<-g.looked

		aWaiting, aDone := make(chan struct{}), make(chan struct{})
		var mA artifact.Manifest
		var errA error
		go func() {
			defer close(aDone)
			hctx := artifact.WithHooks(ctx, artifact.Hooks{Waiting: func(string) { close(aWaiting) }})
			mA, errA = artifact.Store(hctx, artifact.Locking(b.direct, locksA), storagetest.Stream(1, 6<<20), artifact.Options{}, artifact.Manifest{Key: key})
		}()
		select { // with the lock A waits for B; without it A is done before B uploads
		case <-aWaiting:
		case <-aDone:
		}
		close(g.open)
		if err := <-errB; err == nil {
			t.Fatal("B, cancelled after its upload, succeeded")
		}
		<-aDone
		if errA != nil {
			t.Fatalf("A: %v", errA)
		}
		intact(t, b.direct, mA)
	})
}

// TestTwoWritersOfAnExistingKey: two processes replace one key's backup at once. B has staged
// its upload when A tries. Without the key lock A published and checked its object, B's copy
// landed over it, and A wrote its manifest over B's object and reported success (a backup that
// readers reject). With it, A waits until B is done and then replaces B's backup.
func TestTwoWritersOfAnExistingKey(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		good(t, b.direct)
		locksA, locksB := twoProcesses(t)
		bStaged, bPublished := make(chan struct{}), make(chan struct{})
		aWaiting, aPublished, checked := make(chan struct{}), make(chan struct{}), make(chan struct{})
		errB := make(chan error, 1)
		go func() {
			hctx := artifact.WithHooks(ctx, artifact.Hooks{
				Staged: func(string) {
					close(bStaged)
					select { // without the lock: publish once A has published and checked
					case <-aPublished:
					case <-aWaiting:
					}
				},
				Published: func(string) {
					close(bPublished)
					select { // without the lock: write the manifest once A's is checked
					case <-checked:
					case <-aWaiting:
					}
				},
			})
			_, err := artifact.Store(hctx, artifact.Locking(b.direct, locksB), storagetest.Stream(2, 7<<20), artifact.Options{}, artifact.Manifest{Key: key})
			errB <- err
		}()
		<-bStaged
		hctx := artifact.WithHooks(ctx, artifact.Hooks{
			Waiting:   func(string) { close(aWaiting) },
			Published: func(string) { close(aPublished); <-bPublished },
		})
		mA, err := artifact.Store(hctx, artifact.Locking(b.direct, locksA), storagetest.Stream(1, 6<<20), artifact.Options{}, artifact.Manifest{Key: key})
		if err != nil {
			t.Fatalf("A: %v", err)
		}
		problems, _, err := artifacttest.Problems(ctx, b.direct, "")
		close(checked)
		if err != nil {
			t.Fatal(err)
		}
		if err := <-errB; err != nil {
			t.Fatalf("B: %v", err)
		}
		if len(problems) != 0 {
			t.Fatalf("A reported success, and then: %v", problems)
		}
		intact(t, b.direct, mA)
	})
}

// TestKeyLocks: a key is held once in a process and across processes; this process's writers
// of different keys of one lock file hold it together, and another process waits until the
// last of them is done; a wait ends with its context.
func TestKeyLocks(t *testing.T) {
	ctx := context.Background()
	here, there := twoProcesses(t)
	k1, k2, k3 := "platform/20261201/a.db", "", ""
	for i := 0; k2 == "" || k3 == ""; i++ {
		k := fmt.Sprintf("platform/20261201/db%d.db", i)
		if artifact.StripeOf(k) != artifact.StripeOf(k1) {
			continue
		}
		if k2 == "" {
			k2 = k
		} else {
			k3 = k
		}
	}
	noWait := artifact.WithHooks(ctx, artifact.Hooks{Waiting: func(k string) { t.Errorf("waited for %s", k) }})
	ended, cancel := context.WithCancel(ctx)
	cancel()

	rel1, err := here.Lock(noWait, k1)
	if err != nil {
		t.Fatal(err)
	}
	rel2, err := here.Lock(noWait, k2) // same lock file, other key, same process: no wait
	if err != nil {
		t.Fatal(err)
	}
	if _, err := here.Lock(ended, k1); err == nil {
		t.Fatal("a key held in this process was taken again")
	}
	rel1()
	if _, err := there.Lock(ended, k3); err == nil {
		t.Fatal("another process took a lock file this process still holds for one of its keys")
	}
	rel2()
	rel3, err := there.Lock(ended, k3)
	if err != nil {
		t.Fatalf("another process's lock once this one released all its keys: %v", err)
	}
	if _, err := here.Lock(ended, k1); err == nil {
		t.Fatal("this process took a lock file another process holds")
	}
	rel3()
	rel, err := here.Lock(noWait, k1)
	if err != nil {
		t.Fatal(err)
	}
	rel()
}

// statGate is a store whose first Stat of key says so on looked, then waits until open is
// closed.
type statGate struct {
	storage.Store
	key    string
	once   sync.Once
	looked chan struct{}
	open   chan struct{}
}

func (g *statGate) Stat(ctx context.Context, k string) (storage.ObjectInfo, error) {
	st, err := g.Store.Stat(ctx, k)
	if k == g.key {
		g.once.Do(func() { close(g.looked); <-g.open })
	}
	return st, err
}

func (g *statGate) CopyMovesBytes() bool { return storage.CopyMovesBytes(g.Store) }

// TestRecoverAndAWriterOfOneKey: prune's recovery finishes the upload a crash left (its object
// at the key, its manifest staged) while another process replaces the key's backup. Without the
// key lock the writer published and wrote its manifest between the recovery's look at the key
// and the manifest the recovery then wrote, stale, over the writer's. With it the writer waits
// until the recovery is done, then replaces the recovered backup.
func TestRecoverAndAWriterOfOneKey(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		good(t, b.direct)
		func() {
			defer func() { recover() }()
			hctx := artifact.WithHooks(ctx, artifact.Hooks{Published: func(string) { panic("opsd killed") }})
			artifact.Store(hctx, b.direct, storagetest.Stream(7, 7<<20), artifact.Options{}, artifact.Manifest{Key: key})
			t.Fatal("the crash hook did not run")
		}()
		locksR, locksB := twoProcesses(t)
		g := &statGate{Store: b.direct, key: key, looked: make(chan struct{}), open: make(chan struct{})}
		bWaiting, bDone := make(chan struct{}), make(chan struct{})
		var mB artifact.Manifest
		var errB error
		go func() {
			defer close(bDone)
			<-g.looked // the recovery has found the crashed upload and looks at its key
			hctx := artifact.WithHooks(ctx, artifact.Hooks{Waiting: func(string) { close(bWaiting) }})
			mB, errB = artifact.Store(hctx, artifact.Locking(b.direct, locksB), storagetest.Stream(2, 6<<20), artifact.Options{}, artifact.Manifest{Key: key})
		}()
		go func() {
			select { // with the lock B waits for the recovery; without it B is done first
			case <-bWaiting:
			case <-bDone:
			}
			close(g.open)
		}()
		rec, err := artifact.Recover(ctx, artifact.Locking(g, locksR), "latest/", time.Now().Add(time.Hour), false)
		if err != nil {
			t.Fatalf("recover: %v", err)
		}
		<-bDone
		if errB != nil {
			t.Fatalf("B: %v", errB)
		}
		t.Logf("recovered %+v", rec)
		if n := artifacttest.Check(t, b.direct, ""); n != 1 {
			t.Fatalf("checker verified %d artifacts, want 1", n)
		}
		if m, err := artifact.ReadManifest(ctx, b.direct, key); err != nil || m.SHA256 != mB.SHA256 {
			t.Fatalf("manifest %+v %v, want B's %s", m, err, mB.SHA256)
		}
	})
}
