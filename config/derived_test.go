package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSingleFileMountDetected: a job file that is itself a mount point (a single-file bind
// mount, whose host-side rename-writes are never seen) is recognised from mountinfo; its
// directory being the mount point is fine.
func TestSingleFileMountDetected(t *testing.T) {
	info := `22 27 0:21 / /proc rw,relatime - proc proc rw
812 790 8:1 /srv/opsd/opsd.yaml /etc/opsd/opsd.yaml ro,relatime - ext4 /dev/sda1 rw
813 790 8:1 /srv/my\040conf /etc/my\040conf ro,relatime - ext4 /dev/sda1 rw
`
	if !isMountPoint(strings.NewReader(info), "/etc/opsd/opsd.yaml") {
		t.Error("the single-file mount is not detected")
	}
	if isMountPoint(strings.NewReader(info), "/etc/opsd/other.yaml") {
		t.Error("a file in a plain directory is taken for a mount point")
	}
	if !isMountPoint(strings.NewReader(info), "/etc/my conf") {
		t.Error("an escaped mount path is not decoded")
	}
}

// TestDerived: what the daemon and the CLI read off a job file: the key layout from its
// templates, where a tenant's backups live and under which names, the settings a reload cannot
// change, the listen address of a file that does not load.
func TestDerived(t *testing.T) {
	cfg, err := Parse([]byte(`node_id: n1
state: {path: /tmp/s.db}
jobs:
  - {name: nightly, kind: container_export, schedule: "@daily", key: "exports/{node}/{container}/{date}.tar.gz"}
  - {name: hot, kind: container_export, schedule: "@every 6h", changed_only: true}
  - {name: homes, kind: dir_snapshot, schedule: "@daily", key: "homes/{instance}/{date}.tar.gz", tier_source: {kind: map, map: {abc: pro}, tenant_from: "bot-{id}"}}
  - {name: prune, kind: prune, schedule: "@daily", rules: [{prefix: "custom/", depth: 1, keep_last: 3}]}
`), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	folders, err := cfg.TargetFolders()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range folders {
		got = append(got, fmt.Sprintf("%s%d", f.Prefix, f.Depth))
	}
	want := "nightly/2 on-demand/1 pre-restore/2 custom/1 exports/2 latest/1 homes/1"
	if strings.Join(got, " ") != want {
		t.Errorf("target folders %v, want %s", got, want)
	}
	if names := strings.Join(cfg.TenantNames("abc"), " "); names != "abc bot-abc tenant_abc" {
		t.Errorf("tenant names %s", names)
	}
	keys, err := cfg.Layout()
	if err != nil || !keys.BelongsTo("exports/n1/tenant_a/20260101.tar.gz", "tenant_a") {
		t.Errorf("layout from the templates: %v", err)
	}
	if n, h := cfg.ContainerExports(); n == nil || h == nil || !h.ChangedOnly || n.ChangedOnly || !cfg.HasContainerExports() {
		t.Errorf("container exports %v %v", n, h)
	}
	if d := strings.Join(cfg.DockerJobs(), ","); d != "hot,nightly" {
		t.Errorf("docker jobs %s", d)
	}
	if (Storage{Backend: "s3", S3: S3{DeletesPerSec: 7}}).DeletesPerSecond() != 7 || (Storage{Backend: "local"}).DeletesPerSecond() != 1000 {
		t.Error("deletes per second")
	}
	next := *cfg
	next.HTTP.Listen, next.NodeID, next.Scheduler.MaxConcurrent = "0.0.0.0:1", "n2", 9
	if r := strings.Join(RestartOnly(cfg, &next), ","); r != "http.listen,node_id,scheduler.max_concurrent" {
		t.Errorf("restart only: %s", r)
	}
	if j := cfg.DefaultJob("node-drill", "node_drill"); j.NodeDrill == nil || j.NodeDrill.FromNode != "n1" || j.Timeout.D() != 2*time.Hour {
		t.Errorf("default node drill %+v", j)
	}

	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("http:\n  listen: ${OPSD_TEST_LISTEN:-0.0.0.0:9555}\nbogus: 1\n"), 0o600)
	if l, note := ListenAddress(bad); l != "0.0.0.0:9555" || !strings.Contains(note, "does not load") {
		t.Errorf("listen of a file that does not load: %q, %q", l, note)
	}
	if l, note := ListenAddress(filepath.Join(dir, "absent.yaml")); l != Default().HTTP.Listen || !strings.Contains(note, "cannot read") {
		t.Errorf("listen of a missing file: %q, %q", l, note)
	}
}

// TestFindJob: a job of a kind by name, else the first of that kind (that match accepts); the
// errors name the kind, the name and the file. PostgresDrillOf finds the drill of a database.
func TestFindJob(t *testing.T) {
	c := &Config{File: "/etc/opsd/opsd.yaml", Jobs: []Job{
		{Name: "a", Kind: "prune"},
		{Name: "pg-drill", Kind: "postgres_drill", PostgresDrill: &PostgresDrillSettings{Database: "platform"}},
		{Name: "b", Kind: "prune"},
	}}
	for _, tc := range []struct {
		kind, name string
		match      func(Job) bool
		want, err  string
	}{
		{kind: "prune", want: "a"},
		{kind: "prune", name: "b", want: "b"},
		{kind: "prune", match: func(j Job) bool { return j.Name != "a" }, want: "b"},
		{kind: "prune", name: "c", err: `no prune job named "c" in /etc/opsd/opsd.yaml`},
		{kind: "sqlite_backup", err: "no sqlite_backup job in /etc/opsd/opsd.yaml"},
	} {
		j, err := c.FindJob(tc.kind, tc.name, tc.match)
		if tc.err != "" {
			if err == nil || err.Error() != tc.err {
				t.Errorf("FindJob(%s, %q): error %v, want %q", tc.kind, tc.name, err, tc.err)
			}
			continue
		}
		if err != nil || j.Name != tc.want {
			t.Errorf("FindJob(%s, %q) = %q, %v; want %q", tc.kind, tc.name, j.Name, err, tc.want)
		}
	}
	if d := c.PostgresDrillOf("platform"); d == nil || d.Database != "platform" {
		t.Errorf("PostgresDrillOf(platform) = %v", d)
	}
	if d := c.PostgresDrillOf("other"); d != nil {
		t.Errorf("PostgresDrillOf(other) = %v, want nil", d)
	}
}
