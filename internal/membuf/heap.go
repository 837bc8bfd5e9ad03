package membuf

import (
	"runtime/debug"
	rtmetrics "runtime/metrics"
	"sync"
)

// releaseAfter is how much a process must have allocated since memory was last returned to the OS
// before the end of its runs returns it again: start-up and any backup pass it, a heartbeat ping
// (tens of KB) does not, so an idle daemon does not collect after every small run.
const releaseAfter = 4 << 20

// Releaser returns the heap the daemon freed to the OS once start-up is over and whenever its
// last run in progress ends, if enough was allocated since the previous time. Without it the
// garbage of start-up and of the runs at start (config parsing, the first queries, an export's
// compressors) stays resident until Go's next GC, which an idle heap reaches only by the forced
// collection every 2 minutes, and the scavenger then hands it back slowly.
type Releaser struct {
	mu     sync.Mutex
	last   uint64 // /gc/heap/allocs:bytes when memory was last returned
	min    uint64
	allocs func() uint64
	free   func() // debug.FreeOSMemory: a GC, then every free page back to the OS
}

// NewReleaser returns a Releaser that returns memory once 4 MiB were allocated since the last time.
func NewReleaser() *Releaser {
	return &Releaser{min: releaseAfter, allocs: heapAllocs, free: debug.FreeOSMemory}
}

// heapAllocs returns the bytes allocated on the heap since the process started.
func heapAllocs() uint64 {
	s := []rtmetrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	rtmetrics.Read(s)
	if s[0].Value.Kind() != rtmetrics.KindUint64 {
		return 0
	}
	return s[0].Value.Uint64()
}

// Release returns freed memory to the OS if at least min bytes were allocated since the last
// time, and reports whether it did.
func (r *Releaser) Release() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if a := r.allocs(); a-r.last < r.min {
		return false
	}
	r.free()
	r.last = r.allocs()
	return true
}
