package artifact

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

// TestTarVerifierSurvivesAPanic: a panic in the verifier's parsing goroutine (a bug; injected
// through a test hook) fails the stream with an error wrapping ErrPanic, whether it happens
// mid-stream or at its end. It crashed the whole daemon: the Runner recovers panics only in a
// job's own goroutine.
func TestTarVerifierSurvivesAPanic(t *testing.T) {
	t.Cleanup(func() { testHookTarEntry = nil })
	small, _ := tarOf(t, "a.txt", "b.txt", "c.txt")
	var big bytes.Buffer
	tw := tar.NewWriter(&big)
	for i := 0; i < 64; i++ {
		tw.WriteHeader(&tar.Header{Name: "f", Mode: 0o644, Size: 64 << 10})
		tw.Write(make([]byte, 64<<10))
	}
	tw.Close()
	for name, archive := range map[string][]byte{"at the end": small, "mid-stream": big.Bytes()} {
		t.Run(name, func(t *testing.T) {
			testHookTarEntry = func(h *tar.Header) {
				if h.Name == "c.txt" || h.Name == "f" {
					panic("a bug in the parser")
				}
			}
			v := NewTarVerifier(bytes.NewReader(archive))
			defer v.Close()
			_, err := io.Copy(io.Discard, v)
			if !errors.Is(err, ErrPanic) || !strings.Contains(err.Error(), "a bug in the parser") {
				t.Fatalf("err %v, want the panic as an error", err)
			}
		})
	}
	testHookTarEntry = nil
	if n, err := VerifyTar(bytes.NewReader(small)); err != nil || n != 3 {
		t.Fatalf("without the panic: %d entries, %v", n, err)
	}
}
