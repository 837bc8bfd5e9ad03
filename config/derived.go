package config

import (
	"bufio"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/wopr-network/opsd/internal/layout"
)

// This file answers the questions the daemon and the CLI ask of a loaded job file.

// Layout is the object-key layout of the config: every backup job's key template, by kind
// (disabled jobs too: their backups are still in the store).
func (c *Config) Layout() (*layout.Layout, error) {
	var t layout.Templates
	add := func(list *[]string, key string) {
		if key != "" {
			*list = append(*list, key)
		}
	}
	for _, j := range c.Jobs {
		switch {
		case j.SQLiteBackup != nil:
			add(&t.SQLite, j.SQLiteBackup.Key)
		case j.ContainerExport != nil && j.ContainerExport.ChangedOnly:
			add(&t.Hot, j.ContainerExport.Key)
		case j.ContainerExport != nil:
			add(&t.Nightly, j.ContainerExport.Key)
		case j.DirSnapshot != nil:
			add(&t.Snapshot, j.DirSnapshot.Key)
		case j.PostgresBackup != nil:
			add(&t.Postgres, j.PostgresBackup.Key)
		}
	}
	l, err := layout.New(t)
	if err != nil {
		return nil, fmt.Errorf("key templates: %w", err)
	}
	return l, nil
}

// TempDirs are the directories where opsd's temporary files live: the system temp dir, every
// job's temp_dir, and the directories of the databases a restore prepares files beside.
func (c *Config) TempDirs() []string {
	dirs := []string{os.TempDir()}
	for _, j := range c.Jobs {
		switch {
		case j.SQLiteBackup != nil:
			dirs = append(dirs, j.SQLiteBackup.TempDir)
			for _, d := range j.SQLiteBackup.Databases {
				dirs = append(dirs, filepath.Dir(d.Path))
			}
		case j.SQLiteDrill != nil:
			dirs = append(dirs, j.SQLiteDrill.TempDir)
		case j.ContainerDrill != nil:
			dirs = append(dirs, j.ContainerDrill.TempDir)
		}
	}
	return dirs
}

// DockerJobs returns the enabled jobs that need the Docker engine, sorted.
func (c *Config) DockerJobs() []string {
	var out []string
	for _, j := range c.Jobs {
		if j.IsEnabled() && (j.ContainerExport != nil || j.ContainerDrill != nil) {
			out = append(out, j.Name)
		}
	}
	sort.Strings(out)
	return out
}

// ContainerExports returns the first nightly and the first hot (changed_only) container_export
// settings; nil when there is none.
func (c *Config) ContainerExports() (nightly, hot *ContainerExportSettings) {
	for _, j := range c.Jobs {
		if e := j.ContainerExport; e != nil && e.ChangedOnly && hot == nil {
			hot = e
		} else if e != nil && !e.ChangedOnly && nightly == nil {
			nightly = e
		}
	}
	return nightly, hot
}

// FindJob returns the named job of a kind, or the first job of that kind (that match accepts,
// when given); the error names the job file.
func (c *Config) FindJob(kind, name string, match ...func(Job) bool) (Job, error) {
	for _, j := range c.Jobs {
		if j.Kind == kind && (name == "" || j.Name == name) && (len(match) == 0 || match[0] == nil || match[0](j)) {
			return j, nil
		}
	}
	if name != "" {
		return Job{}, fmt.Errorf("no %s job named %q in %s", kind, name, c.File)
	}
	return Job{}, fmt.Errorf("no %s job in %s", kind, c.File)
}

// PostgresDrillOf returns the first postgres_drill settings that drill database, nil when none.
func (c *Config) PostgresDrillOf(database string) *PostgresDrillSettings {
	for _, j := range c.Jobs {
		if d := j.PostgresDrill; d != nil && d.Database == database {
			return d
		}
	}
	return nil
}

// HasContainerExports reports whether a container_export job is configured.
func (c *Config) HasContainerExports() bool {
	for _, j := range c.Jobs {
		if j.ContainerExport != nil {
			return true
		}
	}
	return false
}

// BindRoots are the host directories a restored container's bind mounts may come from by
// default: the base_dir of every dir_snapshot job (WOPR_HOME).
func (c *Config) BindRoots() []string {
	var out []string
	for _, j := range c.Jobs {
		if j.DirSnapshot != nil && j.DirSnapshot.BaseDir != "" {
			out = append(out, j.DirSnapshot.BaseDir)
		}
	}
	return out
}

// ExpectedTables maps each database to the tables it must hold: the configured sqlite_backup
// databases, over REFERENCE.md's seven.
func (c *Config) ExpectedTables() map[string][]string {
	out := map[string][]string{}
	for _, db := range PlatformDatabases() {
		out[db.Name] = db.Tables
	}
	for _, j := range c.Jobs {
		if j.SQLiteBackup == nil {
			continue
		}
		for _, db := range j.SQLiteBackup.Databases {
			if len(db.Tables) > 0 {
				out[db.Name] = db.Tables
			}
		}
	}
	return out
}

// DeletesPerSecond is the store's delete rate limit (s3.deletes_per_sec; 1000 for a local store).
func (s Storage) DeletesPerSecond() int {
	if s.Backend == "s3" {
		return s.S3.DeletesPerSec
	}
	return 1000
}

// TenantNames are the target names that stand for a tenant id: the id itself (instances,
// on-demand folders) and every export's or snapshot's tenant_from pattern (tenant_{id}).
func (c *Config) TenantNames(id string) []string {
	names := map[string]bool{id: true, "tenant_" + id: true}
	for _, j := range c.Jobs {
		var ts TierSource
		switch {
		case j.ContainerExport != nil:
			ts = j.ContainerExport.ResolvedTierSource()
		case j.DirSnapshot != nil:
			ts = j.DirSnapshot.ResolvedTierSource()
		default:
			continue
		}
		names[strings.ReplaceAll(ts.TenantFrom, "{id}", id)] = true
	}
	return slices.Sorted(maps.Keys(names))
}

// TargetFolders are where per-target artifacts live: the prune rules' targets (platform sets are
// shared and never a target's) and the folders the export and snapshot key templates name after
// their container or instance.
func (c *Config) TargetFolders() ([]layout.TargetFolder, error) {
	keys, err := c.Layout()
	if err != nil {
		return nil, err
	}
	rules := DefaultPruneRules()
	for _, j := range c.Jobs {
		if j.Prune != nil {
			rules = append(rules, j.Prune.Rules...)
		}
	}
	var out []layout.TargetFolder
	seen := map[layout.TargetFolder]bool{}
	for _, r := range rules {
		if f := (layout.TargetFolder{Prefix: r.Prefix, Depth: r.Depth}); !r.Sets && r.Depth > 0 && !seen[f] {
			seen[f] = true
			out = append(out, f)
		}
	}
	for _, f := range keys.TargetFolders(layout.Nightly, layout.Hot, layout.Snapshot) {
		if !seen[f] {
			seen[f] = true
			out = append(out, f)
		}
	}
	return out, nil
}

// RestartOnly names the settings that differ between old and c and take effect only after a
// restart.
func RestartOnly(old, c *Config) []string {
	var out []string
	for _, f := range []struct {
		name string
		same bool
	}{
		{"http.listen", old.HTTP.Listen == c.HTTP.Listen},
		{"state.path", old.State.Path == c.State.Path},
		{"sentry", old.Sentry == c.Sentry},
		{"log", old.Log == c.Log},
		{"node_id", old.NodeID == c.NodeID},
		{"alerts.notify", reflect.DeepEqual(old.Alerts.Notify, c.Alerts.Notify)},
		{"alerts.interval", old.Alerts.Interval == c.Alerts.Interval},
		{"coordination.postgres", old.Coordination.Postgres == c.Coordination.Postgres},
		{"scheduler.max_concurrent", old.Scheduler.MaxConcurrent == c.Scheduler.MaxConcurrent},
		{"docker.host", old.Docker.Host == c.Docker.Host}, // the Docker client is built once, at start
	} {
		if !f.same {
			out = append(out, f.name)
		}
	}
	return out
}

// ListenAddress returns the job file's http.listen. When the file does not load (a bad edit the
// running daemon refused keeps it on its old config), http.listen is read on its own, so a probe
// still goes to the daemon; note says what happened.
func ListenAddress(path string) (listen, note string) {
	def := Default().HTTP.Listen
	cfg, err := Load(path)
	if err == nil {
		return cfg.HTTP.Listen, ""
	}
	first, _, _ := strings.Cut(err.Error(), "\n")
	note = fmt.Sprintf("the job file does not load (%s); http.listen read on its own", first)
	data, rerr := os.ReadFile(path)
	if rerr != nil {
		return def, fmt.Sprintf("cannot read the job file (%v); probed the default %s", rerr, def)
	}
	var doc struct {
		HTTP struct {
			Listen string `yaml:"listen"`
		} `yaml:"http"`
	}
	if yaml.Unmarshal(data, &doc) != nil || doc.HTTP.Listen == "" {
		return def, note + "; probed the default " + def
	}
	listen, err = expandEnv(doc.HTTP.Listen, os.LookupEnv)
	if err != nil {
		return def, note + "; " + err.Error() + "; probed the default " + def
	}
	return listen, note
}

// SingleFileMountWarning is what MountWarning returns for a job file that is a mount point.
const SingleFileMountWarning = "the job file is a single-file bind mount: edits that replace the file on the host (editors' rename-writes, mv) are never seen here, so live reload misses them; mount its directory instead"

// MountWarning returns SingleFileMountWarning when the job file at path is a single-file bind
// mount (Linux), else "".
func MountWarning(path string) string {
	abs, err := filepath.Abs(path)
	if err != nil || path == "" {
		return ""
	}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return ""
	}
	defer f.Close()
	if isMountPoint(f, abs) {
		return SingleFileMountWarning
	}
	return ""
}

// isMountPoint reports whether path is a mount point in a /proc/self/mountinfo listing (a
// single-file bind mount shows up as a mount point that is a file).
func isMountPoint(mountinfo io.Reader, path string) bool {
	path = filepath.Clean(path)
	sc := bufio.NewScanner(mountinfo)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) > 4 && unescapeMountPath(f[4]) == path {
			return true
		}
	}
	return false
}

// unescapeMountPath decodes mountinfo's octal escapes (\040 for a space).
func unescapeMountPath(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// DefaultJob builds a job of a kind with every default (a 2h timeout), for CLI use without a
// configured job.
func (c *Config) DefaultJob(name, kind string) Job {
	text := fmt.Sprintf("node_id: %s\nstate:\n  path: /tmp/unused.db\njobs:\n  - name: %s\n    kind: %s\n    schedule: \"@monthly\"\n", c.NodeID, name, kind)
	if kind == "node_drill" {
		text += fmt.Sprintf("    from_node: %q\n", c.NodeID)
	}
	parsed, err := Parse([]byte(text), "defaults")
	if err != nil {
		panic(err) // the defaults always parse
	}
	j := parsed.Jobs[0]
	j.Timeout = Duration(2 * time.Hour)
	return j
}
