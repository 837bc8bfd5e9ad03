package artifact_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wopr-network/opsd/internal/artifact"
	"github.com/wopr-network/opsd/internal/artifact/artifacttest"
	"github.com/wopr-network/opsd/internal/storage"
	"github.com/wopr-network/opsd/internal/storage/local"
	s3store "github.com/wopr-network/opsd/internal/storage/s3"
	"github.com/wopr-network/opsd/internal/storage/storagetest"
)

// backend is a store under test: direct is used to set up and check; proxied (S3 only) reaches
// the same bucket through a TCP proxy the test can kill.
type backend struct {
	direct  storage.Store
	proxied func(t *testing.T) (storage.Store, *storagetest.Proxy)
}

// forEachBackend runs fn against the local store, the in-process S3 server and, in the
// integration tier, SeaweedFS.
func forEachBackend(t *testing.T, fn func(t *testing.T, b backend)) {
	t.Run("local", func(t *testing.T) {
		s, err := local.New(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		fn(t, backend{direct: s})
	})
	s3backend := func(t *testing.T, cfg s3store.Config) backend {
		direct := storagetest.NewS3(t, cfg)
		return backend{direct: direct, proxied: func(t *testing.T) (storage.Store, *storagetest.Proxy) {
			p := storagetest.NewProxy(t, cfg.Endpoint)
			return storagetest.NewS3(t, p.Via(cfg)), p
		}}
	}
	t.Run("in-process-s3", func(t *testing.T) {
		fn(t, s3backend(t, storagetest.NewFakeS3(t).Config))
	})
	t.Run("seaweedfs", func(t *testing.T) {
		fn(t, s3backend(t, storagetest.RealS3(t)))
	})
}

const key = "latest/tenant_abc/latest.tar.gz"

// good stores a good backup at key and returns its manifest.
func good(t *testing.T, s storage.Store) artifact.Manifest {
	t.Helper()
	m, err := artifact.Store(context.Background(), s, storagetest.Stream(1, 6<<20), artifact.Options{Compression: artifact.None},
		artifact.Manifest{Key: key, Kind: "container", Target: "tenant_abc"})
	if err != nil {
		t.Fatalf("store the good backup: %v", err)
	}
	return m
}

// intact checks the good backup is still at key, byte for byte, with its manifest, that nothing
// else (no staging object) is left beside it, and runs the consistency checker.
func intact(t *testing.T, s storage.Store, want artifact.Manifest) {
	t.Helper()
	ctx := context.Background()
	m, err := artifact.ReadManifest(ctx, s, key)
	if err != nil {
		t.Fatalf("the good backup's manifest: %v", err)
	}
	if m.SHA256 != want.SHA256 || m.Size != want.Size || !m.CreatedAt.Equal(want.CreatedAt) {
		t.Fatalf("manifest replaced: %+v, want %+v", m, want)
	}
	if n := artifacttest.Check(t, s, ""); n != 1 {
		t.Fatalf("checker verified %d artifacts, want 1", n)
	}
	objs, err := storage.ListAll(ctx, s, "latest/")
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		if o.Key != key && o.Key != artifact.ManifestKey(key) {
			t.Errorf("left behind: %s", o.Key)
		}
	}
}

// cutReader yields n bytes of a stream and then fails with err.
func cutReader(n int64, err error) io.Reader {
	return io.MultiReader(io.LimitReader(storagetest.Stream(2, 1<<30), n), errorReader{err})
}

type errorReader struct{ err error }

func (e errorReader) Read([]byte) (int, error) { return 0, e.err }

// hookReader calls fn once after n bytes were read.
type hookReader struct {
	r  io.Reader
	n  int64
	fn func()
}

func (h *hookReader) Read(p []byte) (int, error) {
	if h.n <= 0 && h.fn != nil {
		h.fn()
		h.fn = nil
	}
	if h.fn != nil && int64(len(p)) > h.n {
		p = p[:h.n]
	}
	n, err := h.r.Read(p)
	h.n -= int64(n)
	return n, err
}

func TestStoreReplacesOnlyWithAVerifiedBackup(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		t.Run("source fails mid-stream with unexpected EOF", func(t *testing.T) {
			old := good(t, b.direct)
			// 12 MiB: two full 5 MiB parts of a real multipart upload are stored before the cut.
			_, err := artifact.Store(ctx, b.direct, cutReader(12<<20, io.ErrUnexpectedEOF), artifact.Options{Compression: artifact.None},
				artifact.Manifest{Key: key, Kind: "container"})
			if !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("store of a cut stream: %v, want a failure naming io.ErrUnexpectedEOF", err)
			}
			intact(t, b.direct, old)
		})
		t.Run("source fails mid-stream under gzip", func(t *testing.T) {
			old := good(t, b.direct)
			_, err := artifact.Store(ctx, b.direct, cutReader(12<<20, io.ErrUnexpectedEOF), artifact.Options{Compression: artifact.Gzip},
				artifact.Manifest{Key: key, Kind: "container"})
			if err == nil {
				t.Fatal("store of a cut stream succeeded")
			}
			intact(t, b.direct, old)
		})
		t.Run("cancelled after staging, before publishing", func(t *testing.T) {
			old := good(t, b.direct)
			cctx, cancel := context.WithCancel(ctx)
			defer cancel()
			cctx = artifact.WithHooks(cctx, artifact.Hooks{Staged: func(string) { cancel() }})
			if _, err := artifact.Store(cctx, b.direct, storagetest.Stream(3, 7<<20), artifact.Options{}, artifact.Manifest{Key: key}); err == nil {
				t.Fatal("cancelled store succeeded")
			}
			intact(t, b.direct, old)
		})
		t.Run("a complete new backup replaces the old one", func(t *testing.T) {
			good(t, b.direct)
			m, err := artifact.Store(ctx, b.direct, storagetest.Stream(4, 11<<20), artifact.Options{}, artifact.Manifest{Key: key})
			if err != nil {
				t.Fatalf("store: %v", err)
			}
			if m.Size != 11<<20 {
				t.Fatalf("size %d", m.Size)
			}
			intact(t, b.direct, m)
		})
		if b.proxied == nil {
			return
		}
		t.Run("store dies mid-upload", func(t *testing.T) {
			old := good(t, b.direct)
			s, proxy := b.proxied(t)
			src := &hookReader{r: storagetest.Stream(5, 1<<30), n: 12 << 20, fn: proxy.Kill}
			if _, err := artifact.Store(ctx, s, src, artifact.Options{}, artifact.Manifest{Key: key}); err == nil {
				t.Fatal("store through a dead store succeeded")
			}
			// The dead connection could not abort the multipart upload: cleaning up is prune's job.
			n, err := b.direct.AbortIncompleteUploads(ctx, "latest/", 0)
			if err != nil {
				t.Fatalf("abort unfinished uploads: %v", err)
			}
			if n != 1 {
				t.Fatalf("aborted %d unfinished multipart uploads, want the 1 the dead connection left", n)
			}
			if n, _ := b.direct.AbortIncompleteUploads(ctx, "latest/", 0); n != 0 {
				t.Fatalf("%d unfinished uploads left after aborting", n)
			}
			intact(t, b.direct, old)
		})
		t.Run("store dies between upload and publish", func(t *testing.T) {
			old := good(t, b.direct)
			s, proxy := b.proxied(t)
			var staged string
			hctx := artifact.WithHooks(ctx, artifact.Hooks{Staged: func(k string) { staged = k; proxy.Kill() }})
			if _, err := artifact.Store(hctx, s, storagetest.Stream(6, 7<<20), artifact.Options{}, artifact.Manifest{Key: key}); err == nil {
				t.Fatal("store through a dead store succeeded")
			}
			if !strings.Contains(staged, storage.StagingMarker) {
				t.Fatalf("staged at %q", staged)
			}
			// The staged object and manifest stay (the store was gone): opsd's debris, not a
			// backup, and not recoverable (never published).
			rec, err := artifact.Recover(ctx, b.direct, "", time.Now().Add(time.Hour), false)
			if err != nil || len(rec) != 0 {
				t.Fatalf("recover of an unpublished upload: %v %v", rec, err)
			}
			id := staged[strings.LastIndex(staged, storage.StagingMarker)+len(storage.StagingMarker):]
			for _, k := range []string{staged, storage.StagingKey(artifact.ManifestKey(key), id)} {
				if _, err := b.direct.Stat(ctx, k); err != nil {
					t.Fatalf("staging object %s: %v", k, err)
				}
				b.direct.Delete(ctx, k)
			}
			intact(t, b.direct, old)
		})
		t.Run("store dies between publish and manifest: recovered", func(t *testing.T) {
			good(t, b.direct)
			s, proxy := b.proxied(t)
			hctx := artifact.WithHooks(ctx, artifact.Hooks{Published: func(string) { proxy.Kill() }})
			if _, err := artifact.Store(hctx, s, storagetest.Stream(7, 7<<20), artifact.Options{}, artifact.Manifest{Key: key}); err == nil {
				t.Fatal("store whose manifest could not be written succeeded")
			}
			// The new object is in place under the old manifest: readers reject it...
			if problems, _, _ := artifacttest.Problems(ctx, b.direct, ""); len(problems) != 1 {
				t.Fatalf("before recovery: %v", problems)
			}
			// ...until the recovery (prune runs it) writes the staged manifest.
			intact(t, b.direct, recovered(t, b.direct, storagetest.Stream(7, 7<<20)))
		})
		t.Run("store away between publish and manifest: finished once it answers", func(t *testing.T) {
			good(t, b.direct)
			s, proxy := b.proxied(t)
			artifact.FinishPending(ctx, b.direct) // earlier subtests' leftovers: finished or dropped
			before := artifact.PendingManifests()
			hctx := artifact.WithHooks(ctx, artifact.Hooks{Published: func(string) { proxy.Kill() }})
			if _, err := artifact.Store(hctx, s, storagetest.Stream(8, 7<<20), artifact.Options{}, artifact.Manifest{Key: key}); err == nil {
				t.Fatal("store whose manifest could not be written succeeded")
			}
			if n := artifact.PendingManifests(); n != before+1 {
				t.Fatalf("pending manifests after the failure: %d, want %d", n, before+1)
			}
			// Still away: it stays pending, nothing changes in the bucket.
			if _, err := artifact.FinishPending(ctx, s); err == nil {
				t.Fatal("finishing through a dead store succeeded")
			}
			if n := artifact.PendingManifests(); n != before+1 {
				t.Fatalf("pending after a failed retry: %d", n)
			}
			proxy.Revive(t)
			done, err := artifact.FinishPending(ctx, s)
			if err != nil || len(done) != 1 || done[0].Key != key || !done[0].Wrote {
				t.Fatalf("finish once the store answers: %+v %v", done, err)
			}
			if n := artifact.PendingManifests(); n != before {
				t.Fatalf("pending after finishing: %d, want %d", n, before)
			}
			want, n := sha(t, storagetest.Stream(8, 7<<20))
			m, err := artifact.ReadManifest(ctx, b.direct, key)
			if err != nil || m.SHA256 != want || m.Size != n {
				t.Fatalf("manifest after finishing %+v %v, want the object's", m, err)
			}
			intact(t, b.direct, m)
		})
	})
}

// recovered runs the recovery prune runs over latest/ and checks it wrote, at key, the manifest
// of the object a crash left there (whose bytes content yields).
func recovered(t *testing.T, s storage.Store, content io.Reader) artifact.Manifest {
	t.Helper()
	ctx := context.Background()
	rec, err := artifact.Recover(ctx, s, "latest/", time.Now().Add(time.Hour), false)
	if err != nil || len(rec) != 1 || rec[0].Key != key || !rec[0].Wrote {
		t.Fatalf("recover: %+v %v", rec, err)
	}
	want, n := sha(t, content)
	m, err := artifact.ReadManifest(ctx, s, key)
	if err != nil || m.SHA256 != want || m.Size != n {
		t.Fatalf("recovered manifest %+v %v, want the object's", m, err)
	}
	return m
}

func sha(t *testing.T, r io.Reader) (string, int64) {
	h := sha256.New()
	n, err := io.Copy(h, r)
	if err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil)), n
}

// TestStoreStagesWithUploadMarker: the object an upload writes carries opsd's upload marker
// before anything else refers to it: at a new key (written directly) and at a staging key (a
// backup being replaced).
func TestStoreStagesWithUploadMarker(t *testing.T) {
	f := storagetest.NewFakeS3(t)
	s := storagetest.NewS3(t, f.Config)
	var meta map[string]string
	look := func(k string) {
		st, err := s.Stat(context.Background(), k)
		if err != nil {
			t.Errorf("stat %s: %v", k, err)
		}
		meta = st.Metadata
	}
	for _, what := range []string{"new key", "staging key"} {
		meta = nil
		ctx := artifact.WithHooks(context.Background(), artifact.Hooks{Staged: look})
		if what == "new key" {
			ctx = artifact.WithHooks(context.Background(), artifact.Hooks{Published: look})
		}
		if _, err := artifact.Store(ctx, s, bytes.NewReader([]byte("x")), artifact.Options{}, artifact.Manifest{Key: key}); err != nil {
			t.Fatal(err)
		}
		if meta[storage.UploadMetaKey] == "" {
			t.Fatalf("%s: object metadata %v lacks %s", what, meta, storage.UploadMetaKey)
		}
	}
}

// copyCounter counts a store's server-side copies.
type copyCounter struct {
	storage.Store
	copies atomic.Int32
}

func (c *copyCounter) Copy(ctx context.Context, src, dst string) (storage.ObjectInfo, error) {
	c.copies.Add(1)
	return c.Store.Copy(ctx, src, dst)
}

func (c *copyCounter) CopyMovesBytes() bool { return storage.CopyMovesBytes(c.Store) }

// TestStoreNewKeyWithoutCopy: on S3 a key that holds nothing yet gets the stream itself (no
// server-side copy writing the whole artifact a second time), with opsd's upload marker, its
// manifest and no staging object left; a key that holds a backup is still staged and published
// by one copy. At a new key a cut stream and a store that dies mid-upload leave no object, and
// a crash between the object and its manifest is finished by the recovery.
func TestStoreNewKeyWithoutCopy(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		if b.proxied == nil {
			t.Skip("the local store's copy is a link: every upload is staged")
		}
		ctx := context.Background()
		s := &copyCounter{Store: b.direct}
		absent := func(what string) {
			t.Helper()
			if objs, err := storage.ListAll(ctx, b.direct, "latest/"); err != nil || len(objs) != 0 {
				t.Fatalf("%s: left %v (%v)", what, objs, err)
			}
		}

		if _, err := artifact.Store(ctx, s, cutReader(12<<20, io.ErrUnexpectedEOF), artifact.Options{}, artifact.Manifest{Key: key}); !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("store of a cut stream at a new key: %v", err)
		}
		absent("a cut stream")

		dying, proxy := b.proxied(t)
		src := &hookReader{r: storagetest.Stream(5, 1<<30), n: 12 << 20, fn: proxy.Kill}
		if _, err := artifact.Store(ctx, &copyCounter{Store: dying}, src, artifact.Options{}, artifact.Manifest{Key: key}); err == nil {
			t.Fatal("store through a dead store succeeded")
		}
		absent("a store that died mid-upload")
		if n, err := b.direct.AbortIncompleteUploads(ctx, "latest/", 0); err != nil || n != 1 {
			t.Fatalf("aborted %d unfinished uploads (%v), want the 1 the dead connection left", n, err)
		}

		func() {
			defer func() { recover() }()
			hctx := artifact.WithHooks(ctx, artifact.Hooks{Published: func(string) { panic("opsd killed") }})
			artifact.Store(hctx, s, storagetest.Stream(7, 7<<20), artifact.Options{}, artifact.Manifest{Key: key})
			t.Fatal("the crash hook did not run")
		}()
		if _, err := artifact.ReadManifest(ctx, b.direct, key); err == nil {
			t.Fatal("a manifest was written before the crash")
		}
		if st, err := b.direct.Stat(ctx, key); err != nil || st.Metadata[storage.UploadMetaKey] == "" {
			t.Fatalf("the object a crash left does not carry opsd's upload marker (prune could not tell it is debris): %+v %v", st, err)
		}
		intact(t, b.direct, recovered(t, b.direct, storagetest.Stream(7, 7<<20)))
		b.direct.Delete(ctx, key)
		b.direct.Delete(ctx, artifact.ManifestKey(key))

		// A new key, then a replacement (staged, then published by one copy).
		for i, copies := range []int32{0, 1} {
			before := s.copies.Load()
			m, err := artifact.Store(ctx, s, storagetest.Stream(uint64(4+i), 11<<20), artifact.Options{}, artifact.Manifest{Key: key})
			if err != nil {
				t.Fatal(err)
			}
			if c := s.copies.Load() - before; c != copies {
				t.Fatalf("store %d at %s made %d copies, want %d", i+1, key, c, copies)
			}
			intact(t, b.direct, m)
		}
		if c := s.copies.Load(); c != 1 {
			t.Fatalf("%d copies in all, want only the replacement's", c)
		}
	})
}
