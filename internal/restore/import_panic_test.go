package restore

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/wopr-network/opsd/internal/artifact"
	"github.com/wopr-network/opsd/internal/docker"
	"github.com/wopr-network/opsd/internal/docker/dockertest"
	"github.com/wopr-network/opsd/internal/storage"
	"github.com/wopr-network/opsd/internal/storage/local"
)

// TestImportVerifiedSurvivesAPanic: a panic in the goroutine that feeds the verified stream to
// the engine (a bug; injected through the phase callback it calls once the last stored byte
// arrived) fails the import with an error wrapping artifact.ErrPanic and leaves no image behind.
// It crashed the whole daemon: the Runner recovers panics only in a job's own goroutine.
func TestImportVerifiedSurvivesAPanic(t *testing.T) {
	dc, store, m, ref := lostImport(t, "panic")
	ctx := context.Background()
	eng := &importRecorder{Client: dc}
	img, err := ImportVerified(ctx, store, eng, m, nil, ref, nil, func(p string) {
		if p == "verify" {
			panic("a bug in a phase callback")
		}
	})
	if !errors.Is(err, artifact.ErrPanic) || !strings.Contains(err.Error(), "a bug in a phase callback") || img != "" {
		t.Fatalf("image %q, err %v: want the panic as an error", img, err)
	}
	if len(eng.ids) > 0 {
		t.Fatalf("the engine completed image %v from a stream whose feeder panicked", eng.ids)
	}
	if imageExists(t, ref) {
		t.Fatalf("image %s exists after the import failed", ref)
	}
	// The same artifact imports once nothing panics.
	if img, err := ImportVerified(ctx, store, dc, m, nil, ref, nil, nil); err != nil || img == "" {
		t.Fatalf("without the panic: image %q, err %v", img, err)
	}
}

// TestImportVerifiedSurvivesAPanicInProgress: a panic in the download's progress callback (a
// bug), which the gzip decoder's read-ahead goroutine calls, fails the import with an error
// wrapping artifact.ErrPanic and leaves no image behind, instead of crashing the daemon.
func TestImportVerifiedSurvivesAPanicInProgress(t *testing.T) {
	dc, store, m, ref := lostImport(t, "progress")
	ctx := context.Background()
	calls := 0
	img, err := ImportVerified(ctx, store, dc, m, nil, ref, func(done, total int64) {
		// Past the first read (the gzip header, read by the caller): on the decoder's goroutine.
		if calls++; calls > 1 {
			panic("a bug in a progress bar")
		}
	}, nil)
	if !errors.Is(err, artifact.ErrPanic) || !strings.Contains(err.Error(), "a bug in a progress bar") || img != "" {
		t.Fatalf("image %q, err %v: want the panic as an error", img, err)
	}
	if imageExists(t, ref) {
		t.Fatalf("image %s exists after the import failed", ref)
	}
}

// lostImport is a lost tenant's export (named with suffix) in a new local store and the image
// reference it imports as on the real engine; the image is removed at the end of the test.
func lostImport(t *testing.T, suffix string) (*docker.Client, storage.Store, artifact.Manifest, string) {
	t.Helper()
	dc := dockertest.Client(t)
	store, err := local.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	name := dockertest.Unique("tenant_node-perf_") + suffix
	m := lostTenant(t, store, name)
	ref := ImageRef(name, m)
	t.Cleanup(func() { dc.RemoveImage(context.Background(), ref) })
	return dc, store, m, ref
}
