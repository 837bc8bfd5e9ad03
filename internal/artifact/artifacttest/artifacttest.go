// Package artifacttest checks what a store holds the way an operator would after a fault: every
// artifact that has a manifest is downloaded and compared with it.
package artifacttest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/wopr-network/opsd/internal/artifact"
	"github.com/wopr-network/opsd/internal/storage"
)

// Problems downloads every object under prefix that has a manifest and returns one line per
// problem: a manifest whose artifact is missing, an unreadable manifest, or an artifact whose
// size or SHA-256 differs from its manifest. It also returns how many artifacts it verified.
func Problems(ctx context.Context, store storage.Store, prefix string) ([]string, int, error) {
	objs, err := storage.ListAll(ctx, store, prefix)
	if err != nil {
		return nil, 0, fmt.Errorf("check %s: %w", prefix, err)
	}
	present := map[string]bool{}
	for _, o := range objs {
		present[o.Key] = true
	}
	var problems []string
	verified := 0
	for _, o := range objs {
		if !artifact.IsManifest(o.Key) {
			continue
		}
		key := strings.TrimSuffix(o.Key, artifact.ManifestSuffix)
		if !present[key] {
			problems = append(problems, fmt.Sprintf("%s: manifest without its object", key))
			continue
		}
		m, err := artifact.ReadManifest(ctx, store, key)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", key, err))
			continue
		}
		rc, _, err := store.Get(ctx, key)
		if err != nil {
			if errors.Is(err, storage.ErrNotFound) {
				problems = append(problems, fmt.Sprintf("%s: manifest without its object", key))
			} else {
				problems = append(problems, fmt.Sprintf("%s: %v", key, err))
			}
			continue
		}
		h := sha256.New()
		n, err := io.Copy(h, rc)
		rc.Close()
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s: read: %v", key, err))
			continue
		}
		if sum := hex.EncodeToString(h.Sum(nil)); n != m.Size || sum != m.SHA256 {
			problems = append(problems, fmt.Sprintf("%s: %d bytes sha256 %s, manifest says %d bytes sha256 %s", key, n, sum, m.Size, m.SHA256))
			continue
		}
		verified++
	}
	return problems, verified, nil
}

// Check fails the test when any artifact under prefix does not match its manifest or a manifest
// has no object, and returns how many artifacts it verified. Call it after every fault test.
func Check(t testing.TB, store storage.Store, prefix string) int {
	t.Helper()
	ctx := context.Background()
	problems, n, err := Problems(ctx, store, prefix)
	if err != nil {
		t.Fatalf("consistency check: %v", err)
	}
	for _, p := range problems {
		t.Errorf("consistency check: %s", p)
	}
	return n
}
