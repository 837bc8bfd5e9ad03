// Package scratch names opsd's temporary files and directories so that the ones a crashed
// process left behind can be found and removed at the next start: every name starts with
// Prefix followed by the PID of the process that made it ("opsd-tmp-1234-auth-…"). Clean
// removes those whose process is gone, and never touches anything else.
package scratch

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Prefix starts the name of every temporary file or directory opsd makes.
const Prefix = "opsd-tmp-"

// legacyPrefix named SQLite copies before Prefix existed (".opsd-NAME-NANOS.db").
const legacyPrefix = ".opsd-"

// LegacyMinAge is how old a file with the old naming (no PID) must be before Clean removes it.
const LegacyMinAge = 6 * time.Hour

// processStart is when this process started (package initialisation): an entry named with this
// process's PID but older is an earlier process's.
var processStart = time.Now()

// Pattern returns an os.CreateTemp / os.MkdirTemp pattern for a temporary of the given kind.
func Pattern(kind string) string {
	return fmt.Sprintf("%s%d-%s-", Prefix, os.Getpid(), kind)
}

// Name returns a fresh temporary name (no directory) for kind, ending in suffix.
func Name(kind, suffix string) string {
	return fmt.Sprintf("%s%d-%s-%d%s", Prefix, os.Getpid(), kind, time.Now().UnixNano(), suffix)
}

// Removed describes what Clean removed.
type Removed struct {
	Paths []string
	Bytes int64
}

// Clean removes, in each directory (not recursively), the entries named by a process that no
// longer runs, and legacy-named entries older than LegacyMinAge. Missing directories are
// skipped.
func Clean(dirs []string, now time.Time) (Removed, error) {
	var out Removed
	var errs []error
	seen := map[string]bool{}
	for _, dir := range dirs {
		if dir == "" || seen[filepath.Clean(dir)] {
			continue
		}
		seen[filepath.Clean(dir)] = true
		entries, err := os.ReadDir(dir)
		if err != nil {
			if !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, fmt.Errorf("clean temp files in %s: %w", dir, err))
			}
			continue
		}
		for _, e := range entries {
			if !stale(dir, e, now) {
				continue
			}
			p := filepath.Join(dir, e.Name())
			n := size(p)
			if err := os.RemoveAll(p); err != nil {
				errs = append(errs, fmt.Errorf("clean temp files: %w", err))
				continue
			}
			out.Paths = append(out.Paths, p)
			out.Bytes += n
		}
	}
	return out, errors.Join(errs...)
}

func stale(dir string, e os.DirEntry, now time.Time) bool {
	name := e.Name()
	if rest, ok := strings.CutPrefix(name, Prefix); ok {
		pidStr, _, ok := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(pidStr)
		if !ok || err != nil || pid <= 0 {
			return false
		}
		if pid == os.Getpid() {
			// Ours, or an earlier process's that ran under the same PID: opsd in a container
			// gets the same PID after every restart. Entries last written before this process
			// started are the earlier one's (with a second's margin: the kernel stamps files
			// with a coarse clock, a tick behind time.Now).
			info, err := e.Info()
			return err == nil && info.ModTime().Before(processStart.Add(-time.Second))
		}
		return !alive(pid)
	}
	if strings.HasPrefix(name, legacyPrefix) && !e.IsDir() && (strings.Contains(name, ".db") || strings.Contains(name, ".download")) {
		info, err := e.Info()
		return err == nil && now.Sub(info.ModTime()) > LegacyMinAge
	}
	return false
}

// alive reports whether a process with that PID exists (EPERM: it exists, owned by another user).
func alive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

func size(p string) int64 {
	var n int64
	filepath.WalkDir(p, func(_ string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if info, err := d.Info(); err == nil {
				n += info.Size()
			}
		}
		return nil
	})
	return n
}
