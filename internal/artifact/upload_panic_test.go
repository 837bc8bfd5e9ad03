package artifact_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/wopr-network/opsd/internal/artifact"
	"github.com/wopr-network/opsd/internal/storage"
	"github.com/wopr-network/opsd/internal/storage/local"
)

// panickyReader panics (a bug in a source, injected) once it served its bytes.
type panickyReader struct{ r io.Reader }

func (p panickyReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	if err == io.EOF {
		panic("a bug in the source")
	}
	return n, err
}

// TestStoreSurvivesAPanicInTheEncoder: a panic in the goroutine that reads, compresses and
// encrypts an upload's source (a bug) fails the upload with an error wrapping ErrPanic and
// leaves nothing stored. It crashed the whole daemon: the Runner recovers panics only in a job's
// own goroutine.
func TestStoreSurvivesAPanicInTheEncoder(t *testing.T) {
	ctx := context.Background()
	store, err := local.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	src := panickyReader{bytes.NewReader(bytes.Repeat([]byte("opsd"), 1<<18))}
	_, err = artifact.Store(ctx, store, src, artifact.Options{Compression: artifact.Gzip},
		artifact.Manifest{Key: "nightly/n1/tenant_a/tenant_a_20261201.tar.gz", Kind: "container", Target: "tenant_a"})
	if !errors.Is(err, artifact.ErrPanic) || !strings.Contains(err.Error(), "a bug in the source") {
		t.Fatalf("err %v: want the panic as an error", err)
	}
	objs, err := storage.ListAll(ctx, store, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) > 0 {
		t.Fatalf("objects left after the failed upload: %+v", objs)
	}
}
