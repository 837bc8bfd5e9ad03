package metrics

import (
	"bytes"
	"compress/flate"
	"hash/crc32"
	"io"
	"sync"
)

// pageSize is how many series a compressed page of a cached family holds: a change re-compresses
// one page, and a scrape copies the others as they are.
var pageSize = 256

// zpage is a piece of the text exposition compressed on its own: deflate blocks ending with a
// sync flush (byte-aligned, not final) whose back-references stay inside it, so pieces can be
// laid one after another in a single deflate stream.
type zpage struct {
	ok  bool
	z   []byte
	crc uint32 // CRC-32 of the text
	op  uint32 // x^(8·len) mod P: shifts a CRC over the text's length (crc32Combine)
	n   int    // length of the text
}

var flatePool = sync.Pool{New: func() any {
	w, _ := flate.NewWriter(nil, flate.BestSpeed)
	return w
}}

// compress makes z a compressed page of text.
func (z *zpage) compress(text []byte) {
	var b bytes.Buffer
	fw := flatePool.Get().(*flate.Writer)
	fw.Reset(&b)
	fw.Write(text)
	fw.Flush()
	fw.Reset(nil)
	flatePool.Put(fw)
	z.z, z.crc, z.op, z.n, z.ok = b.Bytes(), crc32.ChecksumIEEE(text), x2nmodp(int64(len(text)), 3), len(text), true
}

// gzipStream writes a gzip member made of text compressed as it comes and of pre-compressed
// pages: before a page, the running compressor is flushed and reset, so no back-reference
// crosses a page boundary. The CRC-32 of the whole text is combined from the pages' CRCs.
type gzipStream struct {
	w     io.Writer
	fw    *flate.Writer
	dirty bool // fw holds text written since its last reset
	crc   uint32
	n     int64
	err   error
}

// gzipHeader is a gzip member header: deflate, no name, no time, unknown OS.
var gzipHeader = []byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255}

func newGzipStream(w io.Writer) *gzipStream {
	g := &gzipStream{w: w, fw: flatePool.Get().(*flate.Writer)}
	g.fw.Reset(w)
	_, g.err = w.Write(gzipHeader)
	return g
}

// Write compresses text.
func (g *gzipStream) Write(p []byte) (int, error) {
	if g.err != nil {
		return 0, g.err
	}
	g.crc = crc32.Update(g.crc, crc32.IEEETable, p)
	g.n += int64(len(p))
	g.dirty = true
	n, err := g.fw.Write(p)
	g.err = err
	return n, err
}

// page appends a pre-compressed page.
func (g *gzipStream) page(z *zpage) error {
	if g.err != nil {
		return g.err
	}
	if g.dirty {
		if g.err = g.fw.Flush(); g.err != nil {
			return g.err
		}
		g.fw.Reset(g.w)
		g.dirty = false
	}
	if _, g.err = g.w.Write(z.z); g.err != nil {
		return g.err
	}
	g.crc = multmodp(z.op, g.crc) ^ z.crc
	g.n += int64(z.n)
	return nil
}

// Close ends the deflate stream with an empty final block and writes the gzip trailer; the
// compressor goes back to its pool.
func (g *gzipStream) Close() error {
	defer func() {
		g.fw.Reset(nil)
		flatePool.Put(g.fw)
	}()
	if g.err != nil {
		return g.err
	}
	if g.dirty {
		if g.err = g.fw.Flush(); g.err != nil {
			return g.err
		}
	}
	t := []byte{0x03, 0x00, // final fixed-Huffman block holding only end-of-block
		byte(g.crc), byte(g.crc >> 8), byte(g.crc >> 16), byte(g.crc >> 24),
		byte(g.n), byte(g.n >> 8), byte(g.n >> 16), byte(g.n >> 24)}
	_, g.err = g.w.Write(t)
	return g.err
}

// CRC-32 arithmetic modulo the IEEE polynomial (reflected), as zlib's crc32_combine: the CRC of
// A followed by B is multmodp(x^(8·len(B)), crc(A)) ^ crc(B).
const crcPoly = 0xedb88320

func multmodp(a, b uint32) uint32 {
	m, p := uint32(1)<<31, uint32(0)
	for {
		if a&m != 0 {
			p ^= b
			if a&(m-1) == 0 {
				break
			}
		}
		m >>= 1
		if b&1 != 0 {
			b = b>>1 ^ crcPoly
		} else {
			b >>= 1
		}
	}
	return p
}

var x2nTable = func() [32]uint32 {
	var t [32]uint32
	p := uint32(1) << 30 // x^1
	t[0] = p
	for n := 1; n < 32; n++ {
		p = multmodp(p, p)
		t[n] = p
	}
	return t
}()

// x2nmodp returns x^(n·2^k) modulo the polynomial.
func x2nmodp(n int64, k uint) uint32 {
	p := uint32(1) << 31 // x^0
	for n != 0 {
		if n&1 != 0 {
			p = multmodp(x2nTable[k&31], p)
		}
		n >>= 1
		k++
	}
	return p
}
