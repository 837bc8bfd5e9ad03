package jobs

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wopr-network/opsd/internal/artifact"
	"github.com/wopr-network/opsd/internal/artifact/artifacttest"
	"github.com/wopr-network/opsd/internal/storage"
	"github.com/wopr-network/opsd/internal/storage/storagetest"
)

// sqliteFile creates a real SQLite database with the given tables (one row each) and returns
// its bytes.
func sqliteFile(t *testing.T, tables ...string) []byte {
	t.Helper()
	path := filepath.Join(t.TempDir(), "x.db")
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	for _, tb := range tables {
		if _, err := db.Exec(`CREATE TABLE "` + tb + `" (id INTEGER PRIMARY KEY, v TEXT); INSERT INTO "` + tb + `" (v) VALUES ('row')`); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// tarGz returns a gzip'd tar of files; cut drops the end-of-archive marker (a stream cut exactly
// between two files).
func tarGz(t *testing.T, cut bool, files ...string) []byte {
	t.Helper()
	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	for _, f := range files {
		tw.WriteHeader(&tar.Header{Name: f, Mode: 0o644, Size: int64(len(f))})
		tw.Write([]byte(f))
	}
	tw.Flush()
	n := tb.Len()
	tw.Close()
	raw := tb.Bytes()
	if cut {
		raw = raw[:n]
	}
	var gb bytes.Buffer
	gw := gzip.NewWriter(&gb)
	gw.Write(raw)
	gw.Close()
	return gb.Bytes()
}

// TestAdoptVerifiesOldBackups: a bucket holding the old scripts' backups. adopt --dry-run
// reports without writing; adopt writes manifests marked adopted only for the backups that pass
// (SQLite: integrity_check and the expected tables; .tar.gz: a full read with the end marker),
// lists every failure with its reason, and afterwards prune counts the adopted ones as backups.
func TestAdoptVerifiesOldBackups(t *testing.T) {
	f := storagetest.NewFakeS3(t)
	store := storagetest.NewS3(t, f.Config)
	ctx := context.Background()
	corrupt := sqliteFile(t, "user", "session", "account")
	copy(corrupt[4096+100:], bytes.Repeat([]byte{0xff}, 200)) // garble the first table's page
	objs := map[string][]byte{
		"platform/20250101/auth-20250101.db":                   sqliteFile(t, "user", "session", "account"),
		"platform/20250101/billing-20250101.db":                sqliteFile(t, "something_else"),
		"platform/20250101/credits-20250101.db":                {},
		"platform/20250101/audit-20250101.db":                  []byte("SQLite? no: a text file"),
		"platform/20250101/quotas-20250101.db":                 corrupt,
		"nightly/node-1/tenant_old/tenant_old_20250101.tar.gz": tarGz(t, false, "etc/hostname", "data/a.txt"),
		"nightly/node-1/tenant_cut/tenant_cut_20250101.tar.gz": tarGz(t, true, "etc/hostname", "data/a.txt"),
		"latest/tenant_old/latest.tar.gz":                      []byte("not gzip at all"),
		"pre-restore/notes.txt":                                []byte("runbook notes"),
	}
	for k, b := range objs {
		if _, err := store.Put(ctx, k, bytes.NewReader(b), storage.PutOptions{Size: int64(len(b))}); err != nil {
			t.Fatal(err)
		}
	}
	// An opsd backup with its manifest is not a candidate.
	if _, err := artifact.Store(ctx, store, strings.NewReader("opsd's own"), artifact.Options{}, artifact.Manifest{Key: "platform/20260101/auth-20260101.db", Kind: "sqlite", Target: "auth"}); err != nil {
		t.Fatal(err)
	}
	tables := map[string][]string{"auth": {"user", "session", "account"}, "billing": {"meter_events"}, "credits": {"credit_transactions"}, "audit": {"audit_log"}, "quotas": {"quota_limits"}}
	cfg := AdoptConfig{Tables: tables, Node: "api-1", DryRun: true, Tier: "free"}

	rep, err := Adopt(ctx, store, cfg)
	if !errors.Is(err, ErrAdoptFailed) {
		t.Fatalf("dry run with failures: %v", err)
	}
	if f.HasObject(artifact.ManifestKey("platform/20250101/auth-20250101.db")) {
		t.Fatal("the dry run wrote a manifest")
	}
	text := rep.Text()
	for _, want := range []string{
		"WOULD ADOPT  platform/20250101/auth-20250101.db  (sqlite auth,",
		"WOULD ADOPT  nightly/node-1/tenant_old/tenant_old_20250101.tar.gz  (container tenant_old,",
		"bytes, tier free)",
		"FAIL         platform/20250101/billing-20250101.db  missing tables of billing: meter_events",
		"FAIL         platform/20250101/credits-20250101.db  an empty file",
		"FAIL         platform/20250101/audit-20250101.db  not a SQLite database",
		"FAIL         platform/20250101/quotas-20250101.db  ",
		"FAIL         nightly/node-1/tenant_cut/tenant_cut_20250101.tar.gz  not a complete tar.gz: ",
		"FAIL         latest/tenant_old/latest.tar.gz  not gzip",
		"SKIP         pre-restore/notes.txt  not a format opsd adopts",
		"Result: 2 adopted, 6 failed, 1 skipped",
	} {
		if !strings.Contains(text, want) {
			t.Fatalf("dry-run report lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "20260101") {
		t.Fatalf("an opsd backup was a candidate:\n%s", text)
	}

	cfg.DryRun = false
	if _, err := Adopt(ctx, store, cfg); !errors.Is(err, ErrAdoptFailed) {
		t.Fatalf("adopt: %v", err)
	}
	for _, k := range []string{"platform/20250101/auth-20250101.db", "nightly/node-1/tenant_old/tenant_old_20250101.tar.gz"} {
		m, err := artifact.ReadManifest(ctx, store, k)
		if err != nil || !m.Adopted {
			t.Fatalf("%s: manifest %+v, %v", k, m, err)
		}
		if k == "platform/20250101/auth-20250101.db" && (m.Kind != "sqlite" || m.Target != "auth" || m.SQLite == nil || !m.CreatedAt.Equal(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC))) {
			t.Fatalf("manifest of the adopted database: %+v", m)
		}
		if k == "platform/20250101/auth-20250101.db" && m.Tier != "" {
			t.Fatalf("an adopted database got tier %q", m.Tier)
		}
		if strings.HasPrefix(k, "nightly/") && (m.Kind != "container" || m.Node != "node-1" || m.Compression != artifact.Gzip || m.Tier != "free") {
			t.Fatalf("manifest of the adopted archive: %+v", m)
		}
	}
	for _, k := range []string{"platform/20250101/billing-20250101.db", "nightly/node-1/tenant_cut/tenant_cut_20250101.tar.gz", "latest/tenant_old/latest.tar.gz"} {
		if f.HasObject(artifact.ManifestKey(k)) {
			t.Fatalf("%s failed verification but got a manifest", k)
		}
	}
	// Every manifest matches its object; readers open adopted backups like opsd's own.
	if n := artifacttest.Check(t, store, ""); n != 3 {
		t.Fatalf("checker verified %d artifacts, want 3", n)
	}
	m, _ := artifact.ReadManifest(ctx, store, "nightly/node-1/tenant_old/tenant_old_20250101.tar.gz")
	rc, err := artifact.Open(ctx, store, m, nil)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := artifact.VerifyTar(rc); err != nil || n != 2 {
		t.Fatalf("adopted archive: %d entries, %v", n, err)
	}
	rc.Close()
	// Retention now sees the adopted backups: they are no longer foreign.
	res, err := NewPrune("prune", PruneConfig{Rules: referenceRules(), Tiers: referenceTiers()}, store).WithDryRun(true).Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(res.Report, "keep foreign    nightly/node-1/tenant_old/tenant_old_20250101.tar.gz") ||
		!strings.Contains(res.Report, "keep          nightly/node-1/tenant_old/tenant_old_20250101.tar.gz") {
		t.Fatalf("prune does not treat the adopted archive as a backup:\n%s", res.Report)
	}
}

// TestAdoptSkipsOpsdUploadsWithoutTheirManifest: an object carrying opsd's upload marker without
// a manifest (a backup being written to a new key right now, or one that died before its
// manifest) is never adopted: adopt skips it and says why.
func TestAdoptSkipsOpsdUploadsWithoutTheirManifest(t *testing.T) {
	f := storagetest.NewFakeS3(t)
	store := storagetest.NewS3(t, f.Config)
	ctx := context.Background()
	key := "platform/20261201/auth-20261201.db"
	b := sqliteFile(t, "user", "session", "account")
	if _, err := store.Put(ctx, key, bytes.NewReader(b), storage.PutOptions{Size: int64(len(b)), Metadata: map[string]string{storage.UploadMetaKey: "0123abcd"}}); err != nil {
		t.Fatal(err)
	}
	rep, err := Adopt(ctx, store, AdoptConfig{Tables: map[string][]string{"auth": {"user", "session", "account"}}, Node: "api-1"})
	if err != nil || len(rep.Adopted) != 0 || len(rep.Skipped) != 1 || !strings.Contains(rep.Skipped[0].Reason, "an opsd upload without its manifest") {
		t.Fatalf("adopt of an opsd upload without its manifest: %+v %v", rep, err)
	}
	if _, err := artifact.ReadManifest(ctx, store, key); err == nil {
		t.Fatal("adopt wrote a manifest for an opsd upload in progress")
	}
}
