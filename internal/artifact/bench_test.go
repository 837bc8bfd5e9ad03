package artifact

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/wopr-network/opsd/internal/storage"
)

// discard is a store that reads and drops every upload: it isolates the pipeline's own cost.
type discard struct{}

func (discard) Put(ctx context.Context, key string, r io.Reader, o storage.PutOptions) (storage.ObjectInfo, error) {
	n, err := io.Copy(io.Discard, r)
	return storage.ObjectInfo{Key: key, Size: n}, err
}
func (discard) Get(context.Context, string) (io.ReadCloser, storage.ObjectInfo, error) {
	return nil, storage.ObjectInfo{}, storage.ErrNotFound
}
func (discard) Stat(context.Context, string) (storage.ObjectInfo, error) {
	return storage.ObjectInfo{}, storage.ErrNotFound
}
func (discard) List(context.Context, string, func(storage.ObjectInfo) error) error { return nil }
func (discard) Delete(context.Context, string) error                               { return nil }
func (discard) Copy(context.Context, string, string) (storage.ObjectInfo, error) {
	return storage.ObjectInfo{}, nil
}
func (discard) AbortIncompleteUploads(context.Context, string, time.Duration) (int, error) {
	return 0, nil
}
func (discard) String() string { return "discard" }

// mixed is 32 MiB of half random, half repetitive data (like container filesystems).
func mixed() []byte {
	b := make([]byte, 32<<20)
	r := rand.New(rand.NewPCG(3, 4))
	for i := 0; i < len(b); i++ {
		if (i>>20)%2 == 0 {
			b[i] = byte(r.Uint32())
		} else {
			b[i] = byte(i % 251)
		}
	}
	return b
}

type sliceReader struct {
	b []byte
	i int
}

func (s *sliceReader) Read(p []byte) (int, error) {
	if s.i >= len(s.b) {
		return 0, io.EOF
	}
	n := copy(p, s.b[s.i:])
	s.i += n
	return n, nil
}

func benchUpload(b *testing.B, o Options) {
	data := mixed()
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := Upload(context.Background(), discard{}, "k", &sliceReader{b: data}, o); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkUploadNone is the pipeline with hashing only.
func BenchmarkUploadNone(b *testing.B) { benchUpload(b, Options{Compression: None}) }

// BenchmarkUploadGzip is the container export's parallel gzip path.
func BenchmarkUploadGzip(b *testing.B) { benchUpload(b, Options{Compression: Gzip}) }

// BenchmarkUploadZstd is the zstd option.
func BenchmarkUploadZstd(b *testing.B) { benchUpload(b, Options{Compression: Zstd}) }

// BenchmarkSHA256Counter is the hashing every upload does on the way.
func BenchmarkSHA256Counter(b *testing.B) {
	data := mixed()
	b.SetBytes(int64(len(data)))
	for i := 0; i < b.N; i++ {
		c := newCounter()
		c.Write(data)
		_ = c.sum()
	}
}

// BenchmarkGzipLevels compares deflate levels of the parallel writer (CPU per byte and ratio).
func BenchmarkGzipLevels(b *testing.B) {
	data := mixed()
	for _, level := range []int{1, 2, 3, 6} {
		b.Run(fmt.Sprintf("level%d", level), func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			var n int64
			for i := 0; i < b.N; i++ {
				c := &countW{}
				z, _ := newGzipWriter(c, level, 0, 0)
				z.Write(data)
				z.Close()
				n = c.n
			}
			b.ReportMetric(float64(n)/float64(len(data)), "ratio")
		})
	}
}

type countW struct{ n int64 }

func (c *countW) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }
