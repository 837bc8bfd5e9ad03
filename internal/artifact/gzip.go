package artifact

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"runtime"
	"sync"

	"github.com/klauspost/compress/flate"

	"github.com/wopr-network/opsd/internal/membuf"
)

// gzipWriter compresses to a standard single-member .gz in parallel, from a fixed set of
// buffers: blocks of input are deflated independently by one worker per core (each primed with
// the previous block's last 32 KiB, as pgzip does, so the ratio stays close to a serial gzip),
// and the sync-flushed pieces are written in order, which makes one deflate stream. Memory is
// blocks x (block + its output) plus one compressor per worker, whatever the stream's size, and
// nothing is allocated per block once the buffers exist (no garbage for the GC to chase).
type gzipWriter struct {
	dst     io.Writer
	size    int
	free    chan *gzBlock // blocks to fill
	made    int           // blocks allocated so far
	max     int           // blocks at most
	jobs    chan *gzBlock // to the workers
	order   chan *gzBlock // to the writer goroutine, in stream order
	cur     *gzBlock
	tail    []byte // the last 32 KiB of input so far (the next block's dictionary)
	crc     uint32
	n       uint32
	wg      sync.WaitGroup
	written chan struct{} // closed when the writer goroutine is done
	mu      sync.Mutex
	err     error
	closed  bool
	all     []*gzBlock
}

// freeBlocks unmaps the blocks' memory; only once no goroutine uses them any more.
func (z *gzipWriter) freeBlocks() {
	for _, b := range z.all {
		membuf.Free(b.mem)
	}
	z.all = nil
}

type gzBlock struct {
	in   []byte
	dict []byte
	out  *bytes.Buffer
	mem  []byte // in, dict and out's initial buffer: one map outside the Go heap (membuf)
	last bool
	done chan error
}

const gzipDict = 32 << 10

// gzipLevel is the default deflate level of container exports: klauspost's level 1 costs about
// half the CPU of level 6 per byte and loses a few percent of ratio (measured in opsd-bench).
const gzipLevel = 1

// newGzipWriter starts the workers; level is a compress/flate level, blockSize the input per
// block (default 512 KiB), blocks the buffers in all (default: workers + 2).
func newGzipWriter(dst io.Writer, level, blockSize, blocks int) (*gzipWriter, error) {
	if blockSize <= 0 {
		blockSize = 512 << 10
	}
	if blockSize < gzipDict {
		return nil, errors.New("gzip block size below 32 KiB")
	}
	workers := runtime.GOMAXPROCS(0)
	if blocks <= 0 {
		blocks = workers + 2
	}
	if blocks < 2 {
		blocks = 2
	}
	workers = min(workers, blocks-1)
	if _, err := flate.NewWriter(io.Discard, level); err != nil {
		return nil, err
	}
	// Header: magic, deflate, no flags, no mtime, no extra flags, OS unknown.
	if _, err := dst.Write([]byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255}); err != nil {
		return nil, err
	}
	z := &gzipWriter{dst: dst, size: blockSize, free: make(chan *gzBlock, blocks), max: blocks,
		jobs: make(chan *gzBlock, blocks), order: make(chan *gzBlock, blocks), written: make(chan struct{}),
		tail: make([]byte, 0, gzipDict)}
	for i := 0; i < workers; i++ {
		z.wg.Add(1)
		go z.work(level)
	}
	go z.write()
	return z, nil
}

func (z *gzipWriter) work(level int) {
	defer z.wg.Done()
	fw, _ := flate.NewWriter(io.Discard, level)
	for b := range z.jobs {
		fw.ResetDict(b.out, b.dict)
		_, err := fw.Write(b.in)
		if err == nil {
			if b.last {
				err = fw.Close()
			} else {
				err = fw.Flush()
			}
		}
		b.done <- err
	}
}

// write sends the compressed blocks on in order and recycles them.
func (z *gzipWriter) write() {
	defer close(z.written)
	for b := range z.order {
		err := <-b.done
		if err == nil && z.failed() == nil {
			_, err = z.dst.Write(b.out.Bytes())
		}
		if err != nil {
			z.setErr(err)
		}
		b.in, b.dict, b.last = b.in[:0], b.dict[:0], false
		b.out.Reset()
		z.free <- b
	}
}

func (z *gzipWriter) setErr(err error) {
	z.mu.Lock()
	if z.err == nil {
		z.err = err
	}
	z.mu.Unlock()
}

func (z *gzipWriter) failed() error {
	z.mu.Lock()
	defer z.mu.Unlock()
	return z.err
}

// block returns an empty block, primed with the dictionary.
func (z *gzipWriter) block() *gzBlock {
	var b *gzBlock
	select {
	case b = <-z.free:
	default:
		if z.made < z.max {
			z.made++
			outCap := z.size + z.size/16 + 4096
			mem := membuf.Alloc(z.size + gzipDict + outCap)
			b = &gzBlock{mem: mem, in: mem[:0:z.size], dict: mem[z.size : z.size : z.size+gzipDict], done: make(chan error, 1)}
			b.out = bytes.NewBuffer(mem[z.size+gzipDict : z.size+gzipDict : len(mem)])
			z.all = append(z.all, b)
		} else {
			b = <-z.free
		}
	}
	b.dict = append(b.dict[:0], z.tail...)
	return b
}

// submit queues the current block for compression.
func (z *gzipWriter) submit(last bool) {
	b := z.cur
	z.cur = nil
	b.last = last
	if k := len(b.in); k >= gzipDict {
		z.tail = append(z.tail[:0], b.in[k-gzipDict:]...)
	} else {
		z.tail = append(z.tail, b.in...)
		if extra := len(z.tail) - gzipDict; extra > 0 {
			z.tail = append(z.tail[:0], z.tail[extra:]...)
		}
	}
	z.order <- b
	z.jobs <- b
}

// Write compresses p.
func (z *gzipWriter) Write(p []byte) (int, error) {
	if err := z.failed(); err != nil {
		return 0, err
	}
	if z.closed {
		return 0, errors.New("gzip: write after close")
	}
	z.crc = crc32.Update(z.crc, crc32.IEEETable, p)
	z.n += uint32(len(p))
	n := len(p)
	for len(p) > 0 {
		if z.cur == nil {
			z.cur = z.block()
		}
		k := min(len(p), z.size-len(z.cur.in))
		z.cur.in = append(z.cur.in, p[:k]...)
		p = p[k:]
		if len(z.cur.in) == z.size {
			z.submit(false)
		}
	}
	return n, nil
}

// abort stops the workers without finishing the stream (after a failed copy); no-op after Close.
func (z *gzipWriter) abort() {
	if z.closed {
		return
	}
	z.closed = true
	z.setErr(errors.New("gzip: aborted"))
	if z.cur != nil {
		z.free <- z.cur
		z.cur = nil
	}
	close(z.jobs)
	close(z.order)
	<-z.written
	z.wg.Wait()
	z.freeBlocks()
}

// Close writes the last block and the trailer, and stops the workers.
func (z *gzipWriter) Close() error {
	if z.closed {
		return z.failed()
	}
	z.closed = true
	if z.cur == nil {
		z.cur = z.block()
	}
	z.submit(true)
	close(z.jobs)
	close(z.order)
	<-z.written
	z.wg.Wait()
	z.freeBlocks()
	if err := z.failed(); err != nil {
		return err
	}
	var t [8]byte
	binary.LittleEndian.PutUint32(t[:4], z.crc)
	binary.LittleEndian.PutUint32(t[4:], z.n)
	_, err := z.dst.Write(t[:])
	return err
}
