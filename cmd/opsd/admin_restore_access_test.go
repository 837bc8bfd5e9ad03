package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"

	"github.com/wopr-network/opsd/internal/docker/dockertest"
	"github.com/wopr-network/opsd/internal/state"
)

// TestAdminRestoreAllowBinds: a container whose captured spec binds a host directory outside
// WOPR_HOME is gone from this node. The admin container restore refuses to recreate it (the spec
// comes from the bucket) unless the request allows that directory with "allowBinds", as the node
// restore's endpoint and the CLI's --allow-bind do; it then recreates it, running. The endpoint
// had no such field (and ignored unknown ones): such a container could not be restored from it.
func TestAdminRestoreAllowBinds(t *testing.T) {
	dc := dockertest.Client(t)
	img := dockertest.EnsureImage(t, dc)
	ctx := context.Background()
	name := dockertest.Unique("tenant_opsdadmbind_") + "c"
	t.Cleanup(func() {
		dc.Remove(context.Background(), name)
		out, _ := exec.Command("docker", "images", "-q", "--filter", "reference=opsd-restore/"+name+"*").Output()
		for _, id := range strings.Fields(string(out)) {
			dc.RemoveImage(context.Background(), id)
		}
	})
	bindDir := t.TempDir()
	id, err := dc.Create(ctx, name, &container.Config{Image: img, Cmd: []string{"/bin/sh", "-c", "exec sleep 3600"}, Labels: map[string]string{dockertest.Label: dockertest.RunID}},
		&container.HostConfig{Binds: []string{bindDir + ":/bind:ro"}, NetworkMode: "none"})
	if err != nil {
		t.Fatal(err)
	}
	if err := dc.Start(ctx, id); err != nil {
		t.Fatal(err)
	}
	_, cfgPath := writeLocalConfig(t, "adb", fmt.Sprintf("http:\n  admin_token: %s\n", token), fmt.Sprintf(`  - {name: containers-nightly, kind: container_export, schedule: "0 2 * * *", name_prefix: %s}
`, name))
	m, base := startDaemon(t, cfgPath)
	spec, _ := m.sched.Spec("containers-nightly")
	if o := m.runner.Run(ctx, spec.Job, time.Minute, "test"); !o.OK() {
		t.Fatal(o.Err)
	}
	if err := dc.Remove(ctx, name); err != nil { // the node that ran it is lost
		t.Fatal(err)
	}
	key := "nightly/adb/" + name + "/" + name + "_" + time.Now().UTC().Format("20060102") + ".tar.gz"
	url := base + "/api/admin/backups/" + name + "/restore"
	restoreWith := func(body string) state.Restore {
		t.Helper()
		code, b := postBody(t, url, token, body)
		if code != 202 {
			t.Fatalf("restore %s: %d %s", body, code, b)
		}
		id := startedID(t, b)
		var rec state.Restore
		eventually(t, "the restore to end", 2*time.Minute, func() bool {
			rec = restoreRecord(t, m, id)
			return rec.Outcome != state.OutcomeRunning
		})
		return rec
	}

	rec := restoreWith(`{"remotePath": "` + key + `"}`)
	if rec.Outcome == state.OutcomeSuccess || !strings.Contains(rec.Error, "asks for host access: bind mount of "+bindDir+"; refused") {
		t.Fatalf("restore without allowBinds: %s %q", rec.Outcome, rec.Error)
	}
	if _, err := dc.Inspect(ctx, name, false); err == nil {
		t.Fatal("a container was created from a spec whose bind was refused")
	}

	binds, _ := json.Marshal([]string{bindDir})
	rec = restoreWith(`{"remotePath": "` + key + `", "allowBinds": ` + string(binds) + `}`)
	if rec.Outcome != state.OutcomeSuccess {
		t.Fatalf("restore with allowBinds: %s %q", rec.Outcome, rec.Error)
	}
	d, err := dc.Inspect(ctx, name, false)
	if err != nil || !d.Running {
		t.Fatalf("recreated container: %+v %v", d, err)
	}
}
