package postgres

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/wopr-network/opsd/internal/artifact"
	"github.com/wopr-network/opsd/internal/layout"
	"github.com/wopr-network/opsd/internal/storage"
)

// NewestDump finds the newest dump of database with a manifest under prefix (within lookback
// dates, or on date exactly when given).
func NewestDump(ctx context.Context, store storage.Store, prefix, database string, lookback int, date string) (string, artifact.Manifest, error) {
	sets, err := dateSets(ctx, store, prefix)
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

// dateSets groups the objects under prefix by their date folder ({prefix}{YYYYMMDD}/...), newest
// first; staging objects (uploads not yet published) belong to no set.
func dateSets(ctx context.Context, store storage.Store, prefix string) ([]layout.Set, error) {
	byDate := map[string]map[string]storage.ObjectInfo{}
	err := store.List(ctx, prefix, func(o storage.ObjectInfo) error {
		if storage.IsStaging(o.Key) {
			return nil
		}
		date, _, ok := strings.Cut(strings.TrimPrefix(o.Key, prefix), "/")
		if !ok || !layout.IsDate(date) {
			return nil
		}
		if byDate[date] == nil {
			byDate[date] = map[string]storage.ObjectInfo{}
		}
		byDate[date][o.Key] = o
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", prefix, err)
	}
	out := make([]layout.Set, 0, len(byDate))
	for d, objs := range byDate {
		out = append(out, layout.Set{Date: d, Objects: objs})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Date > out[j].Date })
	return out, nil
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
