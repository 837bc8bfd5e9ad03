package main

// The --slow-disk mode: a scenario's data directory (and the S3 engine's, when the bench starts
// it) lives on an ext4 file system in a loop-mounted image whose block device is throttled by the
// kernel's block-layer throttle (cgroup v1 blkio.throttle.* at the root, or cgroup v2 io.max), so
// opsd and its peer read and write through the same slow device. The loop device does direct I/O
// on its backing file (no second copy in the page cache) and its dirty page cache is capped
// (strict per-device limit), so buffered writes cannot hide a slow disk in RAM the way they do on
// a 24 GB machine. Everything here is reusable by any scenario: newSlowDisk, Dir, String, Close.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// slowDiskConfig describes the emulated disk.
type slowDiskConfig struct {
	Parent  string // where the sparse image file goes (default os.TempDir())
	SizeGB  int    // size of the sparse image (file system size)
	MBps    int    // read and write bandwidth limit, MB/s (1e6 bytes)
	IOPS    int    // read and write request limit per second; 0: none
	DirtyMB int    // cap on this device's dirty page cache, MiB; 0: the kernel's global limits
}

// slowDisk is a mounted, throttled loop device.
type slowDisk struct {
	Dir     string // mount point: put a scenario's files under it
	cfg     slowDiskConfig
	img     string
	loop    string
	majmin  string
	method  string   // how the throttle is applied (for the report)
	undo    []func() // run in reverse by Close
	cgroup2 string   // the cgroup v2 directory this process was moved into, if any
	closing sync.Once
}

// newSlowDisk creates, mounts and throttles the disk. It needs root, losetup, mkfs.ext4 and a
// writable cgroup file system; the error says which one is missing.
func newSlowDisk(ctx context.Context, cfg slowDiskConfig) (d *slowDisk, err error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("slow disk: needs root (loop devices, mount, block throttling)")
	}
	for _, tool := range []string{"losetup", "mkfs.ext4", "mount", "umount"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, fmt.Errorf("slow disk: %s is not installed", tool)
		}
	}
	if cfg.Parent == "" {
		cfg.Parent = os.TempDir()
	}
	d = &slowDisk{cfg: cfg}
	defer func() {
		if err != nil {
			d.Close()
		}
	}()
	work, err := os.MkdirTemp(cfg.Parent, "opsd-bench-slowdisk-")
	if err != nil {
		return nil, fmt.Errorf("slow disk: %w", err)
	}
	d.undo = append(d.undo, func() { os.RemoveAll(work) })
	d.img = filepath.Join(work, "disk.img")
	if err := os.WriteFile(d.img, nil, 0o600); err != nil {
		return nil, fmt.Errorf("slow disk: %w", err)
	}
	if err := os.Truncate(d.img, int64(cfg.SizeGB)<<30); err != nil {
		return nil, fmt.Errorf("slow disk: image: %w", err)
	}
	if out, err := exec.CommandContext(ctx, "mkfs.ext4", "-q", "-F", d.img).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("slow disk: mkfs.ext4: %v: %s", err, out)
	}
	out, err := exec.CommandContext(ctx, "losetup", "--find", "--show", "--direct-io=on", d.img).Output()
	if err != nil {
		return nil, fmt.Errorf("slow disk: losetup: %w", err)
	}
	d.loop = strings.TrimSpace(string(out))
	d.undo = append(d.undo, func() { exec.Command("losetup", "-d", d.loop).Run() })
	dev, err := os.ReadFile(filepath.Join("/sys/block", filepath.Base(d.loop), "dev"))
	if err != nil {
		return nil, fmt.Errorf("slow disk: %w", err)
	}
	d.majmin = strings.TrimSpace(string(dev))
	d.Dir = filepath.Join(work, "mnt")
	if err := os.Mkdir(d.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("slow disk: %w", err)
	}
	if out, err := exec.CommandContext(ctx, "mount", d.loop, d.Dir).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("slow disk: mount %s: %v: %s", d.loop, err, out)
	}
	d.undo = append(d.undo, func() {
		// The S3 engine may still be exiting: retry, then detach lazily.
		for i := 0; i < 20; i++ {
			if exec.Command("umount", d.Dir).Run() == nil {
				return
			}
			time.Sleep(250 * time.Millisecond)
		}
		exec.Command("umount", "-l", d.Dir).Run()
	})
	if err := d.throttle(); err != nil {
		return nil, err
	}
	if cfg.DirtyMB > 0 {
		bdi := filepath.Join("/sys/class/bdi", d.majmin)
		if err := writeSys(filepath.Join(bdi, "max_bytes"), strconv.Itoa(cfg.DirtyMB<<20)); err != nil {
			return nil, fmt.Errorf("slow disk: cap dirty cache: %w", err)
		}
		if err := writeSys(filepath.Join(bdi, "strict_limit"), "1"); err != nil {
			return nil, fmt.Errorf("slow disk: cap dirty cache: %w", err)
		}
	}
	// An interrupted bench still unmounts and unthrottles (children get the signal too).
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		s := <-sig
		fmt.Fprintf(os.Stderr, "opsd-bench: %v: removing the slow disk\n", s)
		d.Close()
		os.Exit(130)
	}()
	return d, nil
}

// throttle limits the loop device with cgroup v2 io.max when the unified hierarchy is mounted
// at /sys/fs/cgroup, else with cgroup v1 blkio.throttle.* in the root blkio cgroup (which limits
// every process's I/O to this device, the kernel's writeback included).
func (d *slowDisk) throttle() error {
	bps := strconv.FormatInt(int64(d.cfg.MBps)*1e6, 10)
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		return d.throttleV2(bps)
	}
	root := "/sys/fs/cgroup/blkio"
	if _, err := os.Stat(filepath.Join(root, "blkio.throttle.read_bps_device")); err != nil {
		return errors.New("slow disk: neither cgroup v2 (/sys/fs/cgroup/cgroup.controllers) nor the v1 blkio throttle (/sys/fs/cgroup/blkio) is available")
	}
	set := map[string]string{"read_bps_device": bps, "write_bps_device": bps}
	if d.cfg.IOPS > 0 {
		set["read_iops_device"], set["write_iops_device"] = strconv.Itoa(d.cfg.IOPS), strconv.Itoa(d.cfg.IOPS)
	}
	for f, v := range set {
		p := filepath.Join(root, "blkio.throttle."+f)
		if err := writeSys(p, d.majmin+" "+v); err != nil {
			return fmt.Errorf("slow disk: throttle: %w", err)
		}
		d.undo = append(d.undo, func() { writeSys(p, d.majmin+" 0") })
	}
	d.method = "cgroup v1 blkio.throttle (root)"
	return nil
}

// throttleV2 moves this process (and so every child it starts: opsd, sqlite3, s3cmd, the S3
// engine) into a new cgroup whose io.max limits the loop device.
func (d *slowDisk) throttleV2(bps string) error {
	parent := "/sys/fs/cgroup"
	if b, err := os.ReadFile("/proc/self/cgroup"); err == nil {
		for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			if p, ok := strings.CutPrefix(l, "0::"); ok {
				parent = filepath.Join(parent, p)
			}
		}
	}
	if err := writeSys(filepath.Join(parent, "cgroup.subtree_control"), "+io"); err != nil {
		return fmt.Errorf("slow disk: enable the io controller in %s (a cgroup with processes cannot delegate it; run from the root cgroup or a delegated one): %w", parent, err)
	}
	cg := filepath.Join(parent, fmt.Sprintf("opsd-bench-slowdisk-%d", os.Getpid()))
	if err := os.Mkdir(cg, 0o755); err != nil {
		return fmt.Errorf("slow disk: %w", err)
	}
	d.undo = append(d.undo, func() { os.Remove(cg) })
	limit := fmt.Sprintf("%s rbps=%s wbps=%s", d.majmin, bps, bps)
	if d.cfg.IOPS > 0 {
		limit += fmt.Sprintf(" riops=%d wiops=%d", d.cfg.IOPS, d.cfg.IOPS)
	}
	if err := writeSys(filepath.Join(cg, "io.max"), limit); err != nil {
		return fmt.Errorf("slow disk: throttle: %w", err)
	}
	if err := writeSys(filepath.Join(cg, "cgroup.procs"), strconv.Itoa(os.Getpid())); err != nil {
		return fmt.Errorf("slow disk: join %s: %w", cg, err)
	}
	d.undo = append(d.undo, func() { writeSys(filepath.Join(parent, "cgroup.procs"), strconv.Itoa(os.Getpid())) })
	d.cgroup2, d.method = cg, "cgroup v2 io.max"
	return nil
}

// String describes the disk for a report.
func (d *slowDisk) String() string {
	s := fmt.Sprintf("slow disk: ext4 on %s (loop, direct I/O), %d MB/s read and write", d.loop, d.cfg.MBps)
	if d.cfg.IOPS > 0 {
		s += fmt.Sprintf(", %d IOPS", d.cfg.IOPS)
	}
	if d.cfg.DirtyMB > 0 {
		s += fmt.Sprintf(", dirty page cache capped at %d MiB", d.cfg.DirtyMB)
	}
	return s + ", " + d.method
}

// Close removes the throttle, unmounts and deletes the image. Safe on a half-built disk.
func (d *slowDisk) Close() {
	d.closing.Do(func() {
		for i := len(d.undo) - 1; i >= 0; i-- {
			d.undo[i]()
		}
	})
}

// writeSys writes one value to a sysfs or cgroup file.
func writeSys(path, v string) error {
	if err := os.WriteFile(path, []byte(v), 0); err != nil {
		return fmt.Errorf("write %q to %s: %w", v, path, err)
	}
	return nil
}
