package demo

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestWriteConfig: the demo's job file names the databases, the instances and (with a
// container) the container jobs; an existing file keeps its edits but follows --listen.
func TestWriteConfig(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "opsd.yaml")
	if err := WriteConfig(path, dir, "127.0.0.1:9100", "tenant_demo_x"); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	for _, want := range []string{`listen: "127.0.0.1:9100"`, "name_prefix: tenant_demo_x", Path(dir, "billing"), dir + "/instances"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("the demo config lacks %q:\n%s", want, b)
		}
	}
	edited := strings.Replace(string(b), "max_concurrent: 2", "max_concurrent: 3", 1)
	os.WriteFile(path, []byte(edited), 0o600)
	if err := WriteConfig(path, dir, "127.0.0.1:0", ""); err != nil {
		t.Fatal(err)
	}
	b, _ = os.ReadFile(path)
	if !strings.Contains(string(b), "max_concurrent: 3") || !strings.Contains(string(b), `listen: "127.0.0.1:0"`) {
		t.Errorf("the edit was lost or --listen not followed:\n%s", b)
	}
	other := filepath.Join(t.TempDir(), "opsd.yaml")
	if err := WriteConfig(other, dir, "127.0.0.1:9100", ""); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(other); strings.Contains(string(b), "container_export") {
		t.Errorf("container jobs without a container:\n%s", b)
	}
	if err := Instances(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "instances", "bot-beta", "memory", "notes.md")); err != nil {
		t.Fatal(err)
	}
}
