package s3

import (
	"context"
	"sync"

	"github.com/wopr-network/opsd/internal/membuf"
)

// chunkSize is the unit the upload budget is handed out in: a part is a list of chunks, so parts
// of any size (and of different sizes) come out of one fixed set of buffers.
const chunkSize = 1 << 20

// budget is the memory every upload of a store shares: a fixed number of chunk credits and a free
// list of the chunks themselves. A part acquires the credits for all of its chunks before it
// starts filling, so uploads running side by side can never each hold half a part and wait for
// the rest (no deadlock), and the bytes held never exceed the budget, whatever the stream's size.
// Chunks are allocated on first use, outside the Go heap (membuf: the GC's headroom never
// doubles them), and kept for the next part; when the last upload ends their pages go back to
// the system (they stay mapped: a transport still holding a part's reader reads zeros, never
// freed memory), so an idle daemon holds none of them.
type budget struct {
	mu     sync.Mutex
	limit  int // credits (chunks)
	used   int // credits taken
	wake   chan struct{}
	free   [][]byte
	made   int // chunks that exist (held by parts or in the free list; never freed)
	active int // uploads running
	peak   int // most chunks that existed at once
}

func newBudget(bytes int64) *budget {
	n := int(bytes / chunkSize)
	if n < 1 {
		n = 1
	}
	return &budget{limit: n, wake: make(chan struct{})}
}

// acquire takes n credits, waiting until they are free or ctx ends.
func (b *budget) acquire(ctx context.Context, n int) error {
	if n > b.limit {
		n = b.limit // a caller never asks for more than a part, which fits (see partChunks)
	}
	for {
		b.mu.Lock()
		if b.used+n <= b.limit {
			b.used += n
			b.mu.Unlock()
			return nil
		}
		wake := b.wake
		b.mu.Unlock()
		select {
		case <-wake:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// release returns n credits.
func (b *budget) release(n int) {
	if n <= 0 {
		return
	}
	b.mu.Lock()
	b.used -= n
	close(b.wake)
	b.wake = make(chan struct{})
	b.mu.Unlock()
}

// chunk returns a chunk; the caller holds a credit for it.
func (b *budget) chunk() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	if n := len(b.free); n > 0 {
		c := b.free[n-1]
		b.free[n-1] = nil
		b.free = b.free[:n-1]
		return c
	}
	b.made++
	b.peak = max(b.peak, b.made)
	return membuf.Alloc(chunkSize)
}

// putChunks returns chunks to the free list (their credits are released separately).
func (b *budget) putChunks(cs [][]byte) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.free = append(b.free, cs...)
	if b.active == 0 {
		for _, c := range cs {
			membuf.Release(c)
		}
	}
}

// begin and end bracket an upload; the free list is dropped when no upload runs.
func (b *budget) begin() {
	b.mu.Lock()
	b.active++
	b.mu.Unlock()
}

func (b *budget) end() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.active--
	if b.active == 0 {
		for _, c := range b.free {
			membuf.Release(c)
		}
	}
}

// stats returns the most bytes of chunks that existed at once and the budget, in bytes.
func (b *budget) stats() (peak, limit int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return int64(b.peak) * chunkSize, int64(b.limit) * chunkSize
}
