package config

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite testdata/invalid/*.want from the current messages (review the diff!)")

func noEnv(string) (string, bool) { return "", false }

// fileEnv is the environment a test file asks for in leading `# env: NAME=VALUE` lines.
func fileEnv(data []byte) func(string) (string, bool) {
	m := map[string]string{}
	for _, l := range strings.Split(string(data), "\n") {
		kv, ok := strings.CutPrefix(l, "# env: ")
		if !ok {
			break
		}
		k, v, _ := strings.Cut(kv, "=")
		m[k] = v
	}
	return envOf(m)
}

func envOf(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

// TestInvalidFiles: every file under testdata/invalid fails with exactly the messages in its
// .want file, each naming the YAML path and line.
func TestInvalidFiles(t *testing.T) {
	files, err := filepath.Glob("testdata/invalid/*.yaml")
	if err != nil || len(files) < 25 {
		t.Fatalf("want at least 25 invalid files, found %d (%v)", len(files), err)
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".yaml"), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			_, err = parse(data, "", fileEnv(data))
			var ce *Errors
			if !errors.As(err, &ce) {
				t.Fatalf("parse succeeded or failed oddly: %v", err)
			}
			got := err.Error()
			wantFile := strings.TrimSuffix(f, ".yaml") + ".want"
			if *update {
				os.WriteFile(wantFile, []byte(got+"\n"), 0o644)
				return
			}
			want, err := os.ReadFile(wantFile)
			if err != nil {
				t.Fatalf("missing %s: %v", wantFile, err)
			}
			if got != strings.TrimRight(string(want), "\n") {
				t.Fatalf("errors differ\n got: %s\nwant: %s", got, want)
			}
			for _, fe := range ce.List {
				if fe.Line == 0 {
					t.Errorf("error without a line: %v", fe)
				}
			}
		})
	}
}

func TestExampleLoads(t *testing.T) {
	env := map[string]string{"DO_SPACES_REGION": "nyc3", "DO_SPACES_ACCESS_KEY": "AKEXAMPLE", "DO_SPACES_SECRET_KEY": "SKEXAMPLE",
		"OPSD_ADMIN_TOKEN": "token-example-0123456789", "SENTRY_DSN": "https://abc@o1.ingest.sentry.io/2"}
	data, err := os.ReadFile("example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := parse(data, "example.yaml", envOf(env))
	if err != nil {
		t.Fatalf("example.yaml: %v", err)
	}
	if cfg.Storage.S3.Endpoint != "nyc3.digitaloceanspaces.com" || cfg.Storage.S3.Bucket != "wopr-backups" {
		t.Fatalf("s3 = %+v", cfg.Storage.S3)
	}
	if len(cfg.Jobs) == 0 {
		t.Fatal("example has no jobs")
	}
	for _, k := range Kinds() {
		found := false
		for _, j := range cfg.Jobs {
			found = found || j.Kind == k
		}
		if !found {
			t.Errorf("example.yaml shows no job of kind %s", k)
		}
	}
}

func TestEnvExpansion(t *testing.T) {
	yaml := "node_id: ${NODE}\nstate:\n  path: ${STATE_DIR:-/var/lib/opsd}/state.db\nhttp:\n  admin_token: \"$${literal}-0123456789\"\n"
	cfg, err := parse([]byte(yaml), "", envOf(map[string]string{"NODE": "fleet-7"}))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.NodeID != "fleet-7" || cfg.State.Path != "/var/lib/opsd/state.db" || cfg.HTTP.AdminToken.Value() != "${literal}-0123456789" {
		t.Fatalf("got node=%q state=%q token=%q", cfg.NodeID, cfg.State.Path, cfg.HTTP.AdminToken.Value())
	}
}

func TestSecretFilesAndPlatformS3Defaults(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "secret")
	os.WriteFile(secret, []byte("s3cr3t-value\n"), 0o600)
	yaml := "node_id: n\nstate:\n  path: /tmp/s.db\nstorage:\n  backend: s3\n  s3:\n    secret_key_file: " + secret + "\n"
	cfg, err := parse([]byte(yaml), "", envOf(map[string]string{"S3_BUCKET": "s3://wopr-backups", "DO_SPACES_REGION": "sfo3", "DO_SPACES_ACCESS_KEY": "AK123456"}))
	if err != nil {
		t.Fatal(err)
	}
	s := cfg.Storage.S3
	if s.Bucket != "wopr-backups" || s.Endpoint != "sfo3.digitaloceanspaces.com" || s.AccessKey.Value() != "AK123456" || s.SecretKey.Value() != "s3cr3t-value" || !s.UseTLS() {
		t.Fatalf("s3 = %+v", s)
	}
	if got := s.SecretKey.String(); got != "[redacted]" {
		t.Fatalf("secret prints as %q", got)
	}
	secrets := strings.Join(cfg.Secrets(), ",")
	if !strings.Contains(secrets, "s3cr3t-value") || !strings.Contains(secrets, "AK123456") {
		t.Fatalf("Secrets() = %q misses values", secrets)
	}
}

func TestDefaultsAndPlatformDatabases(t *testing.T) {
	yaml := "node_id: n\nstate:\n  path: /tmp/s.db\njobs:\n  - name: platform\n    kind: sqlite_backup\n    schedule: \"0 3 * * *\"\n"
	cfg, err := parse([]byte(yaml), "", noEnv)
	if err != nil {
		t.Fatal(err)
	}
	j := cfg.Jobs[0]
	if j.Timeout.D() != time.Hour || !j.IsEnabled() {
		t.Fatalf("job defaults: %+v", j)
	}
	s := j.SQLiteBackup
	if len(s.Databases) != 7 || s.Key != "platform/{date}/{db}-{date}.db" || s.Compression != "none" {
		t.Fatalf("sqlite defaults: %+v", s)
	}
	if s.Databases[0].Name != "auth" || strings.Join(s.Databases[0].Tables, ",") != "user,session,account" {
		t.Fatalf("auth: %+v", s.Databases[0])
	}
	if cfg.Tiers["free"].KeepDaily != 3 || cfg.Tiers["enterprise"].RetentionDays != 365 {
		t.Fatalf("tiers: %+v", cfg.Tiers)
	}
}

func TestLoadNamesFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(p, []byte("node_id: n\nstate:\n  path: /tmp/s.db\nbogus: 1\n"), 0o600)
	_, err := Load(p)
	if err == nil || err.Error() != p+`: bogus (line 4): unknown key "bogus"` {
		t.Fatalf("err = %v", err)
	}
	if _, err := Load(filepath.Join(t.TempDir(), "missing.yaml")); err == nil || !strings.Contains(err.Error(), "missing.yaml") {
		t.Fatalf("missing file: %v", err)
	}
}
