package restore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wopr-network/opsd/internal/artifact"
	"github.com/wopr-network/opsd/internal/demo"
	"github.com/wopr-network/opsd/internal/docker/dockertest"
	"github.com/wopr-network/opsd/internal/sqlite"
	"github.com/wopr-network/opsd/internal/storage"
	"github.com/wopr-network/opsd/internal/storage/local"
)

var day1 = time.Date(2026, 11, 25, 3, 0, 0, 0, time.UTC)

// expectedTables is REFERENCE.md's table of the tables each platform database must hold.
var expectedTables = map[string][]string{
	"auth": {"user", "session", "account"}, "billing": {"meter_events"}, "credits": {"credit_transactions"},
	"audit": {"audit_log"}, "quotas": {"quota_limits"}, "tenant-keys": {"tenant_keys"}, "snapshots": {"snapshots", "restore_log"},
}

// backedUp makes the demo databases, backs them up for day1, then writes more rows (the live
// databases move on after the backup). It returns the store, the databases and the rows each
// backup holds.
func backedUp(t *testing.T) (storage.Store, []Database, map[string]int64) {
	t.Helper()
	dir := t.TempDir()
	store, _ := local.New(filepath.Join(dir, "store"))
	paths, err := demo.Create(context.Background(), dir, 200)
	if err != nil {
		t.Fatal(err)
	}
	var dbs []Database
	rows := map[string]int64{}
	for _, n := range demo.Names {
		dbs = append(dbs, Database{Name: n, Path: paths[n], Tables: expectedTables[n]})
	}
	for _, d := range dbs {
		tmp := d.Path + ".copy"
		if err := sqlite.Backup(context.Background(), d.Path, tmp); err != nil {
			t.Fatal(err)
		}
		f, _ := os.Open(tmp)
		key := "platform/20261125/" + d.Name + "-20261125.db"
		if _, err := artifact.Store(context.Background(), store, f, artifact.Options{}, artifact.Manifest{Key: key, Kind: "sqlite", Target: d.Name, CreatedAt: day1}); err != nil {
			t.Fatal(err)
		}
		f.Close()
		sqlite.RemoveDB(tmp)
	}
	rows["billing"], _ = sqlite.CountRows(context.Background(), paths["billing"], "meter_events")
	db, _ := demo.Open(paths["billing"])
	for i := 0; i < 50; i++ {
		db.Exec(`INSERT INTO meter_events (tenant, capability, units, at) VALUES ('after', 'chat', 1, 0)`)
	}
	db.Close()
	return store, dbs, rows
}

func fileSum(t *testing.T, p string) string {
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func TestRestoreDBReplacesAndKeepsSafetyCopies(t *testing.T) {
	store, dbs, rows := backedUp(t)
	billing := dbs[1].Path
	// Stale side files of the live database must not be applied to the restored one.
	os.WriteFile(billing+"-wal", bytes.Repeat([]byte{0xAB}, 8192), 0o644)
	os.WriteFile(billing+"-shm", bytes.Repeat([]byte{0xCD}, 32768), 0o644)
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"status":"ok","service":"wopr-platform"}`))
	}))
	defer api.Close()
	var lines []string
	res, err := RestoreDB(context.Background(), DBOptions{Store: store, Databases: dbs, Node: "n1", Live: true, HealthURL: api.URL, Progress: func(s string) { lines = append(lines, s) }})
	if err != nil {
		t.Fatalf("restore: %v\n%s", err, strings.Join(lines, "\n"))
	}
	if res.Set != "20261125" || len(res.Databases) != 7 {
		t.Fatalf("result: %+v", res)
	}
	n, err := sqlite.CountRows(context.Background(), billing, "meter_events")
	if err != nil || n != rows["billing"] {
		t.Fatalf("billing has %d rows after restore, the backup has %d (%v)", n, rows["billing"], err)
	}
	if err := sqlite.Check(context.Background(), billing); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"-wal", "-shm"} {
		if b, err := os.ReadFile(billing + s); err == nil && len(b) > 0 && (b[0] == 0xAB || b[0] == 0xCD) {
			t.Fatalf("the stale %s file survived", s)
		}
	}
	b := res.Databases[1]
	if n, _ := sqlite.CountRows(context.Background(), b.SafetyPath, "meter_events"); n != rows["billing"]+50 {
		t.Fatalf("the local safety copy has %d rows, want %d", n, rows["billing"]+50)
	}
	if _, err := artifact.ReadManifest(context.Background(), store, b.SafetyKey); err != nil || !strings.HasPrefix(b.SafetyKey, "pre-restore/n1/billing/") {
		t.Fatalf("uploaded safety copy %s: %v", b.SafetyKey, err)
	}
	if entries, _ := filepath.Glob(filepath.Join(filepath.Dir(billing), "opsd-tmp-*")); len(entries) != 0 {
		t.Fatalf("temp files left: %v", entries)
	}
}

func TestRestoreDBCorruptBackupTouchesNothing(t *testing.T) {
	store, dbs, _ := backedUp(t)
	key := "platform/20261125/credits-20261125.db"
	rc, _, _ := store.Get(context.Background(), key)
	var buf bytes.Buffer
	buf.ReadFrom(rc)
	rc.Close()
	b := buf.Bytes()
	b[len(b)/2] ^= 0xFF
	store.Put(context.Background(), key, bytes.NewReader(b), storage.PutOptions{Size: int64(len(b))})
	before := map[string]string{}
	for _, d := range dbs {
		before[d.Name] = fileSum(t, d.Path)
	}
	_, err := RestoreDB(context.Background(), DBOptions{Store: store, Databases: dbs, Node: "n1", Live: true})
	if err == nil || !errors.Is(err, artifact.ErrChecksum) || !strings.Contains(err.Error(), "nothing was changed") {
		t.Fatalf("err = %v", err)
	}
	for _, d := range dbs {
		if fileSum(t, d.Path) != before[d.Name] {
			t.Fatalf("%s was changed", d.Name)
		}
		if m, _ := filepath.Glob(d.Path + ".pre-restore-*"); len(m) != 0 {
			t.Fatalf("safety copies were taken before verification finished: %v", m)
		}
	}
}

func TestRestoreDBFailureAfterFirstSwapPutsEverythingBack(t *testing.T) {
	dc := dockertest.Client(t)
	api := dockertest.Run(t, dc, restoreAPIPrefix+"platform_api", nil, "sleep 3600")
	store, dbs, rows := backedUp(t)
	swaps := 0
	_, err := RestoreDB(context.Background(), DBOptions{Store: store, Databases: dbs, Node: "n1", StopContainer: api, Docker: dc, StopTimeout: 2 * time.Second,
		AfterReplace: func(db string) error {
			swaps++
			if swaps == 2 {
				return errors.New("injected failure")
			}
			return nil
		}})
	if err == nil || !strings.Contains(err.Error(), "rolled back: every database is as it was") {
		t.Fatalf("err = %v", err)
	}
	if n, _ := sqlite.CountRows(context.Background(), dbs[1].Path, "meter_events"); n != rows["billing"]+50 {
		t.Fatalf("billing has %d rows after the rollback, it had %d", n, rows["billing"]+50)
	}
	for _, d := range dbs {
		if err := sqlite.Check(context.Background(), d.Path); err != nil {
			t.Fatalf("%s after rollback: %v", d.Name, err)
		}
	}
	if d, _ := dc.Inspect(context.Background(), api, false); !d.Running {
		t.Fatal("the platform container was not started again after the rollback")
	}
}

func TestRestoreDBUnhealthyAfterSwapRollsBack(t *testing.T) {
	store, dbs, rows := backedUp(t)
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"status":"starting"}`))
	}))
	defer api.Close()
	_, err := RestoreDB(context.Background(), DBOptions{Store: store, Databases: dbs, Only: []string{"billing"}, Node: "n1", Live: true, HealthURL: api.URL, HealthTimeout: time.Second})
	if err == nil || !strings.Contains(err.Error(), `last: status 200, "starting"`) || !strings.Contains(err.Error(), "rolled back") {
		t.Fatalf("err = %v", err)
	}
	if n, _ := sqlite.CountRows(context.Background(), dbs[1].Path, "meter_events"); n != rows["billing"]+50 {
		t.Fatalf("billing was not put back: %d rows", n)
	}
}

func TestRestoreDBDryRun(t *testing.T) {
	store, dbs, _ := backedUp(t)
	before := fileSum(t, dbs[0].Path)
	res, err := RestoreDB(context.Background(), DBOptions{Store: store, Databases: dbs, Node: "n1", PlanOnly: true, StopContainer: "platform-api"})
	if err != nil || !strings.Contains(res.Plan, "auth         platform/20261125/auth-20261125.db") || !strings.Contains(res.Plan, "stop container platform-api") {
		t.Fatalf("plan: %v\n%s", err, res.Plan)
	}
	if fileSum(t, dbs[0].Path) != before {
		t.Fatal("a dry run changed a database")
	}
}

// restoreAPIPrefix names this run's test containers (unique on a shared engine).
var restoreAPIPrefix = dockertest.Unique("opsd_restore_")
