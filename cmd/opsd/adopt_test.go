package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wopr-network/opsd/internal/artifact"
	"github.com/wopr-network/opsd/internal/demo"
)

// TestAdoptCommandThenDrill: the old scripts left a platform set (the seven databases, one of
// them garbled) in the store. `opsd adopt --dry-run` lists what it would adopt and the failure
// with its reason and writes nothing; `opsd adopt` writes the manifests; after the broken file
// is replaced by a good copy and adopted too, the platform drill restores the adopted set.
func TestAdoptCommandThenDrill(t *testing.T) {
	dir := t.TempDir()
	paths, err := demo.Create(context.Background(), filepath.Join(dir, "live"), 50)
	if err != nil {
		t.Fatal(err)
	}
	store := filepath.Join(dir, "store")
	set := filepath.Join(store, "platform", "20250101")
	os.MkdirAll(set, 0o750)
	for name, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if name == "billing" {
			b = []byte("garbled by an old script")
		}
		os.WriteFile(filepath.Join(set, name+"-20250101.db"), b, 0o640)
	}
	cfgPath := filepath.Join(dir, "opsd.yaml")
	writeConfig(t, cfgPath, fmt.Sprintf("node_id: api-1\nstate:\n  path: %s/state.db\nstorage:\n  backend: local\n  local:\n    path: %s\n", dir, store))

	var out, errb bytes.Buffer
	if code := run([]string{"adopt", "-c", cfgPath, "--prefix", "platform/", "--dry-run"}, &out, &errb); code != 1 {
		t.Fatalf("adopt --dry-run with a broken backup: exit %d\n%s%s", code, out.String(), errb.String())
	}
	for _, want := range []string{"WOULD ADOPT  platform/20250101/auth-20250101.db", "FAIL         platform/20250101/billing-20250101.db  not a SQLite database", "Result: 6 adopted, 1 failed, 0 skipped"} {
		if !strings.Contains(out.String(), want) {
			t.Fatalf("dry run lacks %q:\n%s", want, out.String())
		}
	}
	if _, err := os.Stat(filepath.Join(set, "auth-20250101.db"+artifact.ManifestSuffix)); err == nil {
		t.Fatal("the dry run wrote a manifest")
	}
	out.Reset()
	if code := run([]string{"adopt", "-c", cfgPath, "--prefix", "platform/"}, &out, &errb); code != 1 {
		t.Fatalf("adopt: exit %d\n%s", code, out.String())
	}
	b, _ := os.ReadFile(paths["billing"])
	os.WriteFile(filepath.Join(set, "billing-20250101.db"), b, 0o640)
	out.Reset()
	if code := run([]string{"adopt", "-c", cfgPath}, &out, &errb); code != 0 || !strings.Contains(out.String(), "Result: 1 adopted, 0 failed") {
		t.Fatalf("adopt after the fix: exit %d\n%s%s", code, out.String(), errb.String())
	}
	out.Reset()
	if code := run([]string{"drill", "db", "-c", cfgPath, "--date", "20250101"}, &out, &errb); code != 0 || !strings.Contains(out.String(), "Result: 7 passed, 0 failed") {
		t.Fatalf("drill of the adopted set: exit %d\n%s%s", code, out.String(), errb.String())
	}
}
