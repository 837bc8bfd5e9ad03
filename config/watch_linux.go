package config

import (
	"os"
	"path/filepath"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// watchMask is every change to a directory entry, and a file written and closed. Not IN_MODIFY:
// a file kept open and written (a database, a log beside the config) would wake the watcher at
// every write, and an edit ends with a close.
const watchMask = unix.IN_CREATE | unix.IN_DELETE | unix.IN_CLOSE_WRITE | unix.IN_MOVED_FROM |
	unix.IN_MOVED_TO | unix.IN_DELETE_SELF | unix.IN_MOVE_SELF

// watchEvents watches, with inotify, the directory holding path and the one holding the file it
// resolves to (directories, not the file: editors save by renaming a new file over the old one,
// and a Kubernetes ConfigMap volume swaps its `..data` symlink). The channel receives a value
// when an entry of interest changes (the file's names, or a `..`-prefixed entry of the
// ConfigMap's atomic writer) and is closed if the events stop; stop releases the watch. Nil
// when inotify cannot be set up (the caller polls).
//
// inotify comes from golang.org/x/sys/unix, already a dependency, rather than fsnotify: one
// directory watch with a name filter needs no more than this.
func watchEvents(path string) (<-chan struct{}, func()) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, nil
	}
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return nil, nil
	}
	f := os.NewFile(uintptr(fd), "inotify") // non-blocking: Read waits in the poller, Close ends it
	names := map[string]bool{}
	watched := map[string]bool{}
	// update watches the directories of the path and of its current target: a symlink swap
	// can move the target.
	update := func() bool {
		dirs := []string{filepath.Dir(abs)}
		names[filepath.Base(abs)] = true
		if real, err := filepath.EvalSymlinks(abs); err == nil {
			dirs = append(dirs, filepath.Dir(real))
			names[filepath.Base(real)] = true
		}
		ok := false
		for _, d := range dirs {
			if watched[d] {
				ok = true
				continue
			}
			if _, err := unix.InotifyAddWatch(fd, d, watchMask); err == nil {
				watched[d], ok = true, true
			}
		}
		return ok
	}
	if !update() {
		f.Close()
		return nil, nil
	}
	ch := make(chan struct{}, 1)
	go func() {
		defer close(ch)
		// Whole events only, each at most a header and NAME_MAX+1 bytes of name: 16 per read.
		buf := make([]byte, 16*(unix.SizeofInotifyEvent+unix.NAME_MAX+1))
		for {
			n, err := f.Read(buf)
			if err != nil {
				return
			}
			relevant := false
			for off := 0; off+unix.SizeofInotifyEvent <= n; {
				ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
				name := strings.TrimRight(string(buf[off+unix.SizeofInotifyEvent:off+unix.SizeofInotifyEvent+int(ev.Len)]), "\x00")
				off += unix.SizeofInotifyEvent + int(ev.Len)
				if ev.Mask&unix.IN_IGNORED != 0 {
					// The directory went away (or moved): watch it again if it comes back.
					for d := range watched {
						delete(watched, d)
					}
					relevant = true
					continue
				}
				if name == "" || names[name] || strings.HasPrefix(name, "..") || ev.Mask&unix.IN_Q_OVERFLOW != 0 {
					relevant = true
				}
			}
			if relevant {
				update()
				select {
				case ch <- struct{}{}:
				default:
				}
			}
		}
	}()
	return ch, func() { f.Close() }
}
