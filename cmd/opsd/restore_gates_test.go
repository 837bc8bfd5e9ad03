package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wopr-network/opsd/internal/artifact"
	"github.com/wopr-network/opsd/internal/demo"
	"github.com/wopr-network/opsd/internal/prefixlock"
	"github.com/wopr-network/opsd/internal/sqlite"
	"github.com/wopr-network/opsd/internal/storage/local"
	"github.com/wopr-network/opsd/internal/storage/storagetest"
)

func sumFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// localRestoreSetup backs the demo databases up into a local store and returns the config path.
func localRestoreSetup(t *testing.T) (string, map[string]string) {
	t.Helper()
	dir := t.TempDir()
	paths, err := demo.Create(context.Background(), dir, 100)
	if err != nil {
		t.Fatal(err)
	}
	var dbs strings.Builder
	for _, n := range demo.Names {
		fmt.Fprintf(&dbs, "      - {name: %s, path: %q}\n", n, paths[n])
	}
	cfgPath := filepath.Join(dir, "opsd.yaml")
	os.WriteFile(cfgPath, []byte(fmt.Sprintf(`node_id: gate
state:
  path: %s/state.db
storage:
  backend: local
  local:
    path: %s/store
jobs:
  - name: platform-db-backup
    kind: sqlite_backup
    schedule: "0 3 * * *"
    databases:
%s`, dir, dir, dbs.String())), 0o600)
	var out, errb bytes.Buffer
	if code := run([]string{"backup", "db", "-c", cfgPath}, &out, &errb); code != 0 {
		t.Fatalf("backup: exit %d\n%s\n%s", code, out.String(), errb.String())
	}
	return cfgPath, paths
}

// TestRestoreDBCLIRefusals: without --stop-container or --live, and without a terminal and
// --yes, `opsd restore db` refuses with a clear message and changes nothing; a "yes" typed on a
// terminal goes ahead; --dry-run fails on a backup the real restore would refuse.
func TestRestoreDBCLIRefusals(t *testing.T) {
	cfgPath, paths := localRestoreSetup(t)
	db, _ := demo.Open(paths["billing"])
	db.Exec(`DELETE FROM meter_events`)
	db.Close()
	before := sumFile(t, paths["billing"])
	oldTerm, oldIn := stdinIsTerminal, stdin
	defer func() { stdinIsTerminal, stdin = oldTerm, oldIn }()
	stdinIsTerminal = func() bool { return false }

	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--db", "billing"}, 2, "pass --stop-container NAME"},
		{[]string{"--db", "billing", "--live"}, 1, "stdin is not a terminal; pass --yes"},
	} {
		var out, errb bytes.Buffer
		code := run(append([]string{"restore", "db", "-c", cfgPath}, c.args...), &out, &errb)
		if code != c.code || !strings.Contains(errb.String(), c.want) || !strings.Contains(errb.String(), "nothing was changed") {
			t.Fatalf("%v: exit %d, stderr %q; want %d and %q", c.args, code, errb.String(), c.code, c.want)
		}
		if sumFile(t, paths["billing"]) != before {
			t.Fatalf("%v changed billing", c.args)
		}
	}

	// On a terminal, anything but "yes" refuses; "yes" restores.
	stdinIsTerminal = func() bool { return true }
	stdin = strings.NewReader("no\n")
	var out, errb bytes.Buffer
	if code := run([]string{"restore", "db", "-c", cfgPath, "--db", "billing", "--live"}, &out, &errb); code != 1 || !strings.Contains(errb.String(), "not confirmed") {
		t.Fatalf("answered no: exit %d\n%s", code, errb.String())
	}
	stdin = strings.NewReader("yes\n")
	out.Reset()
	errb.Reset()
	if code := run([]string{"restore", "db", "-c", cfgPath, "--db", "billing", "--live"}, &out, &errb); code != 0 || !strings.Contains(out.String(), "Type yes to continue") {
		t.Fatalf("answered yes: exit %d\n%s\n%s", code, out.String(), errb.String())
	}
	if n, _ := sqlite.CountRows(context.Background(), paths["billing"], "meter_events"); n == 0 {
		t.Fatal("billing was not restored")
	}

	// A backup of the wrong database (audit's) under billing's name, checksums valid: the dry
	// run fails like the real restore.
	storeDir := filepath.Join(filepath.Dir(cfgPath), "store")
	audit, _ := filepath.Glob(filepath.Join(storeDir, "platform", "*", "audit-*.db"))
	if len(audit) != 1 {
		t.Fatalf("audit backups: %v", audit)
	}
	b, _ := os.ReadFile(audit[0])
	st, _ := local.New(storeDir)
	date := filepath.Base(filepath.Dir(audit[0]))
	if _, err := artifact.Store(context.Background(), st, bytes.NewReader(b), artifact.Options{}, artifact.Manifest{
		Key: "platform/" + date + "/billing-" + date + ".db", Kind: "sqlite", Target: "billing", CreatedAt: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	for _, extra := range [][]string{{"--dry-run"}, {"--live", "--yes"}} {
		out.Reset()
		errb.Reset()
		code := run(append([]string{"restore", "db", "-c", cfgPath, "--db", "billing"}, extra...), &out, &errb)
		if code != 1 || !strings.Contains(errb.String()+out.String(), "missing tables: meter_events") {
			t.Fatalf("%v of a wrong backup: exit %d\n%s\n%s", extra, code, out.String(), errb.String())
		}
	}
}

// TestRestoreDBGatesOnSeaweedFS: on the integration tier's S3 engine, a 0-byte backup and
// another database's backup stored as billing (both with valid checksums) are refused by
// `restore db --dry-run` and by the real restore with the same reason; the live database is
// unchanged and every manifest in the bucket still matches its object.
func TestRestoreDBGatesOnSeaweedFS(t *testing.T) {
	s3cfg := storagetest.RealS3(t)
	store := storagetest.NewS3(t, s3cfg)
	dir := t.TempDir()
	paths, err := demo.Create(context.Background(), dir, 100)
	if err != nil {
		t.Fatal(err)
	}
	var dbs strings.Builder
	for _, n := range demo.Names {
		fmt.Fprintf(&dbs, "      - {name: %s, path: %q}\n", n, paths[n])
	}
	cfgPath := filepath.Join(dir, "opsd.yaml")
	os.WriteFile(cfgPath, []byte(fmt.Sprintf(`node_id: gates3
state:
  path: %s/state.db
storage:
  backend: s3
  s3: {endpoint: %s, bucket: %s, region: us-east-1, access_key: "${OPSD_TEST_S3_ACCESS_KEY}", secret_key: "${OPSD_TEST_S3_SECRET_KEY}", tls: false}
jobs:
  - name: platform-db-backup
    kind: sqlite_backup
    schedule: "0 3 * * *"
    databases:
%s`, dir, s3cfg.Endpoint, s3cfg.Bucket, dbs.String())), 0o600)
	var out, errb bytes.Buffer
	if code := run([]string{"backup", "db", "-c", cfgPath}, &out, &errb); code != 0 {
		t.Fatalf("backup: exit %d\n%s\n%s", code, out.String(), errb.String())
	}
	date := time.Now().UTC().Format("20060102")
	audit, _ := os.ReadFile(paths["audit"])
	before := sumFile(t, paths["billing"])
	for i, c := range []struct {
		content []byte
		want    string
	}{{nil, "is empty (0 bytes)"}, {audit, "missing tables: meter_events"}} {
		key := fmt.Sprintf("platform/%s/billing-%s.db", date, date) // overwritten in place
		if _, err := artifact.Store(context.Background(), store, bytes.NewReader(c.content), artifact.Options{}, artifact.Manifest{
			Key: key, Kind: "sqlite", Target: "billing", CreatedAt: time.Now().Add(time.Duration(i+1) * time.Hour)}); err != nil {
			t.Fatal(err)
		}
		for _, extra := range [][]string{{"--dry-run"}, {"--live", "--yes"}} {
			out.Reset()
			errb.Reset()
			code := run(append([]string{"restore", "db", "-c", cfgPath, "--db", "billing"}, extra...), &out, &errb)
			if code != 1 || !strings.Contains(errb.String()+out.String(), c.want) || !strings.Contains(errb.String()+out.String(), key) {
				t.Fatalf("%v of %s: exit %d, want %q\n%s\n%s", extra, key, code, c.want, out.String(), errb.String())
			}
		}
	}
	if sumFile(t, paths["billing"]) != before {
		t.Fatal("a refused restore changed billing")
	}
	assertManifestsMatchObjects(t, store)
}

// TestRestoreWaitsForPruneAndSaysSo: while another process's prune holds platform/, `opsd
// restore db` says what it waits for instead of hanging silently, and goes ahead once prune lets
// go.
func TestRestoreWaitsForPruneAndSaysSo(t *testing.T) {
	cfgPath, _ := localRestoreSetup(t)
	prune := prefixlock.NewShared(filepath.Dir(cfgPath)) // its flocks conflict as another process's
	release, err := prune.TryAcquire("platform/", true, "prune")
	if err != nil {
		t.Fatal(err)
	}
	var out, errb syncBuffer
	done := make(chan int, 1)
	go func() { done <- run([]string{"restore", "db", "-c", cfgPath, "--dry-run"}, &out, &errb) }()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(errb.String(), "opsd: waiting: platform/ is in use by another opsd process") {
		select {
		case code := <-done:
			t.Fatalf("restore did not wait for prune: exit %d\n%s", code, errb.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("restore never said what it waits for: %q", errb.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	release()
	if code := <-done; code != 0 || !strings.Contains(out.String(), "DRY RUN: every backup verified") {
		t.Fatalf("after prune let go: exit %d\n%s\n%s", code, out.String(), errb.String())
	}
}
