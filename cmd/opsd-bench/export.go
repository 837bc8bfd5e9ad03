package main

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/moby/moby/api/types/container"

	"github.com/wopr-network/opsd/internal/artifact"
	"github.com/wopr-network/opsd/internal/layout"
)

var (
	exportSizes = flag.String("export-mb", "", "export: container sizes in MiB, comma-separated (default: the size profile's two)")
	exportPeer  = flag.Int("export-peer-max-mb", 2048, "export: run the shell pipeline only for containers up to this size (larger ones: opsd's memory only)")
)

// randomFile writes n bytes: half random, half a repeated binary, like mixed binaries.
func randomFile(path string, n int64) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	r := rand.New(rand.NewPCG(1, 2))
	buf := make([]byte, 1<<20)
	bb, _ := os.ReadFile("/bin/busybox")
	for written := int64(0); written < n; written += int64(len(buf)) {
		if (written>>20)%2 == 0 || len(bb) == 0 {
			for i := range buf {
				buf[i] = byte(r.Uint32())
			}
		} else {
			for i := 0; i < len(buf); i += len(bb) {
				copy(buf[i:], bb)
			}
		}
		if _, err := f.Write(buf); err != nil {
			return err
		}
	}
	return nil
}

// uploadScenario uploads one file with opsd's storage layer, s3cmd and rclone, alternately.
func (b *bench) uploadScenario(ctx context.Context) error {
	if err := need("s3cmd", "s3cmd"); err != nil {
		return err
	}
	if err := need("rclone", "rclone"); err != nil {
		return err
	}
	path := filepath.Join(b.dir, "upload.bin")
	size := int64(b.sz.uploadMB) << 20
	if err := randomFile(path, size); err != nil {
		return err
	}
	defer os.Remove(path)
	store, bucket, err := b.store(ctx, "upload")
	if err != nil {
		return err
	}
	rows := []row{{name: "opsd storage layer (16 MiB budget: 5 MiB parts, 2 in flight; SHA-256 on the way, CRC32C per part)"},
		{name: "s3cmd put (16 MiB parts)"}, {name: "rclone copyto (4 parts in flight)"}}
	for r := 0; r < b.rounds; r++ {
		rows[0].samples = append(rows[0].samples, timed(func() (int64, error) {
			f, _ := os.Open(path)
			defer f.Close()
			_, err := artifact.Upload(ctx, store, fmt.Sprintf("upload/opsd-%d.bin", r), f, artifact.Options{})
			return size, err
		}))
		rows[1].samples = append(rows[1].samples, timedCmd(ctx, b.sz.timeLimit, size, "s3cmd", "-c", b.s3.s3cfg, "--no-progress", "--multipart-chunk-size-mb=16",
			"put", path, fmt.Sprintf("s3://%s/upload/s3cmd-%d.bin", bucket, r)))
		rows[2].samples = append(rows[2].samples, b.rclone(ctx, size, "copyto", "--s3-upload-concurrency", "4", path, fmt.Sprintf("opsdbench:%s/upload/rclone-%d.bin", bucket, r)))
	}
	table(fmt.Sprintf("upload: %d MiB file to the S3 engine", b.sz.uploadMB), "CPU is the uploading process's user+system time (the S3 engine's is not counted). Goal: at least 1.3x s3cmd, at least as fast as rclone.", rows)
	return nil
}

// rclone runs rclone against the S3 engine, configured through the environment (no config file).
func (b *bench) rclone(ctx context.Context, size int64, args ...string) sample {
	env := map[string]string{"TYPE": "s3", "PROVIDER": "Other", "ACCESS_KEY_ID": b.s3.access, "SECRET_ACCESS_KEY": b.s3.secret,
		"ENDPOINT": "http://" + b.s3.endpoint, "REGION": "us-east-1", "FORCE_PATH_STYLE": "true"}
	os.Setenv("RCLONE_CONFIG", "/dev/null")
	for k, v := range env {
		os.Setenv("RCLONE_CONFIG_OPSDBENCH_"+k, v)
	}
	// rclone's AWS SDK refuses a custom CA bundle with its own transport: plain http needs none.
	return timedCmd(ctx, b.sz.timeLimit, size, "env", append([]string{"-u", "AWS_CA_BUNDLE", "rclone", "-q"}, args...)...)
}

// exportSizesMB returns the container sizes of the export scenario.
func (b *bench) exportSizesMB() ([]int, error) {
	if *exportSizes == "" {
		return []int{b.sz.exportSmallMB, b.sz.exportMB}, nil
	}
	var out []int
	for _, f := range strings.Split(*exportSizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 2 {
			return nil, fmt.Errorf("--export-mb: bad size %q", f)
		}
		out = append(out, n)
	}
	return out, nil
}

// exportScenario exports containers with opsd and with the shell pipeline, alternately.
func (b *bench) exportScenario(ctx context.Context) error {
	for _, t := range [][2]string{{"docker", "docker.io"}, {"s3cmd", "s3cmd"}, {"gzip", "gzip"}} {
		if err := need(t[0], t[1]); err != nil {
			return err
		}
	}
	sizes, err := b.exportSizesMB()
	if err != nil {
		return err
	}
	dc, img, err := benchDocker(ctx)
	if err != nil {
		return err
	}
	defer dc.Close()
	_, bucket, err := b.store(ctx, "export") // creates the bucket
	if err != nil {
		return err
	}
	bin, err := b.opsdBinary(ctx)
	if err != nil {
		return err
	}
	for _, sizeMB := range sizes {
		// Unique per run: several benches may share the Docker engine.
		name := fmt.Sprintf("tenant_bench_%d_%d", os.Getpid(), sizeMB)
		// Half random data, half binaries; above 4 GiB, 1 GiB of each and the rest a sparse file
		// (read back as zeros by docker export: the same work for opsd's pipeline, little disk).
		random, bins, sparse := sizeMB/2, sizeMB-sizeMB/2, 0
		what := "half random, half binaries"
		if sizeMB > 4096 {
			random, bins, sparse = 1024, 1024, sizeMB-2048
			what = "1 GiB random, 1 GiB binaries, the rest a sparse file"
		}
		script := fmt.Sprintf("dd if=/dev/urandom of=/data/random bs=1M count=%d 2>/dev/null; i=0; while [ $i -lt %d ]; do cat /bin/busybox; i=$((i+1)); done | head -c %d > /data/binaries; dd if=/dev/zero of=/data/sparse bs=1M count=0 seek=%d 2>/dev/null",
			random, bins*2, bins<<20, sparse)
		id, err := dc.Create(ctx, name, &container.Config{Image: img, Cmd: []string{"/bin/sh", "-c", script}}, &container.HostConfig{})
		if err != nil {
			return err
		}
		defer dc.Remove(context.Background(), id)
		if err := dc.Start(ctx, id); err != nil {
			return err
		}
		if _, err := dc.Wait(ctx, id); err != nil {
			return err
		}
		opsd := row{name: fmt.Sprintf("opsd backup containers, %d MiB (parallel gzip, streaming multipart)", sizeMB)}
		peer := row{name: fmt.Sprintf("docker export \\| gzip \\| s3cmd put - (%d MiB)", sizeMB)}
		runPeer := sizeMB <= *exportPeer
		for r := 0; r < b.rounds; r++ {
			cfg := filepath.Join(b.dir, fmt.Sprintf("export-%d-%d.yaml", sizeMB, r))
			os.WriteFile(cfg, []byte(fmt.Sprintf(`node_id: bench
log: {level: warn}
state: {path: %s/export-state.db}
storage:
  backend: s3
  s3: {endpoint: %q, bucket: %s, region: us-east-1, access_key: %q, secret_key: %q, tls: false}
jobs:
  - {name: export, kind: container_export, schedule: "0 2 * * *", name_prefix: %s, key: "%s-%d.tar.gz"}
`, b.dir, b.s3.endpoint, bucket, b.s3.access, b.s3.secret, name, strings.TrimSuffix(layout.DefaultNightly, ".tar.gz"), r)), 0o600)
			opsd.samples = append(opsd.samples, runProcess(ctx, int64(sizeMB)<<20, bin, "backup", "containers", "-c", cfg))
			if runPeer {
				peer.samples = append(peer.samples, timedCmd(ctx, b.sz.timeLimit, int64(sizeMB)<<20, "bash", "-c",
					fmt.Sprintf("set -o pipefail; docker export %s | gzip | s3cmd -c %s --no-progress --multipart-chunk-size-mb=16 put - s3://%s/peer-%d-%d.tar.gz", id, b.s3.s3cfg, bucket, sizeMB, r)))
			}
		}
		rows := []row{opsd}
		note := fmt.Sprintf("Container data: %s. Peak RSS and CPU are the `opsd backup containers` process's; the pipeline's CPU is bash's with its children (docker CLI, gzip, s3cmd); Docker's and the S3 engine's are not counted for either.", what)
		if runPeer {
			rows = append(rows, peer)
		} else {
			note += " The shell pipeline is not run at this size (opsd's memory only)."
		}
		table(fmt.Sprintf("export: container with %d MiB", sizeMB), note+" Goal: at least 3x the shell pipeline; peak RSS at most 64 MiB and flat with size.", rows)
		dc.Remove(context.Background(), id)
		// Free the engine's disk before the next size (the objects of this size are not read again).
		exec.CommandContext(ctx, "s3cmd", "-c", b.s3.s3cfg, "--no-progress", "--recursive", "--force", "del", fmt.Sprintf("s3://%s/", bucket)).Run()
	}
	return nil
}
