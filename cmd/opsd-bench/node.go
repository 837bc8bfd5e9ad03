package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/moby/moby/api/types/container"

	"github.com/wopr-network/opsd/internal/docker"
)

// nodeRestoreScenario is runbook Procedure 3: a "lost" node's tenant containers, exported to the
// S3 engine, restored onto this machine by `opsd restore node` next to the runbook's way (a
// sequential shell loop of s3cmd get, docker import and docker run per container).
func (b *bench) nodeRestoreScenario(ctx context.Context) error {
	for _, t := range [][2]string{{"docker", "docker.io"}, {"s3cmd", "s3cmd"}} {
		if err := need(t[0], t[1]); err != nil {
			return err
		}
	}
	dc, img, err := benchDocker(ctx)
	if err != nil {
		return err
	}
	defer dc.Close()
	n, sizeMB := b.sz.nodeContainers, b.sz.nodeMB
	prefix := "tenant_benchnode_"
	var names []string
	removeAll := func(extra ...string) {
		for _, name := range names {
			dc.Remove(context.Background(), name)
			for _, e := range extra {
				dc.Remove(context.Background(), e+name)
			}
		}
		out, _ := exec.Command("docker", "images", "-q", "--filter", "reference=opsd-restore/"+prefix+"*", "--filter", "reference=bench-peer/*").Output()
		for _, id := range strings.Fields(string(out)) {
			dc.RemoveImage(context.Background(), id)
		}
	}
	defer removeAll("peer_")
	half := sizeMB / 2
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("%s%02d", prefix, i)
		names = append(names, name)
		dc.Remove(ctx, name)
		id, err := dc.Create(ctx, name, &container.Config{Image: img, Env: []string{fmt.Sprintf("TENANT=%d", i)}, Cmd: []string{"/bin/sh", "-c",
			fmt.Sprintf("[ -f /data/random ] || { dd if=/dev/urandom of=/data/random bs=1M count=%d 2>/dev/null; i=0; while [ $i -lt %d ]; do cat /bin/busybox; i=$((i+1)); done | head -c %d > /data/binaries; }; exec sleep 3600", half, half*2, half<<20)}},
			&container.HostConfig{RestartPolicy: container.RestartPolicy{Name: container.RestartPolicyUnlessStopped}})
		if err != nil {
			return err
		}
		if err := dc.Start(ctx, id); err != nil {
			return err
		}
	}
	// Wait until every container wrote its data (the file exists at its full size).
	for _, name := range names {
		for {
			out, _ := exec.CommandContext(ctx, "docker", "exec", name, "/bin/sh", "-c", "test -f /data/binaries && ls -l /data/binaries").Output()
			if strings.Contains(string(out), fmt.Sprint(half<<20)) {
				break
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(500 * time.Millisecond):
			}
		}
	}
	_, bucket, err := b.store(ctx, "node")
	if err != nil {
		return err
	}
	bin, err := b.opsdBinary(ctx)
	if err != nil {
		return err
	}
	config := func(node string) string {
		p := filepath.Join(b.dir, "node-"+node+".yaml")
		os.WriteFile(p, []byte(fmt.Sprintf(`node_id: %s
log: {level: warn}
state: {path: %s/node-%s-state.db}
storage:
  backend: s3
  s3: {endpoint: %q, bucket: %s, region: us-east-1, access_key: %q, secret_key: %q, tls: false}
jobs:
  - {name: export, kind: container_export, schedule: "0 2 * * *", name_prefix: %s}
`, node, b.dir, node, b.s3.endpoint, bucket, b.s3.access, b.s3.secret, prefix)), 0o600)
		return p
	}
	lost, fresh := config("lost"), config("fresh")
	if out, err := exec.CommandContext(ctx, bin, "backup", "containers", "-c", lost).CombinedOutput(); err != nil {
		return fmt.Errorf("export the lost node: %v: %s", err, lastLine(string(out)))
	}
	date := time.Now().UTC().Format("20060102")
	script := filepath.Join(b.dir, "node-restore.sh")
	var sh strings.Builder
	sh.WriteString("#!/usr/bin/env bash\nset -e\ncd \"$1\"\n")
	for _, name := range names {
		fmt.Fprintf(&sh, "s3cmd -c %s --no-progress get --force s3://%s/nightly/lost/%s/%s_%s.tar.gz %s.tar.gz >/dev/null\n", b.s3.s3cfg, bucket, name, name, date, name)
		fmt.Fprintf(&sh, "docker import %s.tar.gz bench-peer/%s >/dev/null\nrm -f %s.tar.gz\n", name, name, name)
		fmt.Fprintf(&sh, "docker run -d --name peer_%s --restart unless-stopped -e TENANT=x bench-peer/%s /bin/sh -c 'exec sleep 3600' >/dev/null\n", name, name)
	}
	os.WriteFile(script, []byte(sh.String()), 0o755)
	total := int64(n*sizeMB) << 20
	rows := []row{{name: fmt.Sprintf("opsd restore node (%d containers, 4 in parallel, SHA-256 verified, spec recreated, probed 1s)", n)},
		{name: "the runbook's loop: s3cmd get + docker import + docker run, sequential"}}
	for r := 0; r < b.rounds; r++ {
		removeAll("peer_")
		rows[0].samples = append(rows[0].samples, runProcess(ctx, total, bin, "restore", "node", "-c", fresh, "--from", "lost", "--probe", "1s"))
		removeAll("peer_")
		work := filepath.Join(b.dir, fmt.Sprintf("node-script-%d", r))
		os.MkdirAll(work, 0o755)
		rows[1].samples = append(rows[1].samples, timedCmd(ctx, b.sz.timeLimit, total, "bash", script, work))
		os.RemoveAll(work)
	}
	table(fmt.Sprintf("node-restore: %d containers of %d MiB from a lost node", n, sizeMB),
		"Goal: at least 3x faster than the loop; on 2 cores the whole node in under 5 minutes. Peak RSS is the `opsd restore node` process's.", rows)
	return nil
}

// benchDocker connects to the Docker engine and imports the busybox image the scenarios run.
func benchDocker(ctx context.Context) (*docker.Client, string, error) {
	dc, err := docker.New("")
	if err != nil {
		return nil, "", err
	}
	rootfs, err := docker.BusyboxRootFS()
	if err == nil {
		var img string
		if img, err = dc.Import(ctx, bytes.NewReader(rootfs), "opsd-bench/busybox:latest"); err == nil {
			return dc, img, nil
		}
	}
	dc.Close()
	return nil, "", err
}
