package layout

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/wopr-network/opsd/internal/artifact"
	"github.com/wopr-network/opsd/internal/storage"
)

// Set is the platform database backups of one {date}: the objects written from the SQLite
// templates with that date, and their manifests.
type Set struct {
	Date    string
	Objects map[string]storage.ObjectInfo
}

// Sets groups the platform database backups by their {date}, newest first.
func (l *Layout) Sets(ctx context.Context, store storage.Store) ([]Set, error) {
	objs, err := l.list(ctx, store, Fields{}, []Kind{SQLite})
	if err != nil {
		return nil, err
	}
	byDate := map[string]map[string]storage.ObjectInfo{}
	for key, o := range objs {
		if storage.IsStaging(key) {
			continue // an upload in progress (or debris): not part of any set
		}
		a, ok := l.match(strings.TrimSuffix(key, artifact.ManifestSuffix), Fields{}, []Kind{SQLite})
		if !ok || !IsDate(a.Date) {
			continue
		}
		if byDate[a.Date] == nil {
			byDate[a.Date] = map[string]storage.ObjectInfo{}
		}
		byDate[a.Date][key] = o
	}
	out := make([]Set, 0, len(byDate))
	for d, objs := range byDate {
		out = append(out, Set{Date: d, Objects: objs})
	}
	sortSets(out)
	return out, nil
}

// sortSets orders sets newest first, by when they are from (Time).
func sortSets(sets []Set) {
	times := make(map[string]time.Time, len(sets))
	for _, s := range sets {
		times[s.Date] = s.Time()
	}
	sort.Slice(sets, func(i, j int) bool {
		if ti, tj := times[sets[i].Date], times[sets[j].Date]; !ti.Equal(tj) {
			return ti.After(tj)
		}
		return sets[i].Date > sets[j].Date
	})
}

// Time is when the set is from: the start of its date, unless that is more than ClockAhead
// after the store received the newest of its objects, when a clock that was ahead dated it: then
// when the store received it. (Ordered by their dates, a night written while the clock was a
// year ahead stayed the newest set for a year, and restores and drills took it over every night
// after.)
func (s Set) Time() time.Time {
	d, err := ParseDate(s.Date)
	var received time.Time
	for _, o := range s.Objects {
		if o.ModTime.After(received) {
			received = o.ModTime
		}
	}
	if err != nil || (!received.IsZero() && d.After(received.Add(ClockAhead))) {
		return received
	}
	return d
}

// Manifests reads the manifests of the set's artifacts of a kind (only those whose artifact is
// present), by target.
func (s Set) Manifests(ctx context.Context, store storage.Store, kind string) (map[string]artifact.Manifest, error) {
	out := map[string]artifact.Manifest{}
	for key := range s.Objects {
		if !artifact.IsManifest(key) {
			continue
		}
		art := strings.TrimSuffix(key, artifact.ManifestSuffix)
		if _, ok := s.Objects[art]; !ok {
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

// ChooseSet finds the newest date (within lookback dates, or exactly date when given) whose set
// holds a sqlite backup with a manifest for every name in required. notes say which newer sets
// were incomplete. When none is complete it returns the newest set as it is, with a note, unless
// strict, in which case it fails.
func (l *Layout) ChooseSet(ctx context.Context, store storage.Store, required []string, lookback int, date string, strict bool) (string, map[string]artifact.Manifest, []string, error) {
	prefix := l.Root(SQLite)
	sets, err := l.Sets(ctx, store)
	if err != nil {
		return "", nil, nil, err
	}
	if len(sets) == 0 {
		return "", nil, nil, fmt.Errorf("no backups under %s", prefix)
	}
	var notes []string
	var newest map[string]artifact.Manifest
	for i, s := range sets {
		if date != "" && s.Date != date {
			continue
		}
		if date == "" && i >= lookback {
			break
		}
		ms, err := s.Manifests(ctx, store, "sqlite")
		if err != nil {
			return "", nil, notes, err
		}
		var missing []string
		for _, n := range required {
			if _, ok := ms[n]; !ok {
				missing = append(missing, n)
			}
		}
		if len(missing) == 0 || (date != "" && !strict) {
			if len(notes) > 0 {
				notes = append(notes, "using "+s.Date+", the newest complete set")
			}
			return s.Date, ms, notes, nil
		}
		if date != "" {
			return "", nil, notes, fmt.Errorf("set %s has no backup with a manifest for %s", s.Date, strings.Join(missing, ", "))
		}
		if newest == nil {
			newest = ms
		}
		notes = append(notes, fmt.Sprintf("set %s is incomplete: no backup with a manifest for %s", s.Date, strings.Join(missing, ", ")))
	}
	if date != "" {
		return "", nil, notes, fmt.Errorf("no backups under %s", l.SetPrefix(date))
	}
	if strict {
		return "", nil, notes, fmt.Errorf("no complete set in the newest %d dates under %s", lookback, prefix)
	}
	notes = append(notes, fmt.Sprintf("no complete set in the newest %d dates; drilling %s as it is", lookback, sets[0].Date))
	return sets[0].Date, newest, notes, nil
}

// DateSets groups the objects under a folder by the date folder that follows it
// ({prefix}{YYYYMMDD}/...), newest first: how the PostgreSQL dumps of a drill's or restore's
// prefix are found. Staging objects (uploads not yet published) belong to no set.
func DateSets(ctx context.Context, store storage.Store, prefix string) ([]Set, error) {
	byDate := map[string]map[string]storage.ObjectInfo{}
	err := store.List(ctx, prefix, func(o storage.ObjectInfo) error {
		if storage.IsStaging(o.Key) {
			return nil
		}
		date, _, ok := strings.Cut(strings.TrimPrefix(o.Key, prefix), "/")
		if !ok || !IsDate(date) {
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
	out := make([]Set, 0, len(byDate))
	for d, objs := range byDate {
		out = append(out, Set{Date: d, Objects: objs})
	}
	sortSets(out)
	return out, nil
}
