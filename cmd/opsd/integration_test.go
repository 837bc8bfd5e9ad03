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

	"github.com/wopr-network/opsd/internal/artifact"
	"github.com/wopr-network/opsd/internal/demo"
	"github.com/wopr-network/opsd/internal/sqlite"
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
storage:
  backend: s3
  s3:
    endpoint: %s
    bucket: s3://%s
    region: us-east-1
    access_key: ${OPSD_TEST_S3_ACCESS_KEY}
    secret_key: ${OPSD_TEST_S3_SECRET_KEY}
    tls: false
jobs:
  - name: platform-db-backup
    kind: sqlite_backup
    schedule: "0 3 * * *"
    databases:
%s`, dir, s3cfg.Endpoint, s3cfg.Bucket, dbs.String())), 0o600)
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
	// One database only, and an unknown one.
	out.Reset()
	if code := run([]string{"backup", "db", "-c", cfgPath, "--db", "auth"}, &out, &errb); code != 0 || strings.Count(out.String(), "OK") != 1 {
		t.Fatalf("--db auth: %d %s", code, out.String())
	}
	if code := run([]string{"backup", "db", "-c", cfgPath, "--db", "nope"}, &out, &errb); code != 1 {
		t.Fatalf("--db nope: exit %d", code)
	}
}
