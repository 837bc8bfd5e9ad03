package restore

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wopr-network/opsd/internal/artifact"
	"github.com/wopr-network/opsd/internal/artifact/artifacttest"
	"github.com/wopr-network/opsd/internal/docker/dockertest"
	"github.com/wopr-network/opsd/internal/sqlite"
	"github.com/wopr-network/opsd/internal/storage"
)

// assertManifestsMatchObjects fails the test unless every manifest's object exists and matches
// its size and SHA-256 (the shared checker of the fault tests).
func assertManifestsMatchObjects(t *testing.T, store storage.Store) {
	t.Helper()
	artifacttest.Check(t, store, "")
}

// replaceBackup overwrites the day1 backup of target (object and manifest) with content.
func replaceBackup(t *testing.T, store storage.Store, target string, content []byte) string {
	t.Helper()
	key := "platform/20261125/" + target + "-20261125.db" // the key the layout expects, overwritten
	if _, err := artifact.Store(context.Background(), store, bytes.NewReader(content), artifact.Options{}, artifact.Manifest{Key: key, Kind: "sqlite", Target: target, CreatedAt: day1.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	return key
}

func sums(t *testing.T, dbs []Database) map[string]string {
	out := map[string]string{}
	for _, d := range dbs {
		out[d.Name] = fileSum(t, d.Path)
	}
	return out
}

// TestRestoreDBGatesRefuseWrongBackups: a 0-byte backup, a file that is not SQLite, and
// billing's database stored under auth's name all pass SHA-256; each is refused by the dry run
// and by the real restore with the same reason, and nothing is changed.
func TestRestoreDBGatesRefuseWrongBackups(t *testing.T) {
	cases := []struct {
		name    string
		content func(dbs []Database) []byte
		want    string
	}{
		{"empty", func([]Database) []byte { return nil }, "is empty (0 bytes)"},
		{"not sqlite", func([]Database) []byte { return bytes.Repeat([]byte("not a database\n"), 500) }, "not a SQLite database"},
		{"billing under auth's name", func(dbs []Database) []byte {
			b, err := os.ReadFile(dbs[1].Path)
			if err != nil {
				t.Fatal(err)
			}
			return b
		}, "missing tables: user, session, account"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			store, dbs, _ := backedUp(t)
			key := replaceBackup(t, store, "auth", c.content(dbs))
			before := sums(t, dbs)
			for _, dry := range []bool{true, false} {
				_, err := RestoreDB(context.Background(), DBOptions{Store: store, Databases: dbs, Node: "n1", Live: true, DryRun: dry})
				if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), key) || !strings.Contains(err.Error(), "nothing was changed") {
					t.Fatalf("dry run %v: err = %v, want %q naming %s", dry, err, c.want, key)
				}
			}
			if after := sums(t, dbs); len(after) != len(before) || after["auth"] != before["auth"] || after["billing"] != before["billing"] {
				t.Fatal("a refused restore changed a database")
			}
			if m, _ := filepath.Glob(filepath.Join(filepath.Dir(dbs[0].Path), "opsd-tmp-*")); len(m) != 0 {
				t.Fatalf("temp files left: %v", m)
			}
			assertManifestsMatchObjects(t, store)
		})
	}
}

// TestRestoreDBDryRunFailsOnCorruptBackup: the dry run downloads and checks like the real restore.
func TestRestoreDBDryRunFailsOnCorruptBackup(t *testing.T) {
	store, dbs, _ := backedUp(t)
	b, _ := os.ReadFile(dbs[2].Path)
	b[len(b)-100] ^= 0xFF // a page of credits, past the header: integrity_check must catch it
	for i := 4096; i < len(b) && i < 4096*3; i++ {
		b[i] ^= 0x5A
	}
	key := replaceBackup(t, store, "credits", b)
	res, err := RestoreDB(context.Background(), DBOptions{Store: store, Databases: dbs, Node: "n1", DryRun: true})
	if err == nil || !strings.Contains(err.Error(), key) {
		t.Fatalf("dry run of a corrupt backup: err = %v\n%s", err, res.Plan)
	}
	ok, err := RestoreDB(context.Background(), DBOptions{Store: store, Databases: dbs, Only: []string{"auth"}, Node: "n1", DryRun: true})
	if err != nil || !strings.Contains(ok.Plan, "auth") {
		t.Fatalf("dry run of a good backup: %v", err)
	}
}

func TestRestoreDBRefusesWithoutStopContainerOrLive(t *testing.T) {
	store, dbs, _ := backedUp(t)
	before := sums(t, dbs)
	_, err := RestoreDB(context.Background(), DBOptions{Store: store, Databases: dbs, Node: "n1"})
	if err == nil || !strings.Contains(err.Error(), "--stop-container") || !strings.Contains(err.Error(), "--live") {
		t.Fatalf("err = %v", err)
	}
	if after := sums(t, dbs); after["billing"] != before["billing"] {
		t.Fatal("changed a database")
	}
}

// TestRestoreDBKeepsOwnerModeAndAcceptsDegraded: the platform API answering 200 "degraded" is
// up (the runbook's definition); the restored file keeps the replaced one's owner and mode; the
// local safety copy stays unless RemoveSafetyCopies.
func TestRestoreDBKeepsOwnerModeAndAcceptsDegraded(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to chown")
	}
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"status":"degraded","service":"wopr-platform","backups":{"staleCount":2}}`))
	}))
	defer api.Close()
	for _, remove := range []bool{false, true} {
		store, dbs, rows := backedUp(t)
		billing := dbs[1].Path
		if err := os.Chown(billing, 4321, 4322); err != nil {
			t.Fatal(err)
		}
		os.Chmod(billing, 0o640)
		res, err := RestoreDB(context.Background(), DBOptions{Store: store, Databases: dbs, Only: []string{"billing"}, Node: "n1", Live: true, HealthURL: api.URL, HealthTimeout: 5 * time.Second, RemoveSafetyCopies: remove})
		if err != nil {
			t.Fatalf("restore with a degraded API: %v", err)
		}
		if n, _ := sqlite.CountRows(context.Background(), billing, "meter_events"); n != rows["billing"] {
			t.Fatalf("billing has %d rows, the backup %d", n, rows["billing"])
		}
		st, _ := os.Stat(billing)
		sys := st.Sys().(*syscall.Stat_t)
		if st.Mode().Perm() != 0o640 || sys.Uid != 4321 || sys.Gid != 4322 {
			t.Fatalf("restored file: mode %v uid %d gid %d, want 0640 4321 4322", st.Mode().Perm(), sys.Uid, sys.Gid)
		}
		_, statErr := os.Stat(res.Databases[0].SafetyPath)
		if remove != os.IsNotExist(statErr) {
			t.Fatalf("RemoveSafetyCopies=%v: the local safety copy %s: %v", remove, res.Databases[0].SafetyPath, statErr)
		}
		if _, err := artifact.ReadManifest(context.Background(), store, res.Databases[0].SafetyKey); err != nil {
			t.Fatalf("the safety copy in the store: %v", err)
		}
		assertManifestsMatchObjects(t, store)
	}
}

// TestRestoreDBDryRunChecksTheContainer: a --stop-container that does not exist fails the dry
// run as it fails the real restore, before anything is touched.
func TestRestoreDBDryRunChecksTheContainer(t *testing.T) {
	dc := dockertest.Client(t)
	store, dbs, _ := backedUp(t)
	before := sums(t, dbs)
	for _, dry := range []bool{true, false} {
		_, err := RestoreDB(context.Background(), DBOptions{Store: store, Databases: dbs, Only: []string{"billing"}, Node: "n1", DryRun: dry,
			StopContainer: "opsd_no_such_platform_api_" + strconv.Itoa(os.Getpid()), Docker: dc})
		if err == nil || !strings.Contains(err.Error(), "the container to stop") || !strings.Contains(err.Error(), "nothing was changed") {
			t.Fatalf("dry run %v: err = %v", dry, err)
		}
	}
	if after := sums(t, dbs); after["billing"] != before["billing"] {
		t.Fatal("changed billing")
	}
}
