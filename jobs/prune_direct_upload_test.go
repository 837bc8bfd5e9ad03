package jobs

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/wopr-network/opsd/internal/artifact"
	"github.com/wopr-network/opsd/internal/artifact/artifacttest"
	"github.com/wopr-network/opsd/internal/storage"
	"github.com/wopr-network/opsd/internal/storage/storagetest"
)

// initiatedStore reports the modification time of every artifact (neither a manifest nor a
// staging object) as its upload's start, 7 hours before it completed, as Amazon S3 dates an
// object written by a multipart upload (SeaweedFS dates it at completion).
type initiatedStore struct{ storage.Store }

const uploadTook = 7 * time.Hour

func (s initiatedStore) CopyMovesBytes() bool { return storage.CopyMovesBytes(s.Store) }

func (s initiatedStore) shift(o storage.ObjectInfo) storage.ObjectInfo {
	if !artifact.IsManifest(o.Key) && !storage.IsStaging(o.Key) {
		o.ModTime = o.ModTime.Add(-uploadTook)
	}
	return o
}

func (s initiatedStore) Stat(ctx context.Context, key string) (storage.ObjectInfo, error) {
	o, err := s.Store.Stat(ctx, key)
	if err == nil {
		o.Key = key
		o = s.shift(o)
	}
	return o, err
}

func (s initiatedStore) List(ctx context.Context, prefix string, fn func(storage.ObjectInfo) error) error {
	return s.Store.List(ctx, prefix, func(o storage.ObjectInfo) error { return fn(s.shift(o)) })
}

// TestPruneDuringADirectUploadKeepsTheBackup: on S3 a new key gets the upload stream itself and
// its manifest right after. A prune that runs in between (the object uploaded and carrying opsd's
// marker, the manifest staged but not yet written) on a store that dates the object at the start
// of a 7-hour upload (older than prune's 6-hour grace) must not take it for debris: the backup
// stays, and its manifest never names a missing object.
func TestPruneDuringADirectUploadKeepsTheBackup(t *testing.T) {
	store := initiatedStore{storagetest.NewS3(t, storagetest.RealS3(t))}
	ctx := context.Background()
	key := "on-demand/tenant_du" + storage.NewUploadID() + "/snap20261130.tar.gz"
	var pruned Result
	var pruneErr error
	hctx := artifact.WithHooks(ctx, artifact.Hooks{Published: func(string) {
		p := NewPrune("prune", PruneConfig{Rules: referenceRules(), Tiers: referenceTiers(), DeletesPerSecond: 10000}, store)
		pruned, pruneErr = p.Run(ctx)
	}})
	if _, err := artifact.Store(hctx, store, strings.NewReader("a backup that took 7 hours"), artifact.Options{},
		artifact.Manifest{Key: key, Kind: "snapshot", Target: "tenant_du", Tier: "free"}); err != nil {
		t.Fatal(err)
	}
	if pruneErr != nil {
		t.Fatal(pruneErr)
	}
	if strings.Contains(pruned.Report, key+"\n") && strings.Contains(pruned.Report, "debris") {
		t.Errorf("prune took the upload for debris:\n%s", pruned.Report)
	}
	if problems, n, err := artifacttest.Problems(ctx, store, "on-demand/"); err != nil || len(problems) != 0 || n == 0 {
		t.Fatalf("after prune ran during the upload: %d verified, problems %v (%v)\nprune:\n%s", n, problems, err, pruned.Report)
	}
}
