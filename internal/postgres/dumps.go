package postgres

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"github.com/wopr-network/opsd/internal/artifact"
	"github.com/wopr-network/opsd/internal/layout"
	"github.com/wopr-network/opsd/internal/storage"
)

// NewestDump finds the newest dump of database with a manifest under prefix (within lookback
// dates, or on date exactly when given).
func NewestDump(ctx context.Context, store storage.Store, prefix, database string, lookback int, date string) (string, artifact.Manifest, error) {
	sets, err := layout.DateSets(ctx, store, prefix)
	if err != nil {
		return "", artifact.Manifest{}, err
	}
	for i, s := range sets {
		if date != "" && s.Date != date {
			continue
		}
		if date == "" && i >= lookback {
			break
		}
		ms, err := s.Manifests(ctx, store, "postgres")
		if err != nil {
			return "", artifact.Manifest{}, err
		}
		if m, ok := ms[database]; ok {
			return s.Date, m, nil
		}
	}
	if date != "" {
		return "", artifact.Manifest{}, fmt.Errorf("no dump of %s with a manifest under %s%s/", database, prefix, date)
	}
	return "", artifact.Manifest{}, fmt.Errorf("no dump of %s with a manifest in the newest %d dates under %s", database, lookback, prefix)
}

// ScratchName returns a unique database name for a drill or restore of database.
func ScratchName(prefix, database string) string {
	b := make([]byte, 4)
	rand.Read(b)
	clean := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_' {
			return r
		}
		return '_'
	}, strings.ToLower(database))
	if len(clean) > 30 {
		clean = clean[:30]
	}
	return fmt.Sprintf("%s_%s_%s_%s", prefix, clean, time.Now().UTC().Format("20060102"), hex.EncodeToString(b))
}
