package s3

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"
)

// TestFreedPartDetachesItsRequestBodies: net/http may go on reading a request body after the
// response arrived (a store answering 400 before reading it); once the part is freed and its
// chunks are back in the budget for the next part, such a late read gets an error, never the
// next part's bytes.
func TestFreedPartDetachesItsRequestBodies(t *testing.T) {
	b := newBudget(4 * chunkSize)
	if err := b.acquire(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	p := &part{num: 1, credit: 1}
	src := bytes.Repeat([]byte("a"), 1000)
	if _, err := p.fill(bytes.NewReader(src), b, 1); err != nil {
		t.Fatal(err)
	}
	late := p.reader()
	buf := make([]byte, 100)
	if n, err := late.Read(buf); n != 100 || err != nil {
		t.Fatalf("first read: %d, %v", n, err)
	}
	p.free(b)
	// The chunk is reused for other data, as the next part would.
	c := b.chunk()
	copy(c, bytes.Repeat([]byte("b"), len(c)))
	n, err := late.Read(buf)
	if !errors.Is(err, errDetached) || n != 0 {
		t.Fatalf("read after free: %d bytes, %v; want 0, errDetached", n, err)
	}
	if _, err := io.Copy(io.Discard, late); !errors.Is(err, errDetached) {
		t.Fatalf("copy after free: %v", err)
	}
}
