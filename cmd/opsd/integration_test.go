package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wopr-network/opsd/config"
	"github.com/wopr-network/opsd/internal/artifact"
	"github.com/wopr-network/opsd/internal/demo"
	"github.com/wopr-network/opsd/internal/sqlite"
	"github.com/wopr-network/opsd/internal/state"
	"github.com/wopr-network/opsd/internal/storage"
	s3store "github.com/wopr-network/opsd/internal/storage/s3"
	"github.com/wopr-network/opsd/internal/storage/storagetest"
)

// TestBackupDBOnSeaweedFS is the integration tier: `opsd backup db` against the real S3 engine
// uploads 7 artifacts with manifests; each download matches its manifest's SHA-256 and passes
// integrity_check.
func TestBackupDBOnSeaweedFS(t *testing.T) {
	s3cfg := storagetest.RealS3(t)
	store := storagetest.NewS3(t, s3cfg) // creates the bucket
	dir := t.TempDir()
	paths, err := demo.Create(context.Background(), dir, 1000)
	if err != nil {
		t.Fatal(err)
	}
	var dbs strings.Builder
	for _, n := range demo.Names {
		fmt.Fprintf(&dbs, "      - {name: %s, path: %q}\n", n, paths[n])
	}
	cfgPath := filepath.Join(dir, "opsd.yaml")
	os.WriteFile(cfgPath, []byte(fmt.Sprintf(`node_id: it
state:
  path: %s/state.db
%sjobs:
  - name: platform-db-backup
    kind: sqlite_backup
    schedule: "0 3 * * *"
    databases:
%s`, dir, s3StorageYAML(s3cfg.Endpoint, "s3://"+s3cfg.Bucket), dbs.String())), 0o600)
	var out, errb bytes.Buffer
	if code := run([]string{"backup", "db", "-c", cfgPath}, &out, &errb); code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, out.String(), errb.String())
	}
	if strings.Contains(errb.String(), s3cfg.SecretKey) || strings.Contains(out.String(), s3cfg.SecretKey) {
		t.Fatal("the secret key was printed")
	}
	today := time.Now().UTC().Format("20060102")
	for _, n := range demo.Names {
		key := "platform/" + today + "/" + n + "-" + today + ".db"
		if !strings.Contains(out.String(), key) {
			t.Errorf("output lacks %s:\n%s", key, out.String())
		}
		m, err := artifact.ReadManifest(context.Background(), store, key)
		if err != nil {
			t.Fatalf("%s: %v", key, err)
		}
		rc, _, err := store.Get(context.Background(), key)
		if err != nil {
			t.Fatal(err)
		}
		f := filepath.Join(dir, n+".dl.db")
		w, _ := os.Create(f)
		h := sha256.New()
		io.Copy(io.MultiWriter(w, h), rc)
		rc.Close()
		w.Close()
		if got := hex.EncodeToString(h.Sum(nil)); got != m.SHA256 {
			t.Fatalf("%s: sha %s, manifest %s", key, got, m.SHA256)
		}
		if err := sqlite.Check(context.Background(), f); err != nil {
			t.Fatalf("%s: %v", key, err)
		}
	}
	// The retention plan names each kept set's rule and deletes nothing.
	out.Reset()
	if code := run([]string{"prune", "-c", cfgPath, "--dry-run"}, &out, &errb); code != 0 ||
		!strings.Contains(out.String(), "keep          platform/"+today+"/  (keep_within)") || !strings.Contains(out.String(), "would delete 0 objects") {
		t.Fatalf("prune --dry-run: exit %d\n%s%s", code, out.String(), errb.String())
	}

	// The drill restores the set and passes; the report is stored and uploaded.
	out.Reset()
	if code := run([]string{"drill", "db", "-c", cfgPath}, &out, &errb); code != 0 {
		t.Fatalf("drill: exit %d\n%s\n%s", code, out.String(), errb.String())
	}
	if !strings.Contains(out.String(), "PASS  billing — integrity ok, tables present\n") || !strings.Contains(out.String(), "Result: 7 passed, 0 failed, 0 skipped\n") || !strings.Contains(out.String(), "RTO (drill time): ") {
		t.Fatalf("drill report:\n%s", out.String())
	}
	if _, err := store.Stat(context.Background(), "drills/"+today+"/platform.json"); err != nil {
		t.Fatalf("uploaded report: %v", err)
	}
	st, err := state.Open(context.Background(), filepath.Join(dir, "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	reports, _ := st.Reports(context.Background(), "platform-drill", 5)
	st.Close()
	if len(reports) != 1 || !reports[0].Passed || !strings.Contains(reports[0].Body, `"set": "`+today+`"`) {
		t.Fatalf("stored reports: %+v", reports)
	}
	out.Reset()
	if code := run([]string{"verify", "-c", cfgPath, "--deep"}, &out, &errb); code != 0 || !strings.Contains(out.String(), "Result: 0 missing, 0 mismatched") {
		t.Fatalf("verify: exit %d\n%s", code, out.String())
	}
	// One object's bytes flipped: the drill fails naming the database, and exits 1.
	key := "platform/" + today + "/billing-" + today + ".db"
	rc, _, _ := store.Get(context.Background(), key)
	b, _ := io.ReadAll(rc)
	rc.Close()
	b[len(b)/2] ^= 0xFF
	store.Put(context.Background(), key, bytes.NewReader(b), storage.PutOptions{Size: int64(len(b))})
	out.Reset()
	if code := run([]string{"drill", "db", "-c", cfgPath}, &out, &errb); code != 1 || !strings.Contains(out.String(), "FAIL  billing — sha256 mismatch") {
		t.Fatalf("drill of a corrupted set: exit %d\n%s", code, out.String())
	}
	out.Reset()
	if code := run([]string{"verify", "-c", cfgPath, "--deep"}, &out, &errb); code != 1 || !strings.Contains(out.String(), "MISMATCHED  "+key) {
		t.Fatalf("deep verify of a corrupted set: exit %d\n%s", code, out.String())
	}

	// One database only, and an unknown one.
	out.Reset()
	if code := run([]string{"backup", "db", "-c", cfgPath, "--db", "auth"}, &out, &errb); code != 0 || strings.Count(out.String(), "OK") != 1 {
		t.Fatalf("--db auth: %d %s", code, out.String())
	}
	if code := run([]string{"backup", "db", "-c", cfgPath, "--db", "nope"}, &out, &errb); code != 1 {
		t.Fatalf("--db nope: exit %d", code)
	}
}

// TestUploadMemoryReachesTheStore: storage.s3.upload_memory is the buffer budget the S3 store
// cuts every upload's parts from; unset, it is 16 MiB.
func TestUploadMemoryReachesTheStore(t *testing.T) {
	s3cfg := storagetest.RealS3(t)
	storagetest.NewS3(t, s3cfg) // creates the bucket
	for _, tc := range []struct {
		line string
		want int64
	}{{"", 16 << 20}, {"    upload_memory: 48MiB\n", 48 << 20}} {
		cfgPath := filepath.Join(t.TempDir(), "opsd.yaml")
		os.WriteFile(cfgPath, []byte(fmt.Sprintf(`node_id: it
state:
  path: %s/state.db
%s    part_size: 8MiB
%s`, filepath.Dir(cfgPath), s3StorageYAML(s3cfg.Endpoint, s3cfg.Bucket), tc.line)), 0o600)
		cfg, err := config.Load(cfgPath)
		if err != nil {
			t.Fatal(err)
		}
		store, err := openStore(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		if _, budget := store.(*s3store.Store).UploadStats(); budget != tc.want {
			t.Errorf("upload_memory %q: the store's budget is %d bytes, want %d", strings.TrimSpace(tc.line), budget, tc.want)
		}
	}
}

// s3StorageYAML is a job file's storage section for the test S3 engine (keys from the
// environment, as .ci/test exports them).
func s3StorageYAML(endpoint, bucket string) string {
	return fmt.Sprintf(`storage:
  backend: s3
  s3:
    endpoint: %s
    bucket: %s
    region: us-east-1
    access_key: ${OPSD_TEST_S3_ACCESS_KEY}
    secret_key: ${OPSD_TEST_S3_SECRET_KEY}
    tls: false
`, endpoint, bucket)
}
