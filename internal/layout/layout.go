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

// Kind is a family of keys, each written from its own templates.
type Kind string

// The kinds of keys opsd writes or reads.
const (
	SQLite     Kind = "sqlite"      // platform database backups, grouped in sets by {date}
	Nightly    Kind = "nightly"     // nightly container exports
	Hot        Kind = "hot"         // hot container exports (changed_only)
	Snapshot   Kind = "snapshot"    // WOPR_HOME directory snapshots
	OnDemand   Kind = "on_demand"   // the platform's on-demand snapshots
	PreRestore Kind = "pre_restore" // safety copies taken before a restore
	Postgres   Kind = "postgres"    // PostgreSQL dumps (postgres_backup), grouped by {date}
)

// The default templates (REFERENCE.md). Compression and encryption suffixes (.zst, .age) are
// appended to keys; gzip's .gz is part of the templates that use it.
const (
	DefaultSQLite     = "platform/{date}/{db}-{date}.db"
	DefaultNightly    = "nightly/{node}/{container}/{container}_{date}.tar.gz"
	DefaultHot        = "latest/{container}/latest.tar.gz"
	DefaultSnapshot   = "nightly/{node}/{instance}/{instance}_{date}.tar.gz"
	DefaultOnDemand   = "on-demand/{instance}/{id}"
	DefaultPreRestore = "pre-restore/{node}/{target}/{stamp}/{id}"
	DefaultPostgres   = "postgres/{date}/{database}-{date}.dump"
	// PostgresRoot is the folder of the default PostgreSQL dumps: what drills and restores
	// search ({root}{date}/...) unless configured otherwise.
	PostgresRoot = "postgres/"
	// PostgresPreRestore names the safety dump of a live database taken before a restore
	// replaces it (under pre-restore/, kept by its own retention rule).
	PostgresPreRestore = "pre-restore/postgres/{database}/{stamp}/{database}.dump"
)

// Templates are the key templates of every kind, as configured (several jobs of a kind may use
// different ones). An empty list means the default.
type Templates struct {
	SQLite, Nightly, Hot, Snapshot, Postgres []string
	OnDemand, PreRestore                     string
}

// Layout answers every question about object keys.
type Layout struct {
	kinds []Kind
	tpl   map[Kind][]Template
}

// New parses the templates; a bad one is an error naming it.
func New(t Templates) (*Layout, error) {
	l := &Layout{tpl: map[Kind][]Template{}}
	add := func(k Kind, list []string, def string) error {
		l.kinds = append(l.kinds, k)
		if len(list) == 0 {
			list = []string{def}
		}
		seen := map[string]bool{}
		for _, raw := range list {
			if seen[raw] {
				continue
			}
			seen[raw] = true
			p, err := Parse(raw)
			if err != nil {
				return fmt.Errorf("%s keys: %w", k, err)
			}
			l.tpl[k] = append(l.tpl[k], p)
		}
		return nil
	}
	one := func(s string) []string {
		if s == "" {
			return nil
		}
		return []string{s}
	}
	for _, e := range []struct {
		k    Kind
		list []string
		def  string
	}{{SQLite, t.SQLite, DefaultSQLite}, {Nightly, t.Nightly, DefaultNightly}, {Hot, t.Hot, DefaultHot},
		{Snapshot, t.Snapshot, DefaultSnapshot}, {OnDemand, one(t.OnDemand), DefaultOnDemand}, {PreRestore, one(t.PreRestore), DefaultPreRestore},
		{Postgres, t.Postgres, DefaultPostgres}} {
		if err := add(e.k, e.list, e.def); err != nil {
			return nil, err
		}
	}
	return l, nil
}

// Default is the layout of REFERENCE.md.
func Default() *Layout {
	l, err := New(Templates{})
	if err != nil {
		panic(err)
	}
	return l
}

// Templates returns the templates of a kind.
func (l *Layout) Templates(k Kind) []Template { return l.tpl[k] }

// Root returns the folder every key of a kind lies under ("" when the templates share none):
// what a drill, verification or restore locks against prune.
func (l *Layout) Root(k Kind) string {
	var root string
	for i, t := range l.tpl[k] {
		p := t.Prefix(Fields{})
		if i == 0 {
			root = p
			continue
		}
		for !strings.HasPrefix(p, root) {
			root = root[:strings.LastIndexByte(strings.TrimSuffix(root, "/"), '/')+1]
		}
	}
	return root
}

// SetPrefix returns the folder of a date's platform set (the root when the date is no folder).
func (l *Layout) SetPrefix(date string) string {
	return l.tpl[SQLite][0].Prefix(Fields{Date: date})
}

// PreRestoreKey names the safety copy of target taken at a time; ext is its file extension.
func (l *Layout) PreRestoreKey(node, target string, at time.Time, ext string) string {
	return l.tpl[PreRestore][0].Key(Fields{Node: node, Target: target, Stamp: Stamp(at), ID: target + ext})
}

// PostgresPreRestoreKey names the safety dump of database taken at a time before a restore;
// suffix is the encoding's (.zst, .age).
func PostgresPreRestoreKey(database string, at time.Time, suffix string) string {
	return postgresPreRestore.Key(Fields{Target: database, Stamp: Stamp(at)}) + suffix
}

var postgresPreRestore = MustParse(PostgresPreRestore)

// MatchPostgresPreRestore parses a safety dump's key: its database and time.
func MatchPostgresPreRestore(key string) (database string, at time.Time, ok bool) {
	f, ok := postgresPreRestore.Match(key)
	if !ok {
		return "", time.Time{}, false
	}
	at, ok = f.KeyTime()
	return f.Target, at, ok
}

// Owner says which kind of key this is and what its fields are (the first kind whose template
// matches; manifests are not keys of any kind).
func (l *Layout) Owner(key string) (Kind, Fields, bool) {
	if artifact.IsManifest(key) {
		return "", Fields{}, false
	}
	for _, k := range l.kinds {
		for _, t := range l.tpl[k] {
			if f, ok := t.Match(key); ok {
				return k, f, true
			}
		}
	}
	return "", Fields{}, false
}

// BelongsTo reports whether key is a backup of container (a nightly or hot export, or a
// safety copy of it) and names no other place: no traversal, no absolute path.
func (l *Layout) BelongsTo(key, container string) bool {
	if key == "" || container == "" || strings.HasPrefix(key, "/") || strings.Contains(key, "..") || strings.Contains(key, "//") ||
		strings.Contains(key, "\\") || artifact.IsManifest(key) {
		return false
	}
	for _, k := range []Kind{Nightly, Hot, PreRestore} {
		for _, t := range l.tpl[k] {
			if f, ok := t.Match(key); ok && f.Target == container {
				return true
			}
		}
	}
	return false
}

// Artifact is one stored backup: an object with its manifest beside it.
type Artifact struct {
	Key  string
	Kind Kind
	Fields
	Object storage.ObjectInfo
}

// ClockAhead is how much later than the store received an object its key's date and time may be
// and still come from a right clock ({date} is the UTC day, or a day in a time zone ahead of
// UTC). A key dated later was dated by a clock that was ahead.
const ClockAhead = 48 * time.Hour

// Time is when the backup is from: the key's own date and time, else the object's; also the
// object's when the key is dated more than ClockAhead after the store received it (a clock
// that was ahead: ordered by its key, a backup written while the clock was a year ahead stayed
// the newest for a year, and restores took it over every backup made after).
func (a Artifact) Time() time.Time {
	if t, ok := a.KeyTime(); ok && (a.Object.ModTime.IsZero() || !t.After(a.Object.ModTime.Add(ClockAhead))) {
		return t
	}
	return a.Object.ModTime
}

// newer orders artifacts newest first: by their time, then upload time, then key.
func newer(a, b Artifact) bool {
	if ta, tb := a.Time(), b.Time(); !ta.Equal(tb) {
		return ta.After(tb)
	}
	if !a.Object.ModTime.Equal(b.Object.ModTime) {
		return a.Object.ModTime.After(b.Object.ModTime)
	}
	return a.Key > b.Key
}

// list lists every object under the folders the kinds' keys with want's fields lie in.
func (l *Layout) list(ctx context.Context, store storage.Store, want Fields, kinds []Kind) (map[string]storage.ObjectInfo, error) {
	var prefixes []string
	for _, k := range kinds {
		for _, t := range l.tpl[k] {
			prefixes = append(prefixes, t.Prefix(want))
		}
	}
	sort.Strings(prefixes)
	objs := map[string]storage.ObjectInfo{}
	for i, p := range prefixes {
		if i > 0 && strings.HasPrefix(p, prefixes[i-1]) {
			prefixes[i] = prefixes[i-1] // already listed
			continue
		}
		if err := store.List(ctx, p, func(o storage.ObjectInfo) error { objs[o.Key] = o; return nil }); err != nil {
			return nil, fmt.Errorf("list %s: %w", p, err)
		}
	}
	return objs, nil
}

// Artifacts returns the backups of the kinds whose keys have want's non-empty fields, newest
// first. Only objects with a manifest count: an upload cut short is not a backup.
func (l *Layout) Artifacts(ctx context.Context, store storage.Store, want Fields, kinds ...Kind) ([]Artifact, error) {
	objs, err := l.list(ctx, store, want, kinds)
	if err != nil {
		return nil, err
	}
	var out []Artifact
	for key, o := range objs {
		if artifact.IsManifest(key) || storage.IsStaging(key) {
			continue
		}
		if _, ok := objs[artifact.ManifestKey(key)]; !ok {
			continue
		}
		if a, ok := l.match(key, want, kinds); ok {
			a.Object = o
			out = append(out, a)
		}
	}
	sort.Slice(out, func(i, j int) bool { return newer(out[i], out[j]) })
	return out, nil
}

func (l *Layout) match(key string, want Fields, kinds []Kind) (Artifact, bool) {
	for _, k := range kinds {
		for _, t := range l.tpl[k] {
			if f, ok := t.Match(key); ok && f.matches(want) {
				return Artifact{Key: key, Kind: k, Fields: f}, true
			}
		}
	}
	return Artifact{}, false
}

// Newest returns the newest backup of the kinds whose keys have want's fields.
func (l *Layout) Newest(ctx context.Context, store storage.Store, want Fields, kinds ...Kind) (Artifact, bool, error) {
	list, err := l.Artifacts(ctx, store, want, kinds...)
	if err != nil || len(list) == 0 {
		return Artifact{}, false, err
	}
	return list[0], true, nil
}

// NewestPerTarget returns each target's newest backup of the kinds.
func (l *Layout) NewestPerTarget(ctx context.Context, store storage.Store, want Fields, kinds ...Kind) (map[string]Artifact, error) {
	list, err := l.Artifacts(ctx, store, want, kinds...)
	if err != nil {
		return nil, err
	}
	out := map[string]Artifact{}
	for _, a := range list {
		if _, ok := out[a.Target]; !ok {
			out[a.Target] = a
		}
	}
	return out, nil
}

// TargetFolder is a folder whose Depth-th path element below Prefix names a target
// (nightly/{node}/{container}/...: prefix nightly/, depth 2).
type TargetFolder struct {
	Prefix string
	Depth  int
}

// defaults are the built-in template of each kind.
var defaults = map[Kind]string{SQLite: DefaultSQLite, Nightly: DefaultNightly, Hot: DefaultHot, Snapshot: DefaultSnapshot,
	OnDemand: DefaultOnDemand, PreRestore: DefaultPreRestore}

// TargetFolders returns the folders that the templates of the kinds, configured and built-in,
// name after their container or instance. A template that names the target only in the file
// name gives none.
func (l *Layout) TargetFolders(kinds ...Kind) []TargetFolder {
	var out []TargetFolder
	seen := map[TargetFolder]bool{}
	for _, k := range kinds {
		raws := []string{defaults[k]}
		for _, t := range l.tpl[k] {
			raws = append(raws, t.raw)
		}
		for _, raw := range raws {
			if f, ok := targetFolder(raw); ok && !seen[f] {
				seen[f] = true
				out = append(out, f)
			}
		}
	}
	return out
}

// targetFolder finds the folder a template names after its target.
func targetFolder(raw string) (TargetFolder, bool) {
	first := strings.IndexByte(raw, '{')
	if first < 0 {
		return TargetFolder{}, false
	}
	prefix := raw[:strings.LastIndexByte(raw[:first], '/')+1]
	parts := strings.Split(strings.TrimPrefix(raw, prefix), "/")
	for i, p := range parts[:len(parts)-1] {
		if p == "{container}" || p == "{instance}" {
			return TargetFolder{Prefix: prefix, Depth: i + 1}, prefix != ""
		}
	}
	return TargetFolder{}, false
}
