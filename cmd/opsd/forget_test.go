package main

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/wopr-network/opsd/internal/artifact"
	"github.com/wopr-network/opsd/internal/state"
	"github.com/wopr-network/opsd/internal/storage"
	"github.com/wopr-network/opsd/internal/storage/local"
)

// forgetFixture is a job file and a store holding the backups of tenants abc, abcd and xabc
// (names that share letters with abc), plus the platform databases.
func forgetFixture(t *testing.T) (cfgPath string, store storage.Store, abc, others []string) {
	t.Helper()
	dir := t.TempDir()
	cfgPath = filepath.Join(dir, "opsd.yaml")
	writeConfig(t, cfgPath, fmt.Sprintf(`node_id: n1
state:
  path: %s/state.db
storage:
  backend: local
  local:
    path: %s/store
jobs:
  - name: nightly
    kind: container_export
    schedule: "@daily"
  - name: hot
    kind: container_export
    schedule: "@every 6h"
    changed_only: true
  - name: homes
    kind: dir_snapshot
    schedule: "@daily"
    key: "on-demand/{instance}/{date}{time}.tar.gz"
  - name: prune
    kind: prune
    schedule: "@daily"
`, dir, dir))
	store, err := local.New(filepath.Join(dir, "store"))
	if err != nil {
		t.Fatal(err)
	}
	keysOf := func(id string) []string {
		c := "tenant_" + id
		return []string{
			"nightly/n1/" + c + "/" + c + "_20261125.tar.gz",
			"nightly/n2/" + c + "/" + c + "_20261126.tar.gz",
			"latest/" + c + "/latest.tar.gz",
			"on-demand/" + id + "/20261126030000.tar.gz",
			"on-demand/" + c + "/snap-1.tar.gz",
			"pre-restore/n1/" + c + "/20261120T101010/" + c + ".tar.gz", // as restores write it: pre-restore/{node}/{target}/{stamp}/
		}
	}
	ctx := context.Background()
	put := func(key string, manifest bool) {
		if _, err := store.Put(ctx, key, strings.NewReader("data"), storage.PutOptions{Size: 4}); err != nil {
			t.Fatal(err)
		}
		if manifest {
			if err := artifact.WriteManifest(ctx, store, artifact.Manifest{Key: key, Tier: "pro", Size: 4, SHA256: "00"}); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, k := range keysOf("abc") {
		put(k, true)
		abc = append(abc, k, artifact.ManifestKey(k))
	}
	put("nightly/n1/tenant_abc/tenant_abc_20261126.tar.gz", false) // an unfinished upload: debris goes too
	abc = append(abc, "nightly/n1/tenant_abc/tenant_abc_20261126.tar.gz")
	for _, id := range []string{"abcd", "xabc"} {
		for _, k := range keysOf(id) {
			put(k, true)
			others = append(others, k, artifact.ManifestKey(k))
		}
	}
	// A node named like the tenant, its safety copies, the platform database's safety dumps and
	// the shared platform databases are never the tenant's.
	for _, k := range []string{"nightly/abc/tenant_zed/tenant_zed_20261126.tar.gz", "platform/20261126/auth-20261126.db",
		"pre-restore/abc/auth/20261120T101010/auth.db", "pre-restore/postgres/wopr_platform/20261120T101010/wopr_platform.dump"} {
		put(k, true)
		others = append(others, k, artifact.ManifestKey(k))
	}
	sort.Strings(abc)
	sort.Strings(others)
	return cfgPath, store, abc, others
}

func listKeys(t *testing.T, store storage.Store) []string {
	t.Helper()
	all, err := storage.ListAll(context.Background(), store, "")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, o := range all {
		out = append(out, o.Key)
	}
	sort.Strings(out)
	return out
}

func TestForgetRemovesOneTenantAndNothingElse(t *testing.T) {
	cfgPath, store, abc, others := forgetFixture(t)
	all := append(append([]string(nil), abc...), others...)
	sort.Strings(all)
	terminal := false
	forgetStdinIsTerminal = func() bool { return terminal }
	t.Cleanup(func() { forgetStdinIsTerminal = func() bool { return false } })

	// --dry-run lists exactly the tenant's objects and deletes nothing.
	var out, errb bytes.Buffer
	if code := run([]string{"forget", "-c", cfgPath, "--tenant", "abc", "--dry-run"}, &out, &errb); code != 0 {
		t.Fatalf("dry run: exit %d: %s", code, errb.String())
	}
	for _, k := range abc {
		if !strings.Contains(out.String(), "would delete  "+k+"\n") {
			t.Errorf("the dry run does not list %s", k)
		}
	}
	for _, k := range others {
		if strings.Contains(out.String(), " "+k+"\n") {
			t.Errorf("the dry run lists another tenant's %s", k)
		}
	}
	if !strings.Contains(out.String(), fmt.Sprintf("tenant abc (names: abc, tenant_abc): %d objects", len(abc))) {
		t.Errorf("dry run:\n%s", out.String())
	}
	if got := listKeys(t, store); strings.Join(got, ",") != strings.Join(all, ",") {
		t.Fatalf("the dry run deleted something")
	}

	// Not a terminal and no --yes: refused.
	out.Reset()
	errb.Reset()
	if code := run([]string{"forget", "-c", cfgPath, "--tenant", "abc"}, &out, &errb); code != 2 || !strings.Contains(errb.String(), "refusing to delete without --yes") {
		t.Fatalf("without --yes: exit %d, %s", code, errb.String())
	}
	// A terminal, answered wrong: nothing deleted.
	terminal = true
	forgetStdin = strings.NewReader("abcd\n")
	out.Reset()
	if code := run([]string{"forget", "-c", cfgPath, "--tenant", "abc"}, &out, &errb); code != 1 || !strings.Contains(out.String(), "not confirmed: nothing deleted") {
		t.Fatalf("wrong confirmation: exit %d, %s", code, out.String())
	}
	if got := listKeys(t, store); len(got) != len(all) {
		t.Fatalf("an unconfirmed forget deleted something")
	}
	// A terminal, confirmed with the tenant id: every object of abc goes, nothing else.
	forgetStdin = strings.NewReader("abc\n")
	out.Reset()
	errb.Reset()
	if code := run([]string{"forget", "-c", cfgPath, "--tenant", "abc"}, &out, &errb); code != 0 {
		t.Fatalf("forget: exit %d: %s\n%s", code, out.String(), errb.String())
	}
	if !strings.Contains(out.String(), "Type the tenant id to confirm") || !strings.Contains(out.String(), fmt.Sprintf("forget: success (deleted %d objects", len(abc))) {
		t.Fatalf("output:\n%s", out.String())
	}
	if got := listKeys(t, store); strings.Join(got, "\n") != strings.Join(others, "\n") {
		t.Fatalf("after forget:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(others, "\n"))
	}

	// The deletion is recorded as a run.
	st, err := state.Open(context.Background(), filepath.Join(filepath.Dir(cfgPath), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	runs, err := st.Runs(context.Background(), "forget", 5)
	if err != nil || len(runs) != 1 || runs[0].Outcome != "success" || runs[0].Kind != "forget" {
		t.Fatalf("recorded runs: %+v, %v", runs, err)
	}

	// Again: nothing left to forget.
	out.Reset()
	if code := run([]string{"forget", "-c", cfgPath, "--tenant", "abc", "--yes"}, &out, &errb); code != 0 || !strings.Contains(out.String(), "nothing stored for tenant abc") {
		t.Fatalf("second forget: exit %d, %s", code, out.String())
	}
	if code := run([]string{"forget", "-c", cfgPath, "--tenant", "../x"}, &out, &errb); code != 2 {
		t.Fatalf("a path as tenant: exit %d", code)
	}
}

// TestPruneCLITierSourceAndOrphans: the job file's tier_source and orphan_keep reach prune: the
// dry run prints each target's tier and marks a gone tenant's old backups as an orphan.
func TestPruneCLITierSourceAndOrphans(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "opsd.yaml")
	writeConfig(t, cfgPath, fmt.Sprintf(`node_id: n1
state:
  path: %s/state.db
storage:
  backend: local
  local:
    path: %s/store
jobs:
  - name: nightly
    kind: container_export
    schedule: "@daily"
    tier_source:
      kind: map
      map: {abc: pro}
  - name: prune
    kind: prune
    schedule: "@daily"
    orphan_keep: 30d
`, dir, dir))
	store, _ := local.New(filepath.Join(dir, "store"))
	ctx := context.Background()
	put := func(c, date string) {
		key := fmt.Sprintf("nightly/n1/%s/%s_%s.tar.gz", c, c, date)
		store.Put(ctx, key, strings.NewReader("x"), storage.PutOptions{Size: 1})
		artifact.WriteManifest(ctx, store, artifact.Manifest{Key: key, Tier: "pro", Size: 1, SHA256: "00"})
	}
	put("tenant_abc", "20200101")
	put("tenant_gone", "20200101")
	var out, errb bytes.Buffer
	if code := run([]string{"prune", "-c", cfgPath, "--dry-run"}, &out, &errb); code != 0 {
		t.Fatalf("prune --dry-run: exit %d\n%s\n%s", code, out.String(), errb.String())
	}
	for _, want := range []string{
		"nightly/n1/tenant_abc: keep 1, would delete 0",
		"tier pro (keep_daily=7 keep_weekly=4 on_demand_max=20 retention_days=90) from nightly/n1/tenant_abc/tenant_abc_20200101.tar.gz",
		"nightly/n1/tenant_gone: keep 0, would delete 1",
		`ORPHAN   orphan: tenant "gone" is gone from map and the newest backup (2020-01-01) is older than orphan_keep 30d`,
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the dry run does not say %q:\n%s", want, out.String())
		}
	}
	out.Reset()
	if code := run([]string{"forget", "--help"}, &out, &errb); code != 0 || !strings.Contains(out.String(), "Usage: opsd forget") {
		t.Errorf("forget --help: exit %d %q", code, out.String())
	}
}
