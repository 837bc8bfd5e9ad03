package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/wopr-network/opsd/internal/demo"
	"github.com/wopr-network/opsd/internal/docker/dockertest"
	"github.com/wopr-network/opsd/internal/storage"
	"github.com/wopr-network/opsd/internal/storage/local"
)

// TestEveryReaderFollowsCustomKeyTemplates writes backups under non-default key templates with
// zstd and age, then runs every reader as an operator would: the platform and container drills,
// deep offsite verification (databases and containers), the admin API's snapshot list, and
// `restore container --latest`, which must find the hot backup at .tar.zst.age.
func TestEveryReaderFollowsCustomKeyTemplates(t *testing.T) {
	dc := dockertest.Client(t)
	prefix := dockertest.Unique("tenant_opsdlay_")
	name := prefix + "a"
	dockertest.Run(t, dc, name, nil, "trap 'exit 0' TERM; echo one > /data/one.txt; sleep 3600 & wait")
	dir := t.TempDir()
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(dir, "age.key")
	os.WriteFile(keyFile, []byte(id.String()+"\n"), 0o600)
	paths, err := demo.Create(context.Background(), filepath.Join(dir, "dbs"), 50)
	if err != nil {
		t.Fatal(err)
	}
	var dbs strings.Builder
	for _, n := range demo.Names {
		fmt.Fprintf(&dbs, "      - {name: %s, path: %q}\n", n, paths[n])
	}
	enc := fmt.Sprintf("compression: zstd, encryption: {recipients: [%s]}", id.Recipient())
	cfgPath := filepath.Join(dir, "opsd.yaml")
	writeConfig(t, cfgPath, fmt.Sprintf(`node_id: lay
http:
  admin_token: %[1]s
state:
  path: %[2]s/state.db
storage:
  backend: local
  local:
    path: %[2]s/store
alerts:
  interval: 1h
  rules: []
jobs:
  - name: db-backup
    kind: sqlite_backup
    schedule: "0 3 * * *"
    key: "dbs/{node}/{date}/{db}.sqlite"
    compression: zstd
    encryption: {recipients: [%[3]s]}
    databases:
%[4]s  - {name: nightly, kind: container_export, schedule: "0 2 * * *", name_prefix: %[5]s, key: "exports/{container}/{date}/{node}.tar", %[6]s}
  - {name: hot, kind: container_export, schedule: "0 */6 * * *", name_prefix: %[5]s, changed_only: true, key: "hot/{container}/current.tar", %[6]s}
  - {name: db-drill, kind: sqlite_drill, schedule: "@monthly", identity_file: %[7]s, report_key: none}
  - {name: container-drill, kind: container_drill, schedule: "@quarterly", identity_file: %[7]s, probe_cmd: ["/bin/sh", "-c", "test -f /data/one.txt"]}
  - {name: verify, kind: offsite_verify, schedule: "0 5 * * *", deep: true}
`, token, dir, id.Recipient(), dbs.String(), prefix, enc, keyFile))
	var out, errb bytes.Buffer
	mustRun := func(want string, args ...string) string {
		t.Helper()
		out.Reset()
		errb.Reset()
		if code := run(args, &out, &errb); code != 0 || !strings.Contains(out.String(), want) {
			t.Fatalf("%v: exit %d, want %q in\n%s\n%s", args, code, want, out.String(), errb.String())
		}
		return out.String()
	}
	today := time.Now().UTC().Format("20060102")
	nightlyKey := "exports/" + name + "/" + today + "/lay.tar.zst.age"
	hotKey := "hot/" + name + "/current.tar.zst.age"
	mustRun("dbs/lay/"+today+"/auth.sqlite.zst.age", "backup", "db", "-c", cfgPath)
	mustRun(nightlyKey, "backup", "containers", "-c", cfgPath)
	mustRun(hotKey, "backup", "hot", "-c", cfgPath)

	mustRun("Result: 7 passed, 0 failed", "drill", "db", "-c", cfgPath)
	mustRun("PASS  "+name, "drill", "containers", "-c", cfgPath, name)
	mustRun("Result: 0 missing, 0 mismatched", "verify", "-c", cfgPath, "--deep")

	// restore container --latest restores the hot backup, whatever its format suffix.
	o := mustRun("OK  container "+name+" restored from "+hotKey, "restore", "container", "-c", cfgPath, name, "--latest", "--replace", "--identity", keyFile)
	if !strings.Contains(o, "pre-restore/lay/"+name+"/") {
		t.Fatalf("no safety export named in:\n%s", o)
	}
	d, err := dc.Inspect(context.Background(), name, false)
	if err != nil || !d.Running {
		t.Fatalf("the restored container: %+v %v", d, err)
	}
	t.Cleanup(func() { dc.Remove(context.Background(), d.ID) })

	// The admin API lists the container's nightly and hot backups, and a database's backup.
	_, base := startDaemon(t, cfgPath)
	for target, keys := range map[string][]string{name: {nightlyKey, hotKey}, "auth": {"dbs/lay/" + today + "/auth.sqlite.zst.age"}} {
		code, body := getAuth(t, base+"/api/admin/backups/"+target+"/snapshots", token)
		for _, k := range keys {
			if code != 200 || !strings.Contains(body, k) {
				t.Fatalf("snapshots of %s: %d, want %s in %s", target, code, k, body)
			}
		}
	}

	// Nothing was written under the default layout.
	store, _ := local.New(filepath.Join(dir, "store"))
	if objs, _ := storage.ListAll(context.Background(), store, "nightly/"); len(objs) != 0 {
		t.Fatalf("something was written under the default layout: %v", objs)
	}
}
