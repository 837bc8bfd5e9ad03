package artifact

import (
	"archive/tar"
	"bytes"
	"strings"
	"testing"
)

func tarOf(t *testing.T, files ...string) ([]byte, []int) {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	var ends []int // offset after each file's data (a header boundary)
	for _, f := range files {
		if err := tw.WriteHeader(&tar.Header{Name: f, Mode: 0o644, Size: int64(len(f) * 100)}); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(strings.Repeat(f, 100)))
		tw.Flush()
		ends = append(ends, b.Len())
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes(), ends
}

func TestVerifyTarRequiresEndMarker(t *testing.T) {
	full, ends := tarOf(t, "a.txt", "b.txt", "c.txt")
	if n, err := VerifyTar(bytes.NewReader(full)); err != nil || n != 3 {
		t.Fatalf("complete archive: %d entries, %v", n, err)
	}
	// GNU tar pads archives to 10 KiB records: zeros after the marker are fine.
	padded := append(append([]byte{}, full...), make([]byte, 8192)...)
	if _, err := VerifyTar(bytes.NewReader(padded)); err != nil {
		t.Fatalf("padded archive: %v", err)
	}
	cases := map[string][]byte{
		"cut exactly between two files": full[:ends[1]],
		"cut after the last file":       full[:ends[2]],
		"cut after one zero block":      full[:ends[2]+512],
		"cut inside a file":             full[:ends[0]+100],
		"empty stream":                  nil,
	}
	for name, b := range cases {
		if _, err := VerifyTar(bytes.NewReader(b)); err == nil {
			t.Errorf("%s: accepted as a complete archive", name)
		}
	}
}
