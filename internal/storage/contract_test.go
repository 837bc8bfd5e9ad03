package storage_test

import (
	"testing"

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
