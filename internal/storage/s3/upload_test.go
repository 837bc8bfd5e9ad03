package s3_test

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/wopr-network/opsd/internal/storage"
	s3store "github.com/wopr-network/opsd/internal/storage/s3"
	"github.com/wopr-network/opsd/internal/storage/storagetest"
)

// TestSeaweedFSVerifiesCRC32C: the real engine checks the x-amz-checksum-crc32c header opsd sends
// instead of Content-MD5: a wrong one fails the upload (multipart and single PUT) and leaves
// nothing at the key; right ones make the store settle on CRC32C.
func TestSeaweedFSVerifiesCRC32C(t *testing.T) {
	cfg := storagetest.RealS3(t)
	ctx := context.Background()
	bad := storagetest.NewS3(t, cfg)
	s3store.CorruptChecksums(bad)
	for _, tc := range []struct {
		name string
		size int64
	}{{"multipart", 12 << 20}, {"single", 100 << 10}} {
		key := "crc/bad-" + tc.name
		_, err := bad.Put(ctx, key, storagetest.Stream(7, tc.size), storage.PutOptions{Size: -1})
		var resp minio.ErrorResponse
		if !errors.As(err, &resp) || resp.Code != "BadDigest" {
			t.Fatalf("%s upload with a wrong CRC32C: got %v, want the store's BadDigest", tc.name, err)
		}
		if _, err := bad.Stat(ctx, key); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("%s: after the refused upload: stat: %v, want not found", tc.name, err)
		}
	}
	good := storagetest.NewS3(t, cfg)
	data := make([]byte, 11<<20+123)
	io.ReadFull(storagetest.Stream(8, int64(len(data))), data)
	if _, err := good.Put(ctx, "crc/good", bytes.NewReader(data), storage.PutOptions{Size: -1}); err != nil {
		t.Fatal(err)
	}
	if got := s3store.Integrity(good); got != "crc32c" {
		t.Fatalf("integrity header: %q, want crc32c (SeaweedFS confirms it)", got)
	}
	rc, _, err := good.Get(ctx, "crc/good")
	if err != nil {
		t.Fatal(err)
	}
	back, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(back, data) {
		t.Fatalf("read back %d bytes (%v), want the %d sent", len(back), err, len(data))
	}
}

// TestStoreWithoutChecksumsFallsBackToMD5: a store that ignores x-amz-checksum-* (the in-process
// server) gets Content-MD5 on every part, and the object is still complete.
func TestStoreWithoutChecksumsFallsBackToMD5(t *testing.T) {
	f := storagetest.NewFakeS3(t)
	s := storagetest.NewS3(t, f.Config)
	ctx := context.Background()
	data := make([]byte, 13<<20)
	io.ReadFull(storagetest.Stream(9, int64(len(data))), data)
	if _, err := s.Put(ctx, "md5/obj", bytes.NewReader(data), storage.PutOptions{Size: -1}); err != nil {
		t.Fatal(err)
	}
	if got := s3store.Integrity(s); got != "md5" {
		t.Fatalf("integrity header: %q, want md5", got)
	}
	rc, _, err := s.Get(ctx, "md5/obj")
	if err != nil {
		t.Fatal(err)
	}
	back, _ := io.ReadAll(rc)
	rc.Close()
	if !bytes.Equal(back, data) {
		t.Fatalf("read back %d bytes, want the %d sent", len(back), len(data))
	}
}

// discardS3 is a minimal S3 endpoint that verifies and drops every part (CRC32C echoed, like
// AWS), so multi-GiB streams cost no memory or disk on the server's side.
type discardS3 struct {
	mu       sync.Mutex
	parts    int
	received int64
}

func (d *discardS3) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	switch {
	case r.Method == http.MethodHead:
		w.WriteHeader(http.StatusOK) // bucket exists
	case r.Method == http.MethodPost && q.Has("uploads"):
		fmt.Fprint(w, `<InitiateMultipartUploadResult><Bucket>b</Bucket><Key>k</Key><UploadId>u1</UploadId></InitiateMultipartUploadResult>`)
	case r.Method == http.MethodPut:
		c := crc32.New(crc32.MakeTable(crc32.Castagnoli))
		n, err := io.Copy(c, r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], c.Sum32())
		sum := base64.StdEncoding.EncodeToString(b[:])
		if want := r.Header.Get("X-Amz-Checksum-Crc32c"); want != sum {
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprint(w, `<Error><Code>BadDigest</Code></Error>`)
			return
		}
		d.mu.Lock()
		d.parts++
		d.received += n
		d.mu.Unlock()
		w.Header().Set("X-Amz-Checksum-Crc32c", sum)
		w.Header().Set("ETag", `"x"`)
	case r.Method == http.MethodPost && q.Has("uploadId"):
		var req struct {
			Parts []struct{ ChecksumCRC32C string } `xml:"Part"`
		}
		body, _ := io.ReadAll(r.Body)
		xml.Unmarshal(body, &req)
		c := crc32.New(crc32.MakeTable(crc32.Castagnoli))
		for _, p := range req.Parts {
			b, _ := base64.StdEncoding.DecodeString(p.ChecksumCRC32C)
			c.Write(b)
		}
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], c.Sum32())
		fmt.Fprintf(w, `<CompleteMultipartUploadResult><Bucket>b</Bucket><Key>k</Key><ETag>"x-%d"</ETag><ChecksumCRC32C>%s-%d</ChecksumCRC32C></CompleteMultipartUploadResult>`,
			len(req.Parts), base64.StdEncoding.EncodeToString(b[:]), len(req.Parts))
	case r.Method == http.MethodDelete:
		w.WriteHeader(http.StatusNoContent)
	default:
		http.Error(w, "unexpected "+r.Method+" "+r.URL.String(), http.StatusBadRequest)
	}
}

// zeros is a cheap endless stream.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// TestUploadBufferBudget: three uploads of unknown length running at once, 3 GiB in all, never
// hold more part buffers than the store's budget (counted by the budget itself, not timed).
func TestUploadBufferBudget(t *testing.T) {
	if testing.Short() {
		t.Skip("streams 3 GiB")
	}
	d := &discardS3{}
	srv := httptest.NewServer(d)
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	const budget = 20 << 20
	s, err := s3store.New(ctx, s3store.Config{Endpoint: strings.TrimPrefix(srv.URL, "http://"), Region: "us-east-1", Bucket: "bucket",
		AccessKey: "a", SecretKey: "s", PartSize: 5 << 20, Parallel: 4, UploadMemory: budget})
	if err != nil {
		t.Fatal(err)
	}
	const each = 1 << 30
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			info, err := s.Put(ctx, fmt.Sprintf("big/%d", i), io.LimitReader(zeros{}, each), storage.PutOptions{Size: -1})
			if err == nil && info.Size != each {
				err = fmt.Errorf("stored %d bytes, want %d", info.Size, each)
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	peak, limit := s.UploadStats()
	if limit != budget {
		t.Fatalf("budget %d, want %d", limit, budget)
	}
	if peak > limit || peak == 0 {
		t.Fatalf("part buffers peaked at %d bytes, budget %d", peak, limit)
	}
	if d.received != 3*each {
		t.Fatalf("server received %d bytes, want %d", d.received, 3*each)
	}
	t.Logf("peak %d MiB of part buffers for 3 x %d GiB, budget %d MiB, %d parts", peak>>20, each>>30, limit>>20, d.parts)
}

// rejectingS3 refuses x-amz-checksum-* headers with 400 InvalidArgument (as some S3-compatible
// stores do) and verifies Content-MD5; it keeps the object to read back.
type rejectingS3 struct {
	mu    sync.Mutex
	parts map[string][]byte
	obj   []byte
}

func (f *rejectingS3) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	for k := range r.Header {
		if strings.HasPrefix(strings.ToLower(k), "x-amz-checksum-") {
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprint(w, `<Error><Code>InvalidArgument</Code><Message>x-amz-checksum not supported</Message></Error>`)
			return
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case r.Method == http.MethodHead:
		w.WriteHeader(http.StatusOK)
	case r.Method == http.MethodPost && q.Has("uploads"):
		f.parts = map[string][]byte{}
		fmt.Fprint(w, `<InitiateMultipartUploadResult><Bucket>bucket</Bucket><Key>k</Key><UploadId>u1</UploadId></InitiateMultipartUploadResult>`)
	case r.Method == http.MethodPut:
		body, _ := io.ReadAll(r.Body)
		sum := md5.Sum(body)
		if r.Header.Get("Content-Md5") != base64.StdEncoding.EncodeToString(sum[:]) {
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprint(w, `<Error><Code>BadDigest</Code></Error>`)
			return
		}
		if q.Has("partNumber") {
			f.parts[q.Get("partNumber")] = body
		} else {
			f.obj = body
		}
		w.Header().Set("ETag", `"`+hex.EncodeToString(sum[:])+`"`)
	case r.Method == http.MethodPost && q.Has("uploadId"):
		all := md5.New()
		f.obj = nil
		for i := 1; i <= len(f.parts); i++ {
			p := f.parts[fmt.Sprint(i)]
			s := md5.Sum(p)
			all.Write(s[:])
			f.obj = append(f.obj, p...)
		}
		fmt.Fprintf(w, `<CompleteMultipartUploadResult><Bucket>bucket</Bucket><Key>k</Key><ETag>"%s-%d"</ETag></CompleteMultipartUploadResult>`, hex.EncodeToString(all.Sum(nil)), len(f.parts))
	case r.Method == http.MethodDelete:
		w.WriteHeader(http.StatusNoContent)
	default:
		http.Error(w, "unexpected "+r.Method+" "+r.URL.String(), http.StatusBadRequest)
	}
}

// TestStoreRefusingChecksumsGetsMD5: a store that refuses the checksum headers (400) gets the
// upload with Content-MD5 instead, multipart and single PUT, byte-exact.
func TestStoreRefusingChecksumsGetsMD5(t *testing.T) {
	for _, size := range []int64{11<<20 + 5, 300 << 10} {
		f := &rejectingS3{}
		srv := httptest.NewServer(f)
		ctx := context.Background()
		s, err := s3store.New(ctx, s3store.Config{Endpoint: strings.TrimPrefix(srv.URL, "http://"), Region: "us-east-1", Bucket: "bucket",
			AccessKey: "a", SecretKey: "s", PartSize: 5 << 20, MaxRetries: 1})
		if err != nil {
			t.Fatal(err)
		}
		data := make([]byte, size)
		io.ReadFull(storagetest.Stream(11, size), data)
		if _, err := s.Put(ctx, "k", bytes.NewReader(data), storage.PutOptions{Size: -1}); err != nil {
			t.Fatalf("%d bytes: %v", size, err)
		}
		if got := s3store.Integrity(s); got != "md5" {
			t.Fatalf("%d bytes: integrity header %q, want md5", size, got)
		}
		if !bytes.Equal(f.obj, data) {
			t.Fatalf("%d bytes: the store holds %d bytes, not the ones sent", size, len(f.obj))
		}
		srv.Close()
	}
}
