package storage_test

import (
	"context"
	"testing"

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
