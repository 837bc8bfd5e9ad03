package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wopr-network/opsd/internal/artifact"
	"github.com/wopr-network/opsd/internal/demo"
	"github.com/wopr-network/opsd/internal/storage/local"
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

// TestAdoptTierFlag: `opsd adopt --tier NAME` records the tier in the manifests of adopted
// nightly and on-demand archives (retention prunes them by it); an unknown tier is a usage error.
func TestAdoptTierFlag(t *testing.T) {
	dir := t.TempDir()
	store := filepath.Join(dir, "store")
	archive := func(key string) {
		var tb bytes.Buffer
		tw := tar.NewWriter(&tb)
		tw.WriteHeader(&tar.Header{Name: "data/a.txt", Mode: 0o644, Size: 1})
		tw.Write([]byte("a"))
		tw.Close()
		var gb bytes.Buffer
		gw := gzip.NewWriter(&gb)
		gw.Write(tb.Bytes())
		gw.Close()
		p := filepath.Join(store, filepath.FromSlash(key))
		os.MkdirAll(filepath.Dir(p), 0o750)
		if err := os.WriteFile(p, gb.Bytes(), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	nightly, onDemand := "nightly/node-1/tenant_old/tenant_old_20250101.tar.gz", "on-demand/tenant_old/snap-20250102.tar.gz"
	archive(nightly)
	archive(onDemand)
	cfgPath := filepath.Join(dir, "opsd.yaml")
	writeConfig(t, cfgPath, fmt.Sprintf("node_id: api-1\nstate:\n  path: %s/state.db\nstorage:\n  backend: local\n  local:\n    path: %s\n", dir, store))
	var out, errb bytes.Buffer
	if code := run([]string{"adopt", "-c", cfgPath, "--tier", "platinum"}, &out, &errb); code != 2 || !strings.Contains(errb.String(), `--tier "platinum" is not a tier`) {
		t.Fatalf("unknown tier: exit %d\n%s%s", code, out.String(), errb.String())
	}
	out.Reset()
	if code := run([]string{"adopt", "-c", cfgPath, "--tier", "pro"}, &out, &errb); code != 0 || !strings.Contains(out.String(), "Result: 2 adopted, 0 failed") ||
		!strings.Contains(out.String(), "tier pro)") {
		t.Fatalf("adopt --tier pro: exit %d\n%s%s", code, out.String(), errb.String())
	}
	ls, _ := local.New(store)
	for _, k := range []string{nightly, onDemand} {
		m, err := artifact.ReadManifest(context.Background(), ls, k)
		if err != nil || !m.Adopted || m.Tier != "pro" || m.Kind != "container" {
			t.Fatalf("%s: manifest %+v, %v", k, m, err)
		}
	}
}
