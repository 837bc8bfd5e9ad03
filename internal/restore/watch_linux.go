package restore

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// WatchLocks calls wake whenever a restore's liveness lock (state.db.restore-ID.lock,
// created by state.StartRestore in whichever process restores) appears beside the state
// database, until ctx ends. The function it returns reports whether the watch still holds (the
// directory was not removed or moved); it is nil when inotify cannot be set up. Either way the
// caller polls instead. A restore that starts is seen at once; one that is running is then
// polled until its lock is gone (finished, or marked interrupted): a lock released by a process
// that died raises no event of its own.
func WatchLocks(ctx context.Context, statePath string, wake func()) (watching func() bool) {
	dir := filepath.Dir(statePath)
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return nil
	}
	f := os.NewFile(uintptr(fd), "inotify") // non-blocking: Read waits in the poller, Close ends it
	if _, err := unix.InotifyAddWatch(fd, dir, unix.IN_CREATE|unix.IN_MOVED_TO); err != nil {
		f.Close()
		return nil
	}
	var alive atomic.Bool
	alive.Store(true)
	go func() {
		<-ctx.Done()
		f.Close()
	}()
	go func() {
		defer alive.Store(false)
		defer wake()
		buf := make([]byte, 16*(unix.SizeofInotifyEvent+unix.NAME_MAX+1)) // 16 events of the longest name
		for {
			n, err := f.Read(buf)
			if err != nil {
				return
			}
			for off := 0; off+unix.SizeofInotifyEvent <= n; {
				ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
				name := strings.TrimRight(string(buf[off+unix.SizeofInotifyEvent:off+unix.SizeofInotifyEvent+int(ev.Len)]), "\x00")
				off += unix.SizeofInotifyEvent + int(ev.Len)
				if ev.Mask&unix.IN_IGNORED != 0 {
					return // the directory is gone: poll
				}
				if ev.Mask&unix.IN_Q_OVERFLOW != 0 || isLockName(statePath, name) {
					wake()
				}
			}
		}
	}()
	return alive.Load
}
