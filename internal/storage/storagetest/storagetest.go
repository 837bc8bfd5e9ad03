// Package storagetest is the contract every storage backend must pass, and the S3 servers the
// tests of other packages run against: an in-process S3 server over TLS, and the integration
// tier's real S3-compatible engine (SeaweedFS) when OPSD_TEST_S3_ENDPOINT is set.
package storagetest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"

	"github.com/wopr-network/opsd/internal/storage"
	s3store "github.com/wopr-network/opsd/internal/storage/s3"
)

// FakeS3 is an in-process S3 server. It is served over TLS because gofakes3 corrupts multipart
// uploads signed with minio-go's streaming signature over plain http (FINDINGS.md).
type FakeS3 struct {
	Server *httptest.Server
	Config s3store.Config
	// Backend holds the objects; tests inspect it directly (also after stopping the server).
	Backend *s3mem.Backend
}

// HasObject reports whether the bucket holds key, asking the backend directly.
func (f *FakeS3) HasObject(key string) bool {
	_, err := f.Backend.HeadObject(f.Config.Bucket, key)
	return err == nil
}

// Stop kills the server at once: no new connections, open ones cut (the store "goes away").
func (f *FakeS3) Stop() {
	f.Server.Listener.Close()
	f.Server.CloseClientConnections()
}

// NewFakeS3 starts an in-process S3 server for the test and returns a config for a fresh bucket.
func NewFakeS3(t testing.TB) *FakeS3 {
	t.Helper()
	backend := s3mem.New()
	srv := httptest.NewTLSServer(gofakes3.New(backend).Server())
	t.Cleanup(srv.Close)
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	return &FakeS3{Server: srv, Backend: backend, Config: s3store.Config{
		Endpoint:     strings.TrimPrefix(srv.URL, "https://"),
		Region:       "us-east-1",
		Bucket:       "wopr-backups",
		AccessKey:    "test-access",
		SecretKey:    "test-secret",
		Secure:       true,
		RootCAs:      pool,
		PartSize:     5 << 20,
		CreateBucket: true,
		MaxRetries:   2,
	}}
}

var bucketSeq atomic.Int64

// RealS3 returns a config for a fresh bucket on the integration tier's S3 engine. It skips the
// test when OPSD_TEST_S3_ENDPOINT is unset, and fails it instead when OPSD_TEST_REQUIRE_S3=1
// (.ci/run sets both, so the integration tier can never be skipped silently there).
func RealS3(t testing.TB) s3store.Config {
	t.Helper()
	ep := os.Getenv("OPSD_TEST_S3_ENDPOINT")
	if ep == "" {
		if os.Getenv("OPSD_TEST_REQUIRE_S3") == "1" {
			t.Fatal("OPSD_TEST_REQUIRE_S3=1 but OPSD_TEST_S3_ENDPOINT is not set")
		}
		t.Skip("integration tier: set OPSD_TEST_S3_ENDPOINT (see .ci/run)")
	}
	return s3store.Config{
		Endpoint:     ep,
		Region:       "us-east-1",
		Bucket:       fmt.Sprintf("opsd-test-%d-%d", time.Now().UnixNano()%1e9, bucketSeq.Add(1)),
		AccessKey:    os.Getenv("OPSD_TEST_S3_ACCESS_KEY"),
		SecretKey:    os.Getenv("OPSD_TEST_S3_SECRET_KEY"),
		PartSize:     5 << 20,
		CreateBucket: true,
	}
}

// NewS3 connects a store for the config.
func NewS3(t testing.TB, cfg s3store.Config) *s3store.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := s3store.New(ctx, cfg)
	if err != nil {
		t.Fatalf("connect s3: %v", err)
	}
	return s
}

// Stream is a deterministic pseudo-random stream of n bytes that hides its length (no Len, no
// Seek), like a compressor's output.
func Stream(seed uint64, n int64) io.Reader {
	return io.LimitReader(&randReader{r: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}, n)
}

type randReader struct{ r *rand.Rand }

func (r *randReader) Read(p []byte) (int, error) {
	for i := 0; i < len(p); i += 8 {
		v := r.r.Uint64()
		for j := 0; j < 8 && i+j < len(p); j++ {
			p[i+j] = byte(v >> (8 * j))
		}
	}
	return len(p), nil
}

// failingReader returns err after n bytes (with the last bytes when withData is set).
type failingReader struct {
	r        io.Reader
	left     int64
	err      error
	withData bool
	onHit    func()
}

func (f *failingReader) Read(p []byte) (int, error) {
	if f.withData && f.left > 0 && int64(len(p)) >= f.left {
		n, _ := f.r.Read(p[:f.left])
		f.left = 0
		return n, f.err
	}
	if f.left <= 0 {
		if f.onHit != nil {
			f.onHit()
			f.onHit = nil
		}
		return 0, f.err
	}
	if int64(len(p)) > f.left {
		p = p[:f.left]
	}
	n, err := f.r.Read(p)
	f.left -= int64(n)
	return n, err
}

func sum(t testing.TB, r io.Reader) ([32]byte, int64) {
	t.Helper()
	h := sha256.New()
	n, err := io.Copy(h, r)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	var out [32]byte
	copy(out[:], h.Sum(nil))
	return out, n
}

// Options tune the contract for slow backends.
type Options struct {
	// BigSize is the size of the unknown-length round trip (default 100 MiB).
	BigSize int64
	// ManyKeys is how many keys the paging test lists (default 1,100: more than one page).
	ManyKeys int
}

// Run runs the contract against a fresh, empty store.
func Run(t *testing.T, s storage.Store, opt Options) {
	if opt.BigSize == 0 {
		opt.BigSize = 100 << 20
	}
	if opt.ManyKeys == 0 {
		opt.ManyKeys = 1100
	}
	ctx := context.Background()

	t.Run("small round trip and stat", func(t *testing.T) {
		data := []byte("hello, opsd\n")
		info, err := s.Put(ctx, "a/small.txt", bytes.NewReader(data), storage.PutOptions{Size: int64(len(data))})
		if err != nil {
			t.Fatalf("put: %v", err)
		}
		if info.Size != int64(len(data)) {
			t.Fatalf("put size = %d, want %d", info.Size, len(data))
		}
		st, err := s.Stat(ctx, "a/small.txt")
		if err != nil || st.Size != int64(len(data)) {
			t.Fatalf("stat = %+v, %v", st, err)
		}
		if time.Since(st.ModTime) > time.Hour || time.Until(st.ModTime) > time.Hour {
			t.Fatalf("stat modtime %v is not now", st.ModTime)
		}
		rc, _, err := s.Get(ctx, "a/small.txt")
		if err != nil {
			t.Fatalf("get: %v", err)
		}
		got, _ := io.ReadAll(rc)
		rc.Close()
		if !bytes.Equal(got, data) {
			t.Fatalf("get = %q, want %q", got, data)
		}
	})

	t.Run("empty object", func(t *testing.T) {
		if _, err := s.Put(ctx, "a/empty", bytes.NewReader(nil), storage.PutOptions{Size: -1}); err != nil {
			t.Fatalf("put: %v", err)
		}
		st, err := s.Stat(ctx, "a/empty")
		if err != nil || st.Size != 0 {
			t.Fatalf("stat = %+v, %v", st, err)
		}
	})

	t.Run("missing keys are ErrNotFound", func(t *testing.T) {
		if _, err := s.Stat(ctx, "nope/missing"); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("stat missing: %v, want ErrNotFound", err)
		}
		if _, _, err := s.Get(ctx, "nope/missing"); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("get missing: %v, want ErrNotFound", err)
		}
		if err := s.Delete(ctx, "nope/missing"); err != nil {
			t.Fatalf("delete missing: %v, want nil", err)
		}
	})

	t.Run("unknown-length stream round trip is byte-exact", func(t *testing.T) {
		want, wantN := sum(t, Stream(42, opt.BigSize))
		info, err := s.Put(ctx, "big/stream.bin", Stream(42, opt.BigSize), storage.PutOptions{Size: -1})
		if err != nil {
			t.Fatalf("put: %v", err)
		}
		if info.Size != wantN {
			t.Fatalf("put size = %d, want %d", info.Size, wantN)
		}
		rc, gi, err := s.Get(ctx, "big/stream.bin")
		if err != nil {
			t.Fatalf("get: %v", err)
		}
		defer rc.Close()
		got, n := sum(t, rc)
		if n != wantN || got != want || gi.Size != wantN {
			t.Fatalf("round trip: %d bytes (stat %d), sha %x; want %d bytes, sha %x", n, gi.Size, got, wantN, want)
		}
		if err := s.Delete(ctx, "big/stream.bin"); err != nil {
			t.Fatalf("delete: %v", err)
		}
		if _, err := s.Stat(ctx, "big/stream.bin"); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("stat after delete: %v", err)
		}
	})

	t.Run("upload cut off mid-stream leaves no object", func(t *testing.T) {
		cut := errors.New("source failed")
		r := &failingReader{r: Stream(7, 1<<30), left: 12 << 20, err: cut}
		if _, err := s.Put(ctx, "cut/object.bin", r, storage.PutOptions{Size: -1}); err == nil {
			t.Fatal("put of a failing stream succeeded")
		}
		if _, err := s.Stat(ctx, "cut/object.bin"); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("stat after failed put: %v, want ErrNotFound", err)
		}
		objs, err := storage.ListAll(ctx, s, "cut/")
		if err != nil || len(objs) != 0 {
			t.Fatalf("list after failed put: %v, %v", objs, err)
		}
	})

	t.Run("cancelled upload leaves no object", func(t *testing.T) {
		cctx, cancel := context.WithCancel(ctx)
		r := &failingReader{r: Stream(8, 64<<20), left: 6 << 20, err: context.Canceled, onHit: cancel}
		if _, err := s.Put(cctx, "cancel/object.bin", r, storage.PutOptions{Size: -1}); err == nil {
			t.Fatal("cancelled put succeeded")
		}
		cancel()
		if _, err := s.Stat(ctx, "cancel/object.bin"); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("stat after cancelled put: %v, want ErrNotFound", err)
		}
	})

	// A cut HTTP body or Docker stream returns io.ErrUnexpectedEOF: minio-go takes that for the
	// end of a stream of unknown length. Under a multipart upload over a key holding a good
	// object, every variant must fail the upload and leave the old object as it was.
	for _, tc := range []struct {
		name     string
		err      error
		withData bool
	}{
		{"unexpected EOF alone", io.ErrUnexpectedEOF, false},
		{"unexpected EOF with the last bytes", io.ErrUnexpectedEOF, true},
		{"wrapped unexpected EOF", fmt.Errorf("docker export: %w", io.ErrUnexpectedEOF), false},
		{"other error", errors.New("connection reset by peer"), false},
	} {
		t.Run("reader error mid-stream keeps the old object: "+tc.name, func(t *testing.T) {
			key := "cutover/" + strings.ReplaceAll(tc.name, " ", "-") + ".bin"
			want, wantN := sum(t, Stream(3, 3<<20))
			if _, err := s.Put(ctx, key, Stream(3, 3<<20), storage.PutOptions{Size: -1}); err != nil {
				t.Fatalf("put the good object: %v", err)
			}
			r := &failingReader{r: Stream(9, 1<<30), left: 12 << 20, err: tc.err, withData: tc.withData}
			_, err := s.Put(ctx, key, r, storage.PutOptions{Size: -1})
			if err == nil {
				t.Fatal("put of a stream that failed with " + tc.err.Error() + " succeeded")
			}
			if !errors.Is(err, tc.err) {
				t.Fatalf("put error %v does not name the reader's error %v", err, tc.err)
			}
			rc, _, err := s.Get(ctx, key)
			if err != nil {
				t.Fatalf("get the good object after the failed put: %v", err)
			}
			got, n := sum(t, rc)
			rc.Close()
			if got != want || n != wantN {
				t.Fatalf("the good object was replaced: %d bytes, want %d", n, wantN)
			}
		})
	}

	t.Run("copy replaces the destination and keeps the source and its metadata", func(t *testing.T) {
		meta := map[string]string{storage.UploadMetaKey: "abc123"}
		if _, err := s.Put(ctx, "copy/dst", strings.NewReader("old"), storage.PutOptions{Size: 3}); err != nil {
			t.Fatalf("put: %v", err)
		}
		want, wantN := sum(t, Stream(5, 7<<20))
		if _, err := s.Put(ctx, "copy/src", Stream(5, 7<<20), storage.PutOptions{Size: -1, Metadata: meta}); err != nil {
			t.Fatalf("put: %v", err)
		}
		st, err := s.Stat(ctx, "copy/src")
		if err != nil {
			t.Fatalf("stat: %v", err)
		}
		if st.Metadata != nil && st.Metadata[storage.UploadMetaKey] != "abc123" {
			t.Fatalf("metadata = %v, want %s=abc123", st.Metadata, storage.UploadMetaKey)
		}
		info, err := s.Copy(ctx, "copy/src", "copy/dst")
		if err != nil {
			t.Fatalf("copy: %v", err)
		}
		if info.Size != wantN {
			t.Fatalf("copy size = %d, want %d", info.Size, wantN)
		}
		if st.Metadata != nil && info.Metadata[storage.UploadMetaKey] != "abc123" {
			t.Fatalf("copied metadata = %v, want %s=abc123", info.Metadata, storage.UploadMetaKey)
		}
		for _, k := range []string{"copy/src", "copy/dst"} {
			rc, _, err := s.Get(ctx, k)
			if err != nil {
				t.Fatalf("get %s: %v", k, err)
			}
			got, n := sum(t, rc)
			rc.Close()
			if got != want || n != wantN {
				t.Fatalf("%s: %d bytes, not the source's %d", k, n, wantN)
			}
		}
		if _, err := s.Copy(ctx, "copy/missing", "copy/dst2"); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("copy of a missing key: %v, want ErrNotFound", err)
		}
		if _, err := s.Stat(ctx, "copy/dst2"); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("failed copy left %s: %v", "copy/dst2", err)
		}
	})

	t.Run("listing pages past 1000 keys in order", func(t *testing.T) {
		var wg sync.WaitGroup
		errs := make(chan error, opt.ManyKeys)
		sem := make(chan struct{}, 8)
		for i := 0; i < opt.ManyKeys; i++ {
			wg.Add(1)
			sem <- struct{}{}
			go func(i int) {
				defer wg.Done()
				defer func() { <-sem }()
				k := fmt.Sprintf("many/%05d.txt", i)
				if _, err := s.Put(ctx, k, strings.NewReader(k), storage.PutOptions{Size: int64(len(k))}); err != nil {
					errs <- err
				}
			}(i)
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatalf("put: %v", err)
		}
		// A neighbour prefix must not leak into the listing.
		if _, err := s.Put(ctx, "many-other/x", strings.NewReader("x"), storage.PutOptions{Size: 1}); err != nil {
			t.Fatalf("put: %v", err)
		}
		objs, err := storage.ListAll(ctx, s, "many/")
		if err != nil {
			t.Fatalf("list: %v", err)
		}
		if len(objs) != opt.ManyKeys {
			t.Fatalf("listed %d keys, want %d", len(objs), opt.ManyKeys)
		}
		for i, o := range objs {
			if want := fmt.Sprintf("many/%05d.txt", i); o.Key != want || o.Size != int64(len(want)) {
				t.Fatalf("key %d = %s (%d bytes), want %s", i, o.Key, o.Size, want)
			}
		}
		stop := errors.New("stop")
		n := 0
		err = s.List(ctx, "many/", func(storage.ObjectInfo) error {
			n++
			if n == 3 {
				return stop
			}
			return nil
		})
		if !errors.Is(err, stop) || n != 3 {
			t.Fatalf("early stop: n=%d err=%v", n, err)
		}
	})
}
