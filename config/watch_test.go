package config

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// startWatch runs Watch on path with a poll interval long enough that only file events can
// report a change within the test, and returns the channel of reported changes.
func startWatch(t *testing.T, path string) <-chan struct{} {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("file events are used on Linux only")
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	changed := make(chan struct{}, 10)
	go Watch(ctx, path, time.Hour, func() { changed <- struct{}{} })
	return changed
}

// waitChange waits for a reported change; the deadline only bounds a failing test.
func waitChange(t *testing.T, changed <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-changed:
	case <-time.After(30 * time.Second):
		t.Fatalf("%s was not reported", what)
	}
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// watchReady waits until the watcher has set up its watch: a throwaway edit is reported.
func watchReady(t *testing.T, path string, changed <-chan struct{}) {
	t.Helper()
	for i := 0; ; i++ {
		write(t, path, "node_id: ready"+string(rune('a'+i%26))+"\n")
		select {
		case <-changed:
			return
		case <-time.After(200 * time.Millisecond):
		}
		if i > 150 {
			t.Fatal("the watcher never reported an edit")
		}
	}
}

// TestWatchSeesAnEditorRenameReplace: editors save by writing a new file and renaming it over
// the old one; the directory watch sees the rename (with an hour's poll interval, only the
// event can report it).
func TestWatchSeesAnEditorRenameReplace(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "opsd.yaml")
	write(t, path, "node_id: a\n")
	changed := startWatch(t, path)
	watchReady(t, path, changed)
	tmp := filepath.Join(dir, ".opsd.yaml.swp")
	write(t, tmp, "node_id: b\n")
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	waitChange(t, changed, "a rename over the file")
	// Another rename-replace: the watch follows the new inode.
	write(t, tmp, "node_id: c\n")
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	waitChange(t, changed, "a second rename over the file")
}

// TestWatchSeesAConfigMapSymlinkSwap: a Kubernetes ConfigMap volume holds opsd.yaml ->
// ..data/opsd.yaml and ..data -> ..<timestamp>; an update writes a new timestamped directory
// and renames a new ..data symlink over the old one.
func TestWatchSeesAConfigMapSymlinkSwap(t *testing.T) {
	dir := t.TempDir()
	version := func(name, content string) {
		if err := os.Mkdir(filepath.Join(dir, name), 0o755); err != nil {
			t.Fatal(err)
		}
		write(t, filepath.Join(dir, name, "opsd.yaml"), content)
	}
	version("..2026_11_30_01", "node_id: a\n")
	if err := os.Symlink("..2026_11_30_01", filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "opsd.yaml")
	if err := os.Symlink("..data/opsd.yaml", path); err != nil {
		t.Fatal(err)
	}
	changed := startWatch(t, path)
	watchReady(t, filepath.Join(dir, "..2026_11_30_01", "opsd.yaml"), changed)
	for i, v := range []string{"..2026_11_30_02", "..2026_11_30_03"} {
		version(v, "node_id: v"+string(rune('0'+i))+"\n")
		if err := os.Symlink(v, filepath.Join(dir, "..data_tmp")); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
			t.Fatal(err)
		}
		waitChange(t, changed, "the ..data symlink swap to "+v)
	}
}

// TestWatchIgnoresOtherFiles: files beside the config do not count as changes, and a touch
// without a content change is not one.
func TestWatchIgnoresOtherFiles(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "opsd.yaml")
	write(t, path, "node_id: a\n")
	changed := startWatch(t, path)
	watchReady(t, path, changed)
	write(t, filepath.Join(dir, "other.yaml"), "x: 1\n")
	now := time.Now().Add(time.Minute)
	if err := os.Chtimes(path, now, now); err != nil {
		t.Fatal(err)
	}
	// A real edit after them is the next change reported.
	write(t, path, "node_id: final\n")
	waitChange(t, changed, "the edit")
	select {
	case <-changed:
		t.Fatal("a change reported for another file or a touch")
	case <-time.After(200 * time.Millisecond):
	}
}

// TestWatchReadsBurstsOfLongNames: the event buffer holds 16 events of the longest file name; a
// burst of many such events beside the file (read in several reads) must not hide the edit.
func TestWatchReadsBurstsOfLongNames(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "opsd.yaml")
	write(t, path, "node_id: a\n")
	changed := startWatch(t, path)
	watchReady(t, path, changed)
	for i := 0; i < 100; i++ {
		name := fmt.Sprintf("%03d%s", i, strings.Repeat("x", 252)) // 255 bytes, NAME_MAX
		write(t, filepath.Join(dir, name), "x\n")
	}
	write(t, path, "node_id: final\n")
	waitChange(t, changed, "the edit after 100 long-named files")
}
