package artifact

import (
	"archive/tar"
	"bytes"
	"io"
	"runtime"
	"testing"
	"time"
)

// TestTarVerifierCloseEndsAbandonedStreams: a consumer that stops reading half way (a failed
// upload) and closes the verifier leaves no goroutine behind.
func TestTarVerifierCloseEndsAbandonedStreams(t *testing.T) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for i := 0; i < 4; i++ {
		tw.WriteHeader(&tar.Header{Name: "f", Mode: 0o644, Size: 64 << 10})
		tw.Write(make([]byte, 64<<10))
	}
	tw.Close()
	before := runtime.NumGoroutine()
	for i := 0; i < 50; i++ {
		v := NewTarVerifier(bytes.NewReader(buf.Bytes()))
		if _, err := io.CopyN(io.Discard, v, 10<<10); err != nil { // abandoned mid-entry
			t.Fatal(err)
		}
		v.Close()
		v.Close() // twice is fine
	}
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines left behind by 50 abandoned streams", runtime.NumGoroutine()-before)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Closing after a complete read changes nothing.
	v := NewTarVerifier(bytes.NewReader(buf.Bytes()))
	if _, err := io.Copy(io.Discard, v); err != nil || v.Entries != 4 {
		t.Fatalf("complete stream: %v, %d entries", err, v.Entries)
	}
	v.Close()
}
