package main

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/api/types/network"

	"github.com/wopr-network/opsd/internal/docker"
	"github.com/wopr-network/opsd/internal/docker/dockertest"
	"github.com/wopr-network/opsd/internal/opsdtest"
	"github.com/wopr-network/opsd/internal/state"
)

// TestRestoreLostNode is runbook Procedure 3 on the real Docker engine: five tenant containers with
// distinct env, labels, a user-defined network with aliases, named volumes, a bind mount, a
// restart policy and a non-default command are exported by node-a; then node-a is "lost" (every
// container, the network and the volumes removed) and node-b runs `opsd restore node --from
// node-a`. The first run is SIGKILLed after its first container and one archive is corrupt; the
// re-run skips what was finished, reports the corrupt one failed and restores the rest; once the
// archive is repaired a last run restores it. Every container then has the original spec (field
// by field), runs iff it ran before, holds the file written into it, and answers on the recreated
// network under its alias.
func TestRestoreLostNode(t *testing.T) {
	dc := dockertest.Client(t)
	img := dockertest.EnsureImage(t, dc)
	ctx := context.Background()
	b := make([]byte, 3)
	rand.Read(b)
	sfx := hex.EncodeToString(b)
	prefix := "tenant_nr" + sfx + "_"
	netName := "opsd-nr-" + sfx
	var names, volumes []string
	for i := 0; i < 5; i++ {
		names = append(names, fmt.Sprintf("%s%d", prefix, i))
		volumes = append(volumes, fmt.Sprintf("opsd-nr-%s-v%d", sfx, i))
	}
	removeAll := func() {
		for _, n := range names {
			dc.Remove(ctx, n)
		}
		dc.RemoveNetwork(ctx, netName)
		for _, v := range volumes {
			dc.RemoveVolume(ctx, v)
		}
	}
	t.Cleanup(func() {
		removeAll()
		out, _ := exec.Command("docker", "images", "-q", "--filter", "reference=opsd-restore/"+prefix+"*").Output()
		for _, id := range strings.Fields(string(out)) {
			dc.RemoveImage(ctx, id)
		}
	})
	if _, err := dc.EnsureNetwork(ctx, netName, docker.NetworkSpec{Driver: "bridge", Labels: map[string]string{"opsd.test": sfx}}); err != nil {
		t.Fatal(err)
	}
	bindDir := t.TempDir()
	os.WriteFile(filepath.Join(bindDir, "shared.txt"), []byte("shared"), 0o644)
	originals := map[string]container.InspectResponse{}
	for i, name := range names {
		cfg := &container.Config{Image: img, Cmd: []string{"/bin/sh", "-c", fmt.Sprintf("echo started-%d > /tmp/started; exec sleep 3600", i)},
			Env: []string{fmt.Sprintf("TENANT_ID=t%d", i), fmt.Sprintf("BOT_TOKEN=secret-%d-%s", i, sfx)}, WorkingDir: "/data",
			Labels: map[string]string{"wopr.tenant": fmt.Sprintf("t%d", i), "opsd.test": sfx}, Hostname: fmt.Sprintf("bot%d", i), StopSignal: "SIGTERM"}
		host := &container.HostConfig{Binds: []string{bindDir + ":/bind:ro"}, NetworkMode: container.NetworkMode(netName),
			Mounts:        []mount.Mount{{Type: mount.TypeVolume, Source: volumes[i], Target: "/vol"}},
			RestartPolicy: container.RestartPolicy{Name: container.RestartPolicyUnlessStopped}}
		nets := &network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{netName: {Aliases: []string{fmt.Sprintf("bot-%d", i)}}}}
		id, err := dc.CreateNetworked(ctx, name, cfg, host, nets)
		if err != nil {
			t.Fatal(err)
		}
		if err := dc.CopyTo(ctx, id, "/data", fileTar(t, "hello.txt", fmt.Sprintf("hello from %d", i))); err != nil {
			t.Fatal(err)
		}
		if i != 4 { // the last one never ran: it must come back created, not running
			if err := dc.Start(ctx, id); err != nil {
				t.Fatal(err)
			}
		}
		d, err := dc.Inspect(ctx, id, false)
		if err != nil {
			t.Fatal(err)
		}
		originals[name] = d.Raw
	}

	dir := t.TempDir()
	config := func(node string) string {
		p := filepath.Join(dir, node+".yaml")
		os.WriteFile(p, []byte(fmt.Sprintf(`node_id: %s
state:
  path: %s/%s-state.db
storage:
  backend: local
  local:
    path: %s/store
jobs:
  - name: containers-nightly
    kind: container_export
    schedule: "0 2 * * *"
    name_prefix: %s
`, node, dir, node, dir, prefix)), 0o600)
		return p
	}
	cfgA, cfgB := config("node-a"), config("node-b")
	var out, errb bytes.Buffer
	if code := run([]string{"backup", "containers", "-c", cfgA}, &out, &errb); code != 0 {
		t.Fatalf("export: exit %d\n%s\n%s", code, out.String(), errb.String())
	}
	removeAll() // node-a is lost

	// The archive of container 3 is corrupt in the store.
	today := time.Now().UTC().Format("20060102")
	bad := filepath.Join(dir, "store", "nightly", "node-a", names[3], names[3]+"_"+today+".tar.gz")
	good, err := os.ReadFile(bad)
	if err != nil {
		t.Fatal(err)
	}
	corrupt := bytes.Clone(good)
	corrupt[len(corrupt)/2] ^= 0xFF
	os.WriteFile(bad, corrupt, 0o644)

	// The specs bind a directory outside the WOPR_HOME base: a dry run refuses each container,
	// naming the bind (specs come from the bucket); --allow-bind lets them through.
	out.Reset()
	errb.Reset()
	if code := run([]string{"restore", "node", "-c", cfgB, "--from", "node-a", "--dry-run"}, &out, &errb); code != 1 ||
		strings.Count(out.String(), "asks for host access: bind mount of "+bindDir+"; refused") != 5 {
		t.Fatalf("dry run of specs binding %s without --allow-bind: exit %d\n%s\n%s", bindDir, code, out.String(), errb.String())
	}
	out.Reset()
	if code := run([]string{"restore", "node", "-c", cfgB, "--from", "node-a", "--dry-run", "--allow-bind", bindDir}, &out, &errb); strings.Contains(out.String(), "host access") {
		t.Fatalf("dry run with --allow-bind: exit %d\n%s", code, out.String())
	}

	// First run, one import at a time, SIGKILLed once a container is restored (the next one may
	// be imported or started already: starts and probes overlap the next import).
	bin := opsdtest.Binary(t)
	cmd := exec.Command(bin, "restore", "node", "-c", cfgB, "--from", "node-a", "--parallel", "1", "--probe", "500ms", "--allow-bind", bindDir)
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stdout)
	killed := false
	var first []string
	for sc.Scan() {
		first = append(first, sc.Text())
		if strings.Contains(sc.Text(), "] restored ") {
			cmd.Process.Kill()
			killed = true
			break
		}
	}
	cmd.Wait()
	if !killed {
		t.Fatalf("the first run never restored a container:\n%s\n%s", strings.Join(first, "\n"), errb.String())
	}

	// Second run: the finished ones (the one reported, and any started before the kill) are
	// skipped, the corrupt one fails, the others are restored.
	out.Reset()
	errb.Reset()
	code := run([]string{"restore", "node", "-c", cfgB, "--from", "node-a", "--probe", "500ms", "--allow-bind", bindDir}, &out, &errb)
	if code != 1 {
		t.Fatalf("a corrupt archive must fail the node restore: exit %d\n%s\n%s", code, out.String(), errb.String())
	}
	report := out.String()
	var restored, skipped int
	if m := regexp.MustCompile(`Result: (\d) restored, (\d) skipped \(already restored\), 1 failed`).FindStringSubmatch(report); m != nil {
		restored, skipped = int(m[1][0]-'0'), int(m[2][0]-'0')
	}
	if skipped < 1 || restored+skipped != 4 {
		t.Fatalf("re-run: want the killed run's finished containers skipped, the others but the corrupt one restored, that one failed:\n%s", report)
	}
	for _, want := range []string{"FAIL  " + names[3] + ": ", "checksum mismatch", "RTO (node node-a): "} {
		if !strings.Contains(report, want) {
			t.Fatalf("report lacks %q:\n%s", want, report)
		}
	}
	if strings.Contains(report, "secret-") {
		t.Fatalf("a tenant env value reached the report:\n%s", report)
	}

	// The archive is repaired: the last run restores it and skips the rest.
	os.WriteFile(bad, good, 0o644)
	out.Reset()
	if code := run([]string{"restore", "node", "-c", cfgB, "--from", "node-a", "--probe", "500ms", "--allow-bind", bindDir}, &out, &errb); code != 0 || !strings.Contains(out.String(), "Result: 1 restored, 4 skipped") {
		t.Fatalf("repaired run: exit %d\n%s\n%s", code, out.String(), errb.String())
	}

	for i, name := range names {
		d, err := dc.Inspect(ctx, name, false)
		if err != nil {
			t.Fatalf("%s was not restored: %v", name, err)
		}
		o, r := originals[name], d.Raw
		for _, f := range []struct {
			what      string
			got, want any
		}{
			{"Cmd", r.Config.Cmd, o.Config.Cmd}, {"Entrypoint", r.Config.Entrypoint, o.Config.Entrypoint}, {"Env", r.Config.Env, o.Config.Env},
			{"Labels", r.Config.Labels, o.Config.Labels}, {"WorkingDir", r.Config.WorkingDir, o.Config.WorkingDir}, {"User", r.Config.User, o.Config.User},
			{"Hostname", r.Config.Hostname, o.Config.Hostname}, {"StopSignal", r.Config.StopSignal, o.Config.StopSignal},
			{"Binds", r.HostConfig.Binds, o.HostConfig.Binds}, {"Mounts", r.HostConfig.Mounts, o.HostConfig.Mounts},
			{"RestartPolicy", r.HostConfig.RestartPolicy, o.HostConfig.RestartPolicy}, {"NetworkMode", r.HostConfig.NetworkMode, o.HostConfig.NetworkMode},
			{"Running", r.State.Running, o.State.Running},
		} {
			if !reflect.DeepEqual(f.got, f.want) {
				t.Errorf("%s: %s = %v, want %v", name, f.what, f.got, f.want)
			}
		}
		ep := r.NetworkSettings.Networks[netName]
		if ep == nil || !slices.Contains(ep.Aliases, fmt.Sprintf("bot-%d", i)) {
			t.Errorf("%s is not on %s under its alias bot-%d: %+v", name, netName, i, ep)
		}
		content, err := exec.Command("docker", "cp", name+":/data/hello.txt", "-").Output()
		if err != nil || !strings.Contains(string(content), fmt.Sprintf("hello from %d", i)) {
			t.Errorf("%s lacks the file written into it: %v", name, err)
		}
	}
	// Restored containers find each other by alias on the recreated network.
	if out, err := exec.Command("docker", "exec", names[0], "/bin/busybox", "ping", "-c", "1", "-W", "10", "bot-1").CombinedOutput(); err != nil {
		t.Errorf("%s cannot reach bot-1 by its alias on the recreated network: %v %s", names[0], err, out)
	}

	// The node drill restores a sample into a sandbox beside the live tenants, projects the
	// node's RTO, and leaves nothing behind.
	out.Reset()
	errb.Reset()
	if code := run([]string{"drill", "node", "-c", cfgB, "--from", "node-a", "--sample", "2"}, &out, &errb); code != 0 {
		t.Fatalf("drill node: exit %d\n%s\n%s", code, out.String(), errb.String())
	}
	for _, want := range []string{"Node restore drill (node-a, 2 of 5 containers in a sandbox)", "Result: 2 passed, 0 failed", "Projected node RTO: "} {
		if !strings.Contains(out.String(), want) {
			t.Fatalf("drill report lacks %q:\n%s", want, out.String())
		}
	}
	if left, _ := exec.Command("docker", "ps", "-aq", "--filter", "label=opsd.drill=node").Output(); len(bytes.TrimSpace(left)) != 0 {
		t.Fatalf("the node drill left containers: %s", left)
	}
	if left, _ := exec.Command("docker", "images", "-q", "--filter", "reference=opsd-drill/"+prefix+"*").Output(); len(bytes.TrimSpace(left)) != 0 {
		t.Fatalf("the node drill left images: %s", left)
	}
	for _, name := range names[:4] {
		if d, err := dc.Inspect(ctx, name, false); err != nil || !d.Running {
			t.Fatalf("the drill disturbed the live %s: %v", name, err)
		}
	}

	// One container: an existing one is never clobbered without --replace; a missing one is
	// recreated from another node's backup.
	out.Reset()
	errb.Reset()
	before, _ := dc.Inspect(ctx, names[0], false)
	if code := run([]string{"restore", "container", "-c", cfgB, names[0], "--from-node", "node-a"}, &out, &errb); code != 1 || !strings.Contains(errb.String(), "pass --replace") {
		t.Fatalf("restore over an existing container without --replace: exit %d\n%s\n%s", code, out.String(), errb.String())
	}
	if after, _ := dc.Inspect(ctx, names[0], false); after.ID != before.ID || !after.Running {
		t.Fatal("a refused restore touched the existing container")
	}
	dc.Remove(ctx, names[2])
	out.Reset()
	if code := run([]string{"restore", "container", "-c", cfgB, names[2], "--from-node", "node-a", "--probe", "500ms", "--allow-bind", bindDir}, &out, &errb); code != 0 || !strings.Contains(out.String(), "OK  container "+names[2]) {
		t.Fatalf("recreate one container: exit %d\n%s\n%s", code, out.String(), errb.String())
	}
	if d, err := dc.Inspect(ctx, names[2], false); err != nil || !d.Running || !reflect.DeepEqual(d.Raw.Config.Env, originals[names[2]].Config.Env) {
		t.Fatalf("%s was not recreated with its spec: %v", names[2], err)
	}
	// Both are runs in the history, with the recreate's phases and the node's outcomes.
	if st, err := state.Open(ctx, filepath.Join(dir, "node-b-state.db")); err == nil {
		one, _ := st.Runs(ctx, "restore_container:"+names[2], 1)
		node, _ := st.Runs(ctx, "restore_node:node-a", 10)
		st.Close()
		if len(one) != 1 || one[0].Outcome != "success" || !strings.Contains(one[0].Phases, `"import"`) || !strings.Contains(one[0].Phases, `"probe"`) {
			t.Fatalf("run of the container restore: %+v", one)
		}
		if len(node) != 3 || node[0].Outcome != "success" || node[1].Outcome != "failure" || node[2].Outcome != "interrupted" {
			t.Fatalf("runs of the node restore (newest first: repaired, corrupt, killed): %+v", node)
		}
	} else {
		t.Fatal(err)
	}

	// The admin API: POST /api/admin/nodes/node-a/restore on a daemon of node-b brings back a
	// container that went missing again and skips the others; GET /api/admin/restores/{id}
	// follows it.
	dc.Remove(ctx, names[1])
	apiCfg := filepath.Join(dir, "api.yaml")
	cfgText, _ := os.ReadFile(cfgB)
	os.WriteFile(apiCfg, []byte(strings.Replace(string(cfgText), "state:", "http:\n  listen: 127.0.0.1:0\n  admin_token: "+token+"\nstate:", 1)), 0o600)
	_, base := startDaemon(t, apiCfg)
	if code, _ := post(t, base+"/api/admin/nodes/node-a/restore", ""); code != 401 {
		t.Fatalf("node restore without a token: %d", code)
	}
	if code, b := post(t, base+"/api/admin/nodes/node-zz/restore", token); code != 404 {
		t.Fatalf("node restore of an unknown node: %d %s", code, b)
	}
	code, resp := postBody(t, base+"/api/admin/nodes/node-a/restore", token, fmt.Sprintf(`{"parallel": 2, "allowBinds": [%q]}`, bindDir))
	if code != 202 {
		t.Fatalf("node restore: %d %s", code, resp)
	}
	var started struct{ ID int64 }
	json.Unmarshal([]byte(resp), &started)
	var rec struct{ Outcome, Progress, Error string }
	eventually(t, "the node restore to finish", 5*time.Minute, func() bool {
		_, b := getAuth(t, fmt.Sprintf("%s/api/admin/restores/%d", base, started.ID), token)
		json.Unmarshal([]byte(b), &rec)
		return rec.Outcome != "running"
	})
	if rec.Outcome != "success" || !strings.Contains(rec.Progress, "1 restored, 4 skipped") || !strings.Contains(rec.Progress, "restored "+names[1]) {
		t.Fatalf("admin node restore: %+v", rec)
	}
	if d, err := dc.Inspect(ctx, names[1], false); err != nil || !d.Running {
		t.Fatalf("%s was not restored through the API: %v", names[1], err)
	}
}

// fileTar is a tar holding one file.
func fileTar(t *testing.T, name, content string) *bytes.Reader {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(content)), Typeflag: tar.TypeReg})
	tw.Write([]byte(content))
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return bytes.NewReader(buf.Bytes())
}
