package storage_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net/http"
	"testing"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/wopr-network/opsd/internal/storage"

	"github.com/wopr-network/opsd/internal/storage/local"
	"github.com/wopr-network/opsd/internal/storage/storagetest"
)

func TestContractLocal(t *testing.T) {
	s, err := local.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	storagetest.Run(t, s, storagetest.Options{})
}

func TestContractInProcessS3(t *testing.T) {
	f := storagetest.NewFakeS3(t)
	storagetest.Run(t, storagetest.NewS3(t, f.Config), storagetest.Options{})
}

// TestContractSeaweedFS is the integration tier: the real S3-compatible engine .ci/run starts.
func TestContractSeaweedFS(t *testing.T) {
	cfg := storagetest.RealS3(t)
	storagetest.Run(t, storagetest.NewS3(t, cfg), storagetest.Options{})
}

// TestMultipartCopySeaweedFS: above MultipartCopyAbove (5 GiB in production) Copy goes through
// UploadPartCopy; lowered here so a 15 MiB object takes that path against the real engine
// (the in-process server does not implement UploadPartCopy).
func TestMultipartCopySeaweedFS(t *testing.T) {
	cfg := storagetest.RealS3(t)
	cfg.MultipartCopyAbove = 1 << 20
	s := storagetest.NewS3(t, cfg)
	ctx := context.Background()
	meta := map[string]string{storage.UploadMetaKey: "0123"}
	if _, err := s.Put(ctx, "mp/src", storagetest.Stream(11, 15<<20), storage.PutOptions{Size: -1, Metadata: meta}); err != nil {
		t.Fatal(err)
	}
	info, err := s.Copy(ctx, "mp/src", "mp/dst")
	if err != nil {
		t.Fatalf("multipart copy: %v", err)
	}
	if info.Size != 15<<20 || info.Metadata[storage.UploadMetaKey] != "0123" {
		t.Fatalf("copied: %+v", info)
	}
	rc, _, err := s.Get(ctx, "mp/dst")
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	got, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := io.ReadAll(storagetest.Stream(11, 15<<20))
	if !bytes.Equal(got, want) {
		t.Fatalf("multipart copy is not byte-exact: %d bytes", len(got))
	}
}

// BenchmarkPutSeaweedFS uploads 256 MiB of unknown length to the integration tier's engine.
func BenchmarkPutSeaweedFS(b *testing.B) {
	cfg := storagetest.RealS3(b)
	cfg.PartSize = 16 << 20
	s := storagetest.NewS3(b, cfg)
	b.SetBytes(256 << 20)
	for i := 0; i < b.N; i++ {
		if _, err := s.Put(context.Background(), "bench/put", storagetest.Stream(uint64(i), 256<<20), storage.PutOptions{Size: -1}); err != nil {
			b.Fatal(err)
		}
	}
}

// TestMinioGoEndsStreamOnUnexpectedEOF shows why the S3 backend wraps every reader error: given
// a reader that fails with io.ErrUnexpectedEOF (what a cut Docker stream returns), minio-go
// completes a multipart upload of unknown size with the bytes read so far, replacing the object
// at the key with a truncated one. (If a minio-go upgrade changes this, the wrapper is still
// right; this test then only needs its expectation turned around.)
func TestMinioGoEndsStreamOnUnexpectedEOF(t *testing.T) {
	f := storagetest.NewFakeS3(t)
	storagetest.NewS3(t, f.Config) // creates the bucket
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: f.Config.RootCAs}
	client, err := minio.New(f.Config.Endpoint, &minio.Options{Creds: credentials.NewStaticV4("a", "b", ""), Secure: true, Transport: tr})
	if err != nil {
		t.Fatal(err)
	}
	cut := io.MultiReader(io.LimitReader(storagetest.Stream(1, 1<<30), 12<<20), errReader{io.ErrUnexpectedEOF})
	info, err := client.PutObject(context.Background(), f.Config.Bucket, "k", cut, -1, minio.PutObjectOptions{PartSize: 5 << 20})
	if err != nil {
		t.Fatalf("minio-go failed the upload (%v): it no longer takes io.ErrUnexpectedEOF for the end", err)
	}
	if info.Size != 12<<20 {
		t.Fatalf("stored %d bytes", info.Size)
	}
	// The same stream through the store fails.
	s := storagetest.NewS3(t, f.Config)
	cut = io.MultiReader(io.LimitReader(storagetest.Stream(1, 1<<30), 12<<20), errReader{io.ErrUnexpectedEOF})
	if _, err := s.Put(context.Background(), "k2", cut, storage.PutOptions{Size: -1}); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("store put of a cut stream: %v, want a failure naming io.ErrUnexpectedEOF", err)
	}
	if f.HasObject("k2") {
		t.Fatal("a cut stream left an object")
	}
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }
