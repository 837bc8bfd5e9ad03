// Package checks holds the jobs that prove backups can be restored: restore drills (platform
// databases, tenant containers) with measured RTOs, and offsite verification. They are jobs, so
// they get scheduling, status and metrics from the Runner; they hold the prefix lock that pruning
// respects while they read.
package checks

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/wopr-network/opsd/internal/artifact"
	"github.com/wopr-network/opsd/internal/storage"
)

// dateSet is the artifacts under one date folder of a prefix (platform/{YYYYMMDD}/...).
type dateSet struct {
	date    string
	objects map[string]storage.ObjectInfo
}

// listDates groups the objects under prefix by their first path element, newest date first.
func listDates(ctx context.Context, store storage.Store, prefix string) ([]dateSet, error) {
	byDate := map[string]map[string]storage.ObjectInfo{}
	err := store.List(ctx, prefix, func(o storage.ObjectInfo) error {
		rest := strings.TrimPrefix(o.Key, prefix)
		date, _, ok := strings.Cut(rest, "/")
		if !ok || !isDate(date) {
			return nil
		}
		if byDate[date] == nil {
			byDate[date] = map[string]storage.ObjectInfo{}
		}
		byDate[date][o.Key] = o
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := make([]dateSet, 0, len(byDate))
	for d, objs := range byDate {
		out = append(out, dateSet{date: d, objects: objs})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].date > out[j].date })
	return out, nil
}

func isDate(s string) bool {
	_, err := time.Parse("20060102", s)
	return len(s) == 8 && err == nil
}

// manifests reads the manifests of a date set whose artifact is present, by target.
func (d dateSet) manifests(ctx context.Context, store storage.Store, kind string) (map[string]artifact.Manifest, error) {
	out := map[string]artifact.Manifest{}
	for key := range d.objects {
		if !artifact.IsManifest(key) {
			continue
		}
		art := strings.TrimSuffix(key, artifact.ManifestSuffix)
		if _, ok := d.objects[art]; !ok {
			continue // a manifest without its artifact is not a backup
		}
		m, err := artifact.ReadManifest(ctx, store, art)
		if err != nil {
			return nil, err
		}
		if m.Kind != kind {
			continue
		}
		if old, ok := out[m.Target]; !ok || m.CreatedAt.After(old.CreatedAt) {
			out[m.Target] = m
		}
	}
	return out, nil
}

func seconds(d time.Duration) string { return fmt.Sprintf("%ds", int(d.Round(time.Second).Seconds())) }

func sha256Of(r io.Reader) (string, int64, error) {
	h := sha256.New()
	n, err := io.Copy(h, r)
	if err != nil {
		return "", n, err
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

var dateInName = regexp.MustCompile(`\d{8}`)
