package artifact_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wopr-network/opsd/internal/artifact"
	"github.com/wopr-network/opsd/internal/storage"
	"github.com/wopr-network/opsd/internal/storage/local"
)

// zerosGzip is n zero bytes, gzipped (a few KiB per MiB: what a decompression bomb is made of).
func zerosGzip(t *testing.T, dir string, n int) string {
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	zw.Write(make([]byte, n))
	zw.Close()
	p := filepath.Join(dir, "stored.gz")
	if err := os.WriteFile(p, b.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestDecodeFileBoundedByRawSize: an artifact decodes to at most the raw size its manifest
// states: a stored object that decompresses to more (a gzip bomb under an honest-looking
// manifest) fails with ErrChecksum and leaves no decoded file; a manifest whose raw size does
// not fit the free space of the destination is refused before a byte is written. Both decoded
// the whole stream to disk until the disk filled.
func TestDecodeFileBoundedByRawSize(t *testing.T) {
	dir := t.TempDir()
	from := zerosGzip(t, dir, 8<<20)
	to := filepath.Join(dir, "decoded")
	m := artifact.Manifest{Key: "nightly/n/db/bomb.db.gz", Compression: artifact.Gzip, RawSize: 1 << 20}
	err := artifact.DecodeFile(from, to, m, nil)
	if err == nil || !errors.Is(err, artifact.ErrChecksum) || !strings.Contains(err.Error(), m.Key) {
		t.Errorf("8 MiB under a manifest of 1 MiB: %v", err)
	}
	if _, serr := os.Stat(to); serr == nil {
		t.Error("the decoded file of a refused artifact was left")
	}
	m.RawSize = 1 << 62
	err = artifact.DecodeFile(from, to, m, nil)
	if err == nil || !strings.Contains(err.Error(), "free") {
		t.Errorf("a raw size beyond the free space: %v", err)
	}
	if _, serr := os.Stat(to); serr == nil {
		t.Error("the decoded file of a refused artifact was left")
	}
	m.RawSize = 8 << 20
	if err := artifact.DecodeFile(from, to, m, nil); err != nil {
		t.Fatalf("the honest manifest: %v", err)
	}
	if st, err := os.Stat(to); err != nil || st.Size() != 8<<20 {
		t.Fatalf("decoded: %v %v", st, err)
	}
}

// TestDownloadVerifiedRefusesBeforeCopying: an object whose size is not its manifest's is
// refused before a byte is copied (a huge object under a small manifest filled the disk first,
// then failed the checksum), and so is a manifest whose size does not fit the free space.
func TestDownloadVerifiedRefusesBeforeCopying(t *testing.T) {
	ctx := context.Background()
	store, _ := local.New(t.TempDir())
	key := "nightly/n/db/big.db"
	if _, err := store.Put(ctx, key, bytes.NewReader(make([]byte, 4<<20)), storage.PutOptions{Size: 4 << 20}); err != nil {
		t.Fatal(err)
	}
	to := filepath.Join(t.TempDir(), "download")
	for _, size := range []int64{1 << 10, 1 << 62} {
		var copied int64
		err := artifact.DownloadVerified(ctx, store, artifact.Manifest{Key: key, Size: size, SHA256: "00"}, to, func(done, _ int64) { copied = done })
		if err == nil || copied != 0 || !strings.Contains(err.Error(), key) || (size == 1<<62 && !strings.Contains(err.Error(), "free")) {
			t.Errorf("manifest size %d: %d bytes copied, err = %v", size, copied, err)
		}
		if _, serr := os.Stat(to); serr == nil {
			t.Errorf("manifest size %d: the download was left", size)
		}
	}
}

// TestDecodeBoundWithoutRawSize: a compressed artifact whose manifest has no content size (0 or
// negative) decodes to nothing more: a manifest cannot switch the bound off.
func TestDecodeBoundWithoutRawSize(t *testing.T) {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(bytes.Repeat([]byte("x"), 1<<20))
	zw.Close()
	for _, raw := range []int64{0, -5} {
		rc, err := artifact.Decode(bytes.NewReader(buf.Bytes()), artifact.Manifest{Key: "k", Compression: artifact.Gzip, RawSize: raw}, nil, io.NopCloser(nil))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, rc); !errors.Is(err, artifact.ErrChecksum) {
			t.Fatalf("rawSize %d: decoded without a bound: %v", raw, err)
		}
	}
}
