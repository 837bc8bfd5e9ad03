package checks

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/wopr-network/opsd/internal/demo"
	"github.com/wopr-network/opsd/internal/storage"
	"github.com/wopr-network/opsd/internal/storage/local"
	"github.com/wopr-network/opsd/internal/storage/storagetest"
	"github.com/wopr-network/opsd/jobs"
)

var (
	day1 = time.Date(2026, 11, 25, 3, 0, 0, 0, time.UTC)
	day2 = day1.Add(24 * time.Hour)
)

// backupSet backs up the demo databases under dir for the given day.
func backupSet(t *testing.T, dir string, store storage.Store, at time.Time, only []string, mutate func(*jobs.SQLiteBackupConfig)) map[string]string {
	t.Helper()
	paths, err := demo.Create(context.Background(), dir, 200)
	if err != nil {
		t.Fatal(err)
	}
	if only == nil {
		only = demo.Names
	}
	cfg := jobs.SQLiteBackupConfig{KeyTemplate: "platform/{date}/{db}-{date}.db", Compression: "none", Node: "n1", Now: func() time.Time { return at }}
	for _, n := range only {
		cfg.Databases = append(cfg.Databases, jobs.SQLiteDatabase{Name: n, Path: paths[n]})
	}
	if mutate != nil {
		mutate(&cfg)
	}
	if _, err := jobs.NewSQLiteBackup("backup", cfg, store).Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	return paths
}

func platformDatabases() []DrillDatabase {
	return []DrillDatabase{
		{Name: "auth", Tables: []string{"user", "session", "account"}, Critical: []string{"user", "session"}},
		{Name: "billing", Tables: []string{"meter_events"}, Critical: []string{"meter_events"}},
		{Name: "credits", Tables: []string{"credit_transactions"}, Critical: []string{"credit_transactions"}},
		{Name: "audit", Tables: []string{"audit_log"}},
		{Name: "quotas", Tables: []string{"quota_limits"}},
		{Name: "tenant-keys", Tables: []string{"tenant_keys"}},
		{Name: "snapshots", Tables: []string{"snapshots", "restore_log"}},
	}
}

func newDrill(store storage.Store, tmp string, mutate func(*PlatformDrillConfig)) *PlatformDrill {
	cfg := PlatformDrillConfig{Databases: platformDatabases(), TempDir: tmp, ReportKey: "drills/{date}/platform.json", FailOnRTOBreach: true,
		Now: func() time.Time { return day2.Add(5 * time.Hour) }}
	if mutate != nil {
		mutate(&cfg)
	}
	return NewPlatformDrill("platform-drill", cfg, store)
}

func TestPlatformDrillGoodSetReportFormat(t *testing.T) {
	store, _ := local.New(t.TempDir())
	tmp := t.TempDir()
	backupSet(t, t.TempDir(), store, day1, nil, nil)
	res, err := newDrill(store, tmp, nil).Run(context.Background())
	if err != nil {
		t.Fatalf("drill: %v\n%s", err, res.Report)
	}
	want := "Platform restore drill: set 20261125 (platform/)\n" +
		"PASS  auth — integrity ok, tables present\n" +
		"PASS  billing — integrity ok, tables present\n" +
		"PASS  credits — integrity ok, tables present\n" +
		"PASS  audit — integrity ok, tables present\n" +
		"PASS  quotas — integrity ok, tables present\n" +
		"PASS  tenant-keys — integrity ok, tables present\n" +
		"PASS  snapshots — integrity ok, tables present\n" +
		"Result: 7 passed, 0 failed, 0 skipped\n" +
		"RTO (drill time): "
	// The RTO is measured, with milliseconds when it is under a second (never a bare "0s").
	if !strings.HasPrefix(res.Report, want) || !regexp.MustCompile(`\nRTO \(drill time\): (0\.\d\d[1-9]|0\.\d[1-9]\d|0\.[1-9]\d\d|\d\.\d\d|\d+)s\n$`).MatchString(res.Report) {
		t.Fatalf("report:\n%s\nwant:\n%s<measured RTO>s", res.Report, want)
	}
	if res.Drill == nil || !res.Drill.Passed || res.Drill.RTOTarget != 15*time.Minute || res.Drill.RTO <= 0 {
		t.Fatalf("drill stats: %+v", res.Drill)
	}
	for _, tr := range res.Targets {
		names := map[string]bool{}
		for _, p := range tr.Phases {
			names[p.Name] = true
		}
		for _, p := range []string{"download", "verify", "decode", "integrity", "tables"} {
			if !names[p] {
				t.Fatalf("%s lacks phase %s: %+v", tr.Name, p, tr.Phases)
			}
		}
	}
	// The JSON report is uploaded next to the backups.
	rc, _, err := store.Get(context.Background(), "drills/20261126/platform.json")
	if err != nil {
		t.Fatal(err)
	}
	var rep DrillReport
	json.NewDecoder(rc).Decode(&rep)
	rc.Close()
	if !rep.Passed || rep.Set != "20261125" || len(rep.Databases) != 7 || rep.PassedCount != 7 || rep.Databases[1].Phases["download"] <= 0 {
		t.Fatalf("uploaded report: %+v", rep)
	}
	if !bytes.Equal(res.ReportJSON, mustRead(t, store, "drills/20261126/platform.json")) {
		t.Fatal("the stored and uploaded reports differ")
	}
	if entries, _ := os.ReadDir(tmp); len(entries) != 0 {
		t.Fatalf("scratch files left: %v", entries)
	}
}

func mustRead(t *testing.T, store storage.Store, key string) []byte {
	rc, _, err := store.Get(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, _ := io.ReadAll(rc)
	return b
}

// flip rewrites an object with one byte changed (same size) behind its manifest's back.
func flip(t *testing.T, store storage.Store, key string) {
	t.Helper()
	b := mustRead(t, store, key)
	b[len(b)/2] ^= 0xFF
	if _, err := store.Put(context.Background(), key, bytes.NewReader(b), storage.PutOptions{Size: int64(len(b))}); err != nil {
		t.Fatal(err)
	}
}

func TestPlatformDrillChecksumMismatchOnS3(t *testing.T) {
	fake := storagetest.NewFakeS3(t)
	store := storagetest.NewS3(t, fake.Config)
	backupSet(t, t.TempDir(), store, day1, nil, nil)
	flip(t, store, "platform/20261125/billing-20261125.db")
	res, err := newDrill(store, t.TempDir(), nil).Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "billing") {
		t.Fatalf("drill of a corrupted set: %v", err)
	}
	if !strings.Contains(res.Report, "FAIL  billing — sha256 mismatch: object has ") || !strings.Contains(res.Report, "Result: 6 passed, 1 failed, 0 skipped\n") {
		t.Fatalf("report:\n%s", res.Report)
	}
	if res.Drill.Passed {
		t.Fatal("drill passed")
	}
}

// TestPlatformDrillCorruptCompressedArtifact: the drill decodes while it downloads, so a flipped
// byte in a compressed, encrypted object makes the decoder fail mid-stream; the drill still reads
// the whole object and reports the checksum mismatch (the cause), and leaves no scratch file.
func TestPlatformDrillCorruptCompressedArtifact(t *testing.T) {
	id, _ := age.GenerateX25519Identity()
	store, _ := local.New(t.TempDir())
	backupSet(t, t.TempDir(), store, day1, nil, func(c *jobs.SQLiteBackupConfig) {
		c.Compression, c.Recipients = "zstd", []age.Recipient{id.Recipient()}
	})
	flip(t, store, "platform/20261125/credits-20261125.db.zst.age")
	tmp := t.TempDir()
	res, err := newDrill(store, tmp, func(c *PlatformDrillConfig) { c.Identities = []age.Identity{id} }).Run(context.Background())
	if err == nil || !strings.Contains(res.Report, "FAIL  credits — sha256 mismatch: object has ") || !strings.Contains(res.Report, "Result: 6 passed, 1 failed, 0 skipped\n") {
		t.Fatalf("drill of a corrupted compressed set: %v\n%s", err, res.Report)
	}
	if entries, _ := os.ReadDir(tmp); len(entries) != 0 {
		t.Fatalf("scratch files left: %v", entries)
	}
}

func TestPlatformDrillFallsBackToNewestCompleteSet(t *testing.T) {
	store, _ := local.New(t.TempDir())
	dir := t.TempDir()
	backupSet(t, dir, store, day1, nil, nil)
	var noAudit []string
	for _, n := range demo.Names {
		if n != "audit" {
			noAudit = append(noAudit, n)
		}
	}
	backupSet(t, dir, store, day2, noAudit, nil)
	// An artifact without a manifest (a crash mid-upload) does not count either.
	store.Put(context.Background(), "platform/20261126/audit-20261126.db", strings.NewReader("partial"), storage.PutOptions{Size: 7})
	res, err := newDrill(store, t.TempDir(), nil).Run(context.Background())
	if err != nil {
		t.Fatalf("%v\n%s", err, res.Report)
	}
	for _, want := range []string{
		"Platform restore drill: set 20261125 (platform/)\n",
		"NOTE  set 20261126 is incomplete: no backup with a manifest for audit\n",
		"NOTE  using 20261125, the newest complete set\n",
		"Result: 7 passed, 0 failed, 0 skipped\n",
	} {
		if !strings.Contains(res.Report, want) {
			t.Fatalf("report lacks %q:\n%s", want, res.Report)
		}
	}
}

func TestPlatformDrillMissingTableAndEmptyCriticalTable(t *testing.T) {
	store, _ := local.New(t.TempDir())
	dir := t.TempDir()
	paths, _ := demo.Create(context.Background(), dir, 200)
	for _, q := range []struct{ db, sql string }{{"audit", "CREATE TABLE audit_archive (id INTEGER)"}, {"audit", "DROP TABLE audit_log"}, {"billing", "DELETE FROM meter_events"}} {
		db, _ := demo.Open(paths[q.db])
		if _, err := db.Exec(q.sql); err != nil {
			t.Fatal(err)
		}
		db.Close()
	}
	backupSet(t, dir, store, day1, nil, nil)
	res, err := newDrill(store, t.TempDir(), nil).Run(context.Background())
	if err == nil {
		t.Fatal("drill passed with a dropped table")
	}
	for _, want := range []string{"FAIL  audit — missing table: audit_log\n", "PASS  billing — integrity ok, tables present\n", "WARN  billing — critical table meter_events is empty\n", "Result: 6 passed, 1 failed, 0 skipped\n"} {
		if !strings.Contains(res.Report, want) {
			t.Fatalf("report lacks %q:\n%s", want, res.Report)
		}
	}
}

func TestPlatformDrillEncryptedSet(t *testing.T) {
	id, _ := age.GenerateX25519Identity()
	store, _ := local.New(t.TempDir())
	backupSet(t, t.TempDir(), store, day1, nil, func(c *jobs.SQLiteBackupConfig) {
		c.Compression, c.Recipients = "zstd", []age.Recipient{id.Recipient()}
	})
	res, err := newDrill(store, t.TempDir(), func(c *PlatformDrillConfig) { c.Identities = []age.Identity{id} }).Run(context.Background())
	if err != nil {
		t.Fatalf("%v\n%s", err, res.Report)
	}
	res, err = newDrill(store, t.TempDir(), nil).Run(context.Background())
	if err == nil || !strings.Contains(res.Report, "FAIL  auth — open platform/20261125/auth-20261125.db.zst.age: encrypted with age and no identity configured") {
		t.Fatalf("without identity: %v\n%s", err, res.Report)
	}
}

func TestPlatformDrillRTOObjective(t *testing.T) {
	store, _ := local.New(t.TempDir())
	backupSet(t, t.TempDir(), store, day1, nil, nil)
	res, err := newDrill(store, t.TempDir(), func(c *PlatformDrillConfig) { c.RTOTargetTotal = time.Nanosecond }).Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "recovery time objective missed") || res.Drill.Passed {
		t.Fatalf("breach with fail: %v", err)
	}
	res, err = newDrill(store, t.TempDir(), func(c *PlatformDrillConfig) { c.RTOTargetTotal, c.FailOnRTOBreach = time.Nanosecond, false }).Run(context.Background())
	if err != nil || !regexp.MustCompile(`WARN  RTO [0-9.]+s missed the objective of 0\.000s`).MatchString(res.Report) || !res.Drill.Passed {
		t.Fatalf("breach with warn: %v\n%s", err, res.Report)
	}
}

func TestOffsiteVerify(t *testing.T) {
	fake := storagetest.NewFakeS3(t)
	store := storagetest.NewS3(t, fake.Config)
	dir := t.TempDir()
	backupSet(t, dir, store, day1, nil, nil)
	backupSet(t, dir, store, day2, nil, nil)
	v := NewOffsiteVerify("offsite", OffsiteVerifyConfig{Databases: demo.Names, Dates: 2, Now: func() time.Time { return day2.Add(6 * time.Hour) }}, store)
	ctx := context.Background()
	res, err := v.Run(ctx)
	if err != nil || res.Verify.Missing != 0 || res.Verify.Mismatched != 0 {
		t.Fatalf("clean store: %v\n%s", err, res.Report)
	}
	// A deleted object, a size mismatch, and (deep) a checksum mismatch.
	store.Delete(ctx, "platform/20261125/quotas-20261125.db")
	b := mustRead(t, store, "platform/20261126/auth-20261126.db")
	store.Put(ctx, "platform/20261126/auth-20261126.db", bytes.NewReader(b[:len(b)-1]), storage.PutOptions{Size: int64(len(b) - 1)})
	flip(t, store, "platform/20261126/credits-20261126.db")
	res, err = v.WithDeep(true).Run(ctx)
	if err == nil {
		t.Fatal("verification passed")
	}
	for _, want := range []string{
		"MISSING     platform/20261125/ — quotas has no backup with a manifest\n",
		"MISMATCHED  platform/20261126/auth-20261126.db — the object has ",
		"MISMATCHED  platform/20261126/credits-20261126.db — sha256 ",
		"Result: 1 missing, 2 mismatched\n",
	} {
		if !strings.Contains(res.Report, want) {
			t.Fatalf("report lacks %q:\n%s", want, res.Report)
		}
	}
	if res.Verify.Missing != 1 || res.Verify.Mismatched != 2 {
		t.Fatalf("stats: %+v", res.Verify)
	}
	// Backups that stopped: the newest set is too old.
	old := NewOffsiteVerify("offsite", OffsiteVerifyConfig{Databases: []string{"billing"}, Dates: 1, Now: func() time.Time { return day2.Add(5 * 24 * time.Hour) }}, store)
	res, _ = old.Run(ctx)
	if !strings.Contains(res.Report, "the newest set is from 20261126, older than 26h0m0s") {
		t.Fatalf("stale sets not reported:\n%s", res.Report)
	}
}
