package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wopr-network/opsd/internal/docker/dockertest"
)

// TestContainerCommands: `opsd backup containers`, `opsd backup hot` (twice: the second skips),
// `opsd backup snapshots` and `opsd drill containers TENANT`, as an operator runs them.
func TestContainerCommands(t *testing.T) {
	dc := dockertest.Client(t)
	dockertest.Run(t, dc, cliPrefix+"a", map[string]string{"wopr.tier": "starter"}, "echo a > /data/a.txt; sleep 3600")
	time.Sleep(300 * time.Millisecond)
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "instances", "bot-1"), 0o755)
	os.WriteFile(filepath.Join(dir, "instances", "bot-1", "x.txt"), []byte("x"), 0o644)
	cfgPath := filepath.Join(dir, "opsd.yaml")
	os.WriteFile(cfgPath, []byte(fmt.Sprintf(`node_id: cli
state:
  path: %[1]s/state.db
storage:
  backend: local
  local:
    path: %[1]s/store
jobs:
  - name: containers-nightly
    kind: container_export
    schedule: "0 2 * * *"
    name_prefix: `+cliPrefix+`
  - name: containers-hot
    kind: container_export
    schedule: "0 */6 * * *"
    name_prefix: `+cliPrefix+`
    changed_only: true
  - name: wopr-home
    kind: dir_snapshot
    schedule: "0 2 * * *"
    base_dir: %[1]s/instances
  - name: container-drill
    kind: container_drill
    schedule: "@quarterly"
    probe_cmd: ["/bin/sh", "-c", "test -f /data/a.txt"]
`, dir)), 0o600)
	var out, errb bytes.Buffer
	today := time.Now().UTC().Format("20060102")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"backup", "containers", "-c", cfgPath}, "nightly/cli/" + cliPrefix + "a/" + cliPrefix + "a_" + today + ".tar.gz"},
		{[]string{"backup", "hot", "-c", cfgPath}, "latest/" + cliPrefix + "a/latest.tar.gz"},
		{[]string{"backup", "hot", "-c", cfgPath}, "unchanged since its last hot backup"},
		{[]string{"backup", "snapshots", "-c", cfgPath}, "nightly/cli/bot-1/bot-1_" + today + ".tar.gz"},
		{[]string{"drill", "containers", "-c", cfgPath, cliPrefix + "a"}, "PASS  " + cliPrefix + "a"},
	} {
		out.Reset()
		errb.Reset()
		if code := run(c.args, &out, &errb); code != 0 || !strings.Contains(out.String(), c.want) {
			t.Fatalf("%v: exit %d\n%s\n%s", c.args, code, out.String(), errb.String())
		}
	}
	if code := run([]string{"backup", "containers", "-c", cfgPath, "tenant_nope"}, &out, &errb); code != 1 {
		t.Fatalf("unknown container: exit %d", code)
	}
	imgs, _ := exec.Command("docker", "images", "-q", "--filter", "reference=opsd-drill/"+cliPrefix+"*").Output()
	if len(bytes.TrimSpace(imgs)) != 0 {
		t.Fatalf("the drill left images: %s", imgs)
	}
}

// cliPrefix names this run's test containers (unique on a shared engine).
var cliPrefix = dockertest.Unique("tenant_opsdcli_")
