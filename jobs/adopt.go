package jobs

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/klauspost/pgzip"

	"github.com/wopr-network/opsd/internal/artifact"
	"github.com/wopr-network/opsd/internal/sqlite"
	"github.com/wopr-network/opsd/internal/storage"
)

// AdoptConfig configures Adopt.
type AdoptConfig struct {
	// Prefix limits adoption to keys under it ("" is the whole store).
	Prefix string
	// DryRun verifies and reports but writes no manifest.
	DryRun bool
	// Tables are the tables each database (by name) must hold.
	Tables map[string][]string
	// TenantPrefix names tenant containers (default "tenant_"): their archives are container
	// exports, other archives are directory snapshots.
	TenantPrefix string
	// Node is recorded in the manifests of archives whose key names no node.
	Node string
	// Tier is recorded in the manifests of adopted archives (container exports and snapshots):
	// retention prunes a tenant by the tier its newest manifest records, and refuses (keeps
	// everything of) a target whose newest manifest has none.
	Tier string
	// TempDir receives database downloads while they are checked (default os.TempDir()).
	TempDir string
	Now     func() time.Time
}

// AdoptItem is one candidate and what became of it.
type AdoptItem struct {
	Key    string `json:"key"`
	Kind   string `json:"kind,omitempty"`
	Target string `json:"target,omitempty"`
	// Tier is the tier recorded in an adopted archive's manifest (--tier).
	Tier string `json:"tier,omitempty"`
	Size int64  `json:"size"`
	// Reason says why a candidate failed or was skipped.
	Reason string `json:"reason,omitempty"`
}

// AdoptReport is what Adopt found.
type AdoptReport struct {
	DryRun  bool        `json:"dryRun"`
	Adopted []AdoptItem `json:"adopted"`
	Failed  []AdoptItem `json:"failed"`
	Skipped []AdoptItem `json:"skipped"`
}

// Text renders the report for operators.
func (r AdoptReport) Text() string {
	var b strings.Builder
	verb := "ADOPTED"
	if r.DryRun {
		verb = "WOULD ADOPT"
		b.WriteString("DRY RUN: no manifest is written\n")
	}
	for _, it := range r.Adopted {
		tier := ""
		if it.Tier != "" {
			tier = ", tier " + it.Tier
		}
		fmt.Fprintf(&b, "%-12s %s  (%s %s, %d bytes%s)\n", verb, it.Key, it.Kind, it.Target, it.Size, tier)
	}
	for _, it := range r.Failed {
		fmt.Fprintf(&b, "%-12s %s  %s\n", "FAIL", it.Key, it.Reason)
	}
	for _, it := range r.Skipped {
		fmt.Fprintf(&b, "%-12s %s  %s\n", "SKIP", it.Key, it.Reason)
	}
	fmt.Fprintf(&b, "Result: %d adopted, %d failed, %d skipped\n", len(r.Adopted), len(r.Failed), len(r.Skipped))
	return b.String()
}

// ErrAdoptFailed is returned (wrapped) when a candidate failed verification.
var ErrAdoptFailed = errors.New("backups failed verification")

var (
	dateInName = regexp.MustCompile(`(^|[-_])(\d{8})($|[-_.])`)
	dbDateName = regexp.MustCompile(`^(.+?)[-_]\d{8}$|^\d{8}[-_](.+)$`)
)

// Adopt verifies backups that opsd did not write (objects under the prefix with no manifest and
// no opsd staging marker) and writes a manifest marked adopted for each one that passes, so
// drills, restores, verification and retention can use backups made before opsd. SQLite files
// (.db) must pass PRAGMA integrity_check and hold their database's expected tables (the name is
// taken from the key: platform/{date}/{db}-{date}.db); .tar.gz archives must read whole as gzip
// and tar, end-of-archive marker included. Other objects are skipped. Each failure is listed
// with its reason, and the error wraps ErrAdoptFailed when any failed.
func Adopt(ctx context.Context, store storage.Store, cfg AdoptConfig) (AdoptReport, error) {
	if cfg.TenantPrefix == "" {
		cfg.TenantPrefix = "tenant_"
	}
	if cfg.TempDir == "" {
		cfg.TempDir = os.TempDir()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	rep := AdoptReport{DryRun: cfg.DryRun, Adopted: []AdoptItem{}, Failed: []AdoptItem{}, Skipped: []AdoptItem{}}
	objs, err := storage.ListAll(ctx, store, cfg.Prefix)
	if err != nil {
		return rep, fmt.Errorf("adopt: %w", err)
	}
	have := map[string]bool{}
	for _, o := range objs {
		have[o.Key] = true
	}
	sort.Slice(objs, func(i, j int) bool { return objs[i].Key < objs[j].Key })
	for _, o := range objs {
		if err := ctx.Err(); err != nil {
			return rep, err
		}
		if artifact.IsManifest(o.Key) || have[artifact.ManifestKey(o.Key)] {
			continue // opsd's manifests and the backups they describe
		}
		it := AdoptItem{Key: o.Key, Size: o.Size}
		if storage.IsStaging(o.Key) {
			it.Reason = "an unfinished opsd upload, not a backup"
			rep.Skipped = append(rep.Skipped, it)
			continue
		}
		// An object opsd uploaded whose manifest is not written (yet): a backup being written
		// right now, or one that died before its manifest (prune finishes or removes it). Never
		// adopted: its manifest would claim bytes a writer may still replace.
		if st, err := store.Stat(ctx, o.Key); err != nil {
			it.Reason = err.Error()
			rep.Failed = append(rep.Failed, it)
			continue
		} else if st.Metadata[storage.UploadMetaKey] != "" {
			it.Reason = "an opsd upload without its manifest (being written, or died before it; prune finishes or removes it), not a backup to adopt"
			rep.Skipped = append(rep.Skipped, it)
			continue
		}
		m, reason := adoptOne(ctx, store, cfg, o)
		it.Kind, it.Target, it.Tier = m.Kind, m.Target, m.Tier
		switch {
		case reason == "":
		case strings.HasPrefix(reason, "skip: "):
			it.Reason = strings.TrimPrefix(reason, "skip: ")
			rep.Skipped = append(rep.Skipped, it)
			continue
		default:
			it.Reason = reason
			rep.Failed = append(rep.Failed, it)
			continue
		}
		if !cfg.DryRun {
			if err := artifact.WriteManifest(ctx, store, m); err != nil {
				it.Reason = err.Error()
				rep.Failed = append(rep.Failed, it)
				continue
			}
		}
		rep.Adopted = append(rep.Adopted, it)
	}
	if len(rep.Failed) > 0 {
		return rep, fmt.Errorf("adopt: %d of %d %w", len(rep.Failed), len(rep.Failed)+len(rep.Adopted), ErrAdoptFailed)
	}
	return rep, nil
}

// adoptOne verifies one object and returns its manifest, or the reason it failed ("skip: ..."
// for objects that are not backups opsd knows how to check).
func adoptOne(ctx context.Context, store storage.Store, cfg AdoptConfig, o storage.ObjectInfo) (artifact.Manifest, string) {
	base := o.Key[strings.LastIndexByte(o.Key, '/')+1:]
	parts := strings.Split(o.Key, "/")
	m := artifact.Manifest{Key: o.Key, Source: "adopted", Node: cfg.Node, CreatedAt: o.ModTime.UTC(), Adopted: true, Tier: cfg.Tier,
		Note: "not written by opsd: verified and adopted by opsd adopt at " + cfg.Now().UTC().Format(time.RFC3339)}
	if d := dateInName.FindStringSubmatch(base); d != nil {
		if t, err := time.Parse("20060102", d[2]); err == nil {
			m.CreatedAt = t.UTC()
		}
	}
	switch {
	case strings.HasSuffix(base, ".tar.gz") || strings.HasSuffix(base, ".tgz"):
		if len(parts) < 2 {
			return m, "skip: an archive outside any target folder"
		}
		m.Target = parts[len(parts)-2]
		if parts[0] == "nightly" && len(parts) == 4 {
			m.Node = parts[1]
		}
		m.Kind = "snapshot"
		if strings.HasPrefix(m.Target, cfg.TenantPrefix) {
			m.Kind = "container"
		}
		m.Compression = artifact.Gzip
		return m, verifyArchive(ctx, store, &m)
	case strings.HasSuffix(base, ".db"):
		m.Kind, m.Tier = "sqlite", "" // tiers are the archives' (retention of tenants), not databases'

		name := strings.TrimSuffix(base, ".db")
		if g := dbDateName.FindStringSubmatch(name); g != nil {
			name = g[1] + g[2]
		}
		m.Target = name
		m.Compression = artifact.None
		tables, ok := cfg.Tables[name]
		if !ok {
			return m, fmt.Sprintf("database %q (from the key) is not a known platform database: its expected tables are unknown", name)
		}
		return m, verifyDatabase(ctx, store, &m, tables, cfg.TempDir)
	}
	return m, "skip: not a format opsd adopts (.db or .tar.gz)"
}

// verifyArchive reads the whole archive as gzip and tar and fills the manifest's checksums.
func verifyArchive(ctx context.Context, store storage.Store, m *artifact.Manifest) string {
	rc, _, err := store.Get(ctx, m.Key)
	if err != nil {
		return err.Error()
	}
	defer rc.Close()
	stored := sha256.New()
	var storedN int64
	tee := io.TeeReader(rc, writerFunc(func(p []byte) (int, error) {
		storedN += int64(len(p))
		return stored.Write(p)
	}))
	gz, err := pgzip.NewReader(tee)
	if err != nil {
		return "not gzip: " + err.Error()
	}
	defer gz.Close()
	raw := sha256.New()
	var rawN int64
	n, err := artifact.VerifyTar(io.TeeReader(gz, writerFunc(func(p []byte) (int, error) {
		rawN += int64(len(p))
		return raw.Write(p)
	})))
	if err != nil {
		return "not a complete tar.gz: " + err.Error()
	}
	if n == 0 {
		return "an empty archive"
	}
	// Read whatever follows the gzip stream (nothing, normally) so the checksum covers every byte.
	if _, err := io.Copy(io.Discard, tee); err != nil {
		return "read: " + err.Error()
	}
	m.Size, m.SHA256 = storedN, hex.EncodeToString(stored.Sum(nil))
	m.RawSize, m.RawSHA256 = rawN, hex.EncodeToString(raw.Sum(nil))
	return ""
}

// verifyDatabase downloads the database, checks it and fills the manifest.
func verifyDatabase(ctx context.Context, store storage.Store, m *artifact.Manifest, tables []string, dir string) string {
	f, err := os.CreateTemp(dir, ".opsd-adopt-*.db")
	if err != nil {
		return err.Error()
	}
	path := f.Name()
	f.Close()
	defer sqlite.RemoveDB(path)
	sum, n, err := artifact.Download(ctx, store, m.Key, path)
	if err != nil {
		return err.Error()
	}
	if n == 0 {
		return "an empty file"
	}
	head := make([]byte, 16)
	if f, err := os.Open(path); err == nil {
		io.ReadFull(f, head)
		f.Close()
	}
	if string(head) != "SQLite format 3\x00" {
		return "not a SQLite database"
	}
	if err := sqlite.Check(ctx, path); err != nil {
		return err.Error()
	}
	info, err := sqlite.Inspect(ctx, path)
	if err != nil {
		return err.Error()
	}
	present := map[string]bool{}
	for _, t := range info.Tables {
		present[t] = true
	}
	var missing []string
	for _, t := range tables {
		if !present[t] {
			missing = append(missing, t)
		}
	}
	if len(missing) > 0 {
		return fmt.Sprintf("missing tables of %s: %s", m.Target, strings.Join(missing, ", "))
	}
	m.Size, m.SHA256, m.RawSize, m.RawSHA256 = n, sum, n, sum
	m.SQLite = &artifact.SQLiteInfo{PageCount: info.PageCount, PageSize: info.PageSize, Tables: info.Tables}
	return ""
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
