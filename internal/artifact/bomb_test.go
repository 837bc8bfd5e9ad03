package artifact_test

import (
	"bytes"
	"compress/gzip"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wopr-network/opsd/internal/artifact"
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
