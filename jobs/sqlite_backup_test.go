package jobs

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/wopr-network/opsd/internal/artifact"
	"github.com/wopr-network/opsd/internal/demo"
	"github.com/wopr-network/opsd/internal/sqlite"
	"github.com/wopr-network/opsd/internal/storage"
	"github.com/wopr-network/opsd/internal/storage/local"
	"github.com/wopr-network/opsd/internal/storage/storagetest"
)

var day1 = time.Date(2026, 11, 25, 3, 0, 0, 0, time.UTC)

func platformJob(t *testing.T, dir string, store storage.Store, mutate func(*SQLiteBackupConfig)) (*SQLiteBackup, map[string]string) {
	t.Helper()
	paths, err := demo.Create(context.Background(), dir, 300)
	if err != nil {
		t.Fatal(err)
	}
	cfg := SQLiteBackupConfig{KeyTemplate: "platform/{date}/{db}-{date}.db", Compression: "none", Parallel: 2, Node: "n1",
		TempDir: filepath.Join(dir, "tmp"), Now: func() time.Time { return day1 }}
	for _, name := range demo.Names {
		cfg.Databases = append(cfg.Databases, SQLiteDatabase{Name: name, Path: paths[name]})
	}
	if mutate != nil {
		mutate(&cfg)
	}
	return NewSQLiteBackup("platform-db-backup", cfg, store), paths
}

func download(t *testing.T, store storage.Store, key, to string, ids []age.Identity) artifact.Manifest {
	t.Helper()
	ctx := context.Background()
	m, err := artifact.ReadManifest(ctx, store, key)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := artifact.Open(ctx, store, m, ids)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	f, err := os.Create(to)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(f, h), rc); err != nil {
		t.Fatalf("download %s: %v", key, err)
	}
	f.Close()
	if got := hex.EncodeToString(h.Sum(nil)); got != m.RawSHA256 {
		t.Fatalf("%s: decoded sha %s, manifest raw sha %s", key, got, m.RawSHA256)
	}
	return m
}

func TestSQLiteBackupAllSevenToS3(t *testing.T) {
	fake := storagetest.NewFakeS3(t)
	store := storagetest.NewS3(t, fake.Config)
	dir := t.TempDir()
	j, _ := platformJob(t, dir, store, nil)
	res, err := j.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Targets) != 7 || res.Summary != "7 of 7 databases backed up" {
		t.Fatalf("result: %+v", res)
	}
	for _, name := range demo.Names {
		key := "platform/20261125/" + name + "-20261125.db"
		m := download(t, store, key, filepath.Join(dir, name+".restored.db"), nil)
		if m.Target != name || m.Node != "n1" || m.Kind != "sqlite" || m.SQLite == nil || len(m.SQLite.Tables) == 0 || m.Compression != "none" {
			t.Fatalf("manifest of %s: %+v", name, m)
		}
		if err := sqlite.Check(context.Background(), filepath.Join(dir, name+".restored.db")); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	if entries, _ := os.ReadDir(filepath.Join(dir, "tmp")); len(entries) != 0 {
		t.Fatalf("temp files left: %v", entries)
	}
}

// TestSQLiteBackupUnderWriteLoad: a ≥100 MB WAL database; after every copy step a writer commits
// a row (a hook makes the interleaving deterministic, so the test holds on a busy machine). The
// backup finishes, passes integrity_check, and its copy holds exactly the rows committed before
// the copy began.
func TestSQLiteBackupUnderWriteLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 110 MB")
	}
	fake := storagetest.NewFakeS3(t)
	store := storagetest.NewS3(t, fake.Config)
	dir := t.TempDir()
	src := filepath.Join(dir, "big.db")
	if err := demo.ItemsDB(src, 100000); err != nil {
		t.Fatal(err)
	}
	w, err := demo.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	var before int64
	if err := w.QueryRow(`SELECT count(*) FROM items`).Scan(&before); err != nil {
		t.Fatal(err)
	}
	steps := 0
	defer sqlite.SetStepHook(func() {
		steps++
		if _, err := w.Exec(`INSERT INTO items (payload) VALUES (randomblob(100))`); err != nil {
			t.Errorf("after copy step %d the writer could not commit during the backup: %v", steps, err)
		}
	})()
	j := NewSQLiteBackup("big", SQLiteBackupConfig{Databases: []SQLiteDatabase{{Name: "big", Path: src}}, KeyTemplate: "platform/{date}/{db}-{date}.db",
		Compression: "zstd", TempDir: filepath.Join(dir, "tmp"), Node: "n1"}, store)
	res, err := j.Run(context.Background())
	if err != nil {
		t.Fatalf("backup under load: %v", err)
	}
	if steps < 3 {
		t.Fatalf("the copy took %d steps; want at least 3 so that commits interleave with it", steps)
	}
	restored := filepath.Join(dir, "restored.db")
	download(t, store, res.Targets[0].Key, restored, nil)
	if err := sqlite.Check(context.Background(), restored); err != nil {
		t.Fatal(err)
	}
	n, _ := sqlite.CountRows(context.Background(), restored, "items")
	if n != before {
		t.Fatalf("restored copy has %d rows, want exactly the %d committed before the backup began", n, before)
	}
	var live int64
	w.QueryRow(`SELECT count(*) FROM items`).Scan(&live)
	if live != before+int64(steps) {
		t.Fatalf("live database has %d rows, want %d (every commit during the backup landed)", live, before+int64(steps))
	}
}

// corrupt overwrites the header of a b-tree page in the middle of the file.
func corrupt(t *testing.T, path string) {
	t.Helper()
	info, err := sqlite.Inspect(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	page := info.PageCount / 2
	if _, err := f.WriteAt(bytes.Repeat([]byte{0xEE}, 64), (page-1)*info.PageSize); err != nil {
		t.Fatal(err)
	}
}

func TestSQLiteBackupCorruptDatabaseIsNotUploaded(t *testing.T) {
	fake := storagetest.NewFakeS3(t)
	store := storagetest.NewS3(t, fake.Config)
	dir := t.TempDir()
	j, paths := platformJob(t, dir, store, nil)
	ctx := context.Background()
	if _, err := j.Run(ctx); err != nil {
		t.Fatal(err)
	}
	oldKey := "platform/20261125/billing-20261125.db"
	old, _ := artifact.ReadManifest(ctx, store, oldKey)

	corrupt(t, paths["billing"])
	j.cfg.Now = func() time.Time { return day1.Add(24 * time.Hour) }
	res, err := j.Run(ctx)
	if err == nil || !strings.Contains(err.Error(), "1 of 7 databases failed: billing") {
		t.Fatalf("run error = %v", err)
	}
	for _, tr := range res.Targets {
		key := "platform/20261126/" + tr.Name + "-20261126.db"
		if tr.Name == "billing" {
			if tr.Status != TargetFailed || !strings.Contains(tr.Err.Error(), "integrity check failed") || !strings.Contains(tr.Err.Error(), "nothing uploaded") {
				t.Fatalf("billing: %+v", tr)
			}
			if fake.HasObject(key) || fake.HasObject(artifact.ManifestKey(key)) {
				t.Fatal("a corrupt copy was uploaded")
			}
			continue
		}
		if tr.Status != TargetOK || !fake.HasObject(key) || !fake.HasObject(artifact.ManifestKey(key)) {
			t.Fatalf("%s was not backed up: %+v", tr.Name, tr)
		}
	}
	still, err := artifact.ReadManifest(ctx, store, oldKey)
	if err != nil || still.SHA256 != old.SHA256 {
		t.Fatalf("yesterday's billing backup changed: %v", err)
	}
}

func TestSQLiteBackupMissingAndOptional(t *testing.T) {
	store, _ := local.New(t.TempDir())
	dir := t.TempDir()
	j, _ := platformJob(t, dir, store, func(c *SQLiteBackupConfig) {
		c.Databases = []SQLiteDatabase{
			{Name: "gone", Path: filepath.Join(dir, "nope", "gone.db")},
			{Name: "maybe", Path: filepath.Join(dir, "nope", "maybe.db"), Optional: true},
		}
	})
	res, err := j.Run(context.Background())
	if err == nil {
		t.Fatal("a missing database did not fail the run")
	}
	gone, maybe := res.Targets[0], res.Targets[1]
	if gone.Status != TargetFailed || gone.Err.Error() != "database file not found: "+filepath.Join(dir, "nope", "gone.db") {
		t.Fatalf("gone: %+v", gone)
	}
	if maybe.Status != TargetSkipped || !strings.Contains(maybe.Note, "maybe.db") {
		t.Fatalf("maybe: %+v", maybe)
	}
	if _, err := os.Stat(filepath.Join(dir, "nope")); !os.IsNotExist(err) {
		t.Fatal("the backup created the missing database's directory")
	}
}

// failAfter is a store whose server dies after n bytes of an upload have gone through.
type dyingStore struct {
	storage.Store
	after int64
	kill  func()
}

type killingReader struct {
	r    io.Reader
	left int64
	kill func()
	once sync.Once
}

func (k *killingReader) Read(p []byte) (int, error) {
	if k.left <= 0 {
		k.once.Do(k.kill)
	}
	n, err := k.r.Read(p)
	k.left -= int64(n)
	return n, err
}

func (d *dyingStore) Put(ctx context.Context, key string, r io.Reader, o storage.PutOptions) (storage.ObjectInfo, error) {
	return d.Store.Put(ctx, key, &killingReader{r: r, left: d.after, kill: d.kill}, o)
}

func TestSQLiteBackupStoreGoesAwayMidUpload(t *testing.T) {
	if testing.Short() {
		t.Skip("large database; runs in the full (non-short) pass")
	}
	fake := storagetest.NewFakeS3(t)
	store := storagetest.NewS3(t, fake.Config)
	dir := t.TempDir()
	src := filepath.Join(dir, "big.db")
	if err := demo.ItemsDB(src, 20000); err != nil {
		t.Fatal(err)
	}
	j := NewSQLiteBackup("big", SQLiteBackupConfig{Databases: []SQLiteDatabase{{Name: "big", Path: src}}, KeyTemplate: "platform/{date}/{db}-{date}.db",
		TempDir: filepath.Join(dir, "tmp"), Now: func() time.Time { return day1 }}, &dyingStore{Store: store, after: 8 << 20, kill: fake.Stop})
	res, err := j.Run(context.Background())
	if err == nil || res.Targets[0].Status != TargetFailed {
		t.Fatalf("upload to a dead store succeeded: %+v", res)
	}
	if !strings.Contains(res.Targets[0].Err.Error(), "upload platform/20261125/big-20261125.db") {
		t.Fatalf("error does not name the key: %v", res.Targets[0].Err)
	}
	key := "platform/20261125/big-20261125.db"
	if fake.HasObject(key) || fake.HasObject(artifact.ManifestKey(key)) {
		t.Fatal("a partial object or manifest exists at the key")
	}
	if entries, _ := os.ReadDir(filepath.Join(dir, "tmp")); len(entries) != 0 {
		t.Fatalf("temp files left: %v", entries)
	}
}

func TestSQLiteBackupZstdAgeRoundTrip(t *testing.T) {
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	store, _ := local.New(t.TempDir())
	dir := t.TempDir()
	j, paths := platformJob(t, dir, store, func(c *SQLiteBackupConfig) {
		c.Compression, c.Recipients = "zstd", []age.Recipient{id.Recipient()}
	})
	res, err := j.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	key := res.Targets[1].Key
	if key != "platform/20261125/billing-20261125.db.zst.age" {
		t.Fatalf("key = %s", key)
	}
	// Without the identity the artifact cannot be read.
	m, _ := artifact.ReadManifest(context.Background(), store, key)
	if _, err := artifact.Open(context.Background(), store, m, nil); err == nil {
		t.Fatal("opened an encrypted artifact without an identity")
	}
	restored := filepath.Join(dir, "billing.restored.db")
	m = download(t, store, key, restored, []age.Identity{id})
	if m.Compression != "zstd" || m.Encryption != "age" || m.Size >= m.RawSize {
		t.Fatalf("manifest: %+v", m)
	}
	// Byte-identical to a fresh copy of the idle source.
	fresh := filepath.Join(dir, "fresh.db")
	if err := sqlite.Backup(context.Background(), paths["billing"], fresh); err != nil {
		t.Fatal(err)
	}
	a, _ := os.ReadFile(restored)
	b, _ := os.ReadFile(fresh)
	if !bytes.Equal(a, b) {
		t.Fatal("restored database differs from the source copy")
	}
	n1, _ := sqlite.CountRows(context.Background(), restored, "meter_events")
	n2, _ := sqlite.CountRows(context.Background(), paths["billing"], "meter_events")
	if n1 != n2 || n1 == 0 {
		t.Fatalf("rows: restored %d, source %d", n1, n2)
	}
}

func TestSQLiteBackupCancelledLeavesNoTempFiles(t *testing.T) {
	if testing.Short() {
		t.Skip("large database; runs in the full (non-short) pass")
	}
	store, _ := local.New(t.TempDir())
	dir := t.TempDir()
	src := filepath.Join(dir, "big.db")
	if err := demo.ItemsDB(src, 50000); err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(dir, "tmp")
	j := NewSQLiteBackup("big", SQLiteBackupConfig{Databases: []SQLiteDatabase{{Name: "big", Path: src}}, KeyTemplate: "p/{db}", TempDir: tmp}, store)
	for _, delay := range []time.Duration{0, 5 * time.Millisecond, 20 * time.Millisecond, 60 * time.Millisecond} {
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(delay, cancel)
		res, err := j.Run(ctx)
		cancel()
		if err != nil && !errors.Is(res.Targets[0].Err, context.Canceled) {
			t.Fatalf("delay %s: %v", delay, res.Targets[0].Err)
		}
		if entries, _ := os.ReadDir(tmp); len(entries) != 0 {
			t.Fatalf("delay %s: temp files left: %v", delay, entries)
		}
		if err != nil {
			if _, serr := store.Stat(context.Background(), "p/big"); !errors.Is(serr, storage.ErrNotFound) {
				t.Fatalf("delay %s: cancelled run left an object", delay)
			}
		}
	}
}
