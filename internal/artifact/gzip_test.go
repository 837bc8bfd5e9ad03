package artifact

import (
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"runtime"
	"testing"
	"time"
)

// TestGzipWriterRoundTrip: the parallel writer's output is one standard gzip member that
// compress/gzip decodes to the input, at every size around block and dictionary boundaries.
func TestGzipWriterRoundTrip(t *testing.T) {
	data := mixed()[:5<<20+777]
	for _, n := range []int{0, 1, gzipDict - 1, gzipDict, 64<<10 + 3, 1 << 20, 2<<20 - 1, 3 << 20, len(data)} {
		for _, level := range []int{1, 6} {
			var out bytes.Buffer
			z, err := newGzipWriter(&out, level, 64<<10*(1+n%3), 3)
			if err != nil {
				t.Fatal(err)
			}
			// Uneven writes.
			for p := data[:n]; len(p) > 0; {
				k := min(len(p), 1+len(p)%99991)
				if _, err := z.Write(p[:k]); err != nil {
					t.Fatal(err)
				}
				p = p[k:]
			}
			if err := z.Close(); err != nil {
				t.Fatal(err)
			}
			r, err := gzip.NewReader(&out)
			if err != nil {
				t.Fatalf("n=%d level=%d: %v", n, level, err)
			}
			r.Multistream(false)
			back, err := io.ReadAll(r)
			if err != nil || !bytes.Equal(back, data[:n]) {
				t.Fatalf("n=%d level=%d: decoded %d bytes (%v), want %d identical", n, level, len(back), err, n)
			}
			if out.Len() != 0 {
				t.Fatalf("n=%d: %d bytes after the gzip member", n, out.Len())
			}
		}
	}
}

type failWriter struct{ after int }

func (f *failWriter) Write(p []byte) (int, error) {
	if f.after -= len(p); f.after < 0 {
		return 0, errors.New("disk full")
	}
	return len(p), nil
}

// TestGzipWriterErrorsAndAbort: a failing destination fails Write or Close, and abort after a
// failed copy leaves no goroutine behind.
func TestGzipWriterErrorsAndAbort(t *testing.T) {
	before := runtime.NumGoroutine()
	data := mixed()[:4<<20]
	z, err := newGzipWriter(&failWriter{after: 100 << 10}, 1, 64<<10, 3)
	if err != nil {
		t.Fatal(err)
	}
	_, werr := z.Write(data)
	cerr := z.Close()
	if werr == nil && cerr == nil {
		t.Fatal("a failing destination: no error")
	}
	z2, _ := newGzipWriter(io.Discard, 1, 64<<10, 3)
	z2.Write(data[:200<<10])
	z2.abort()
	for i := 0; i < 100 && runtime.NumGoroutine() > before; i++ {
		time.Sleep(10 * time.Millisecond)
	}
	if g := runtime.NumGoroutine(); g > before {
		t.Fatalf("%d goroutines after abort, %d before", g, before)
	}
}
