package storage_test

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/wopr-network/opsd/internal/storage"
	"github.com/wopr-network/opsd/internal/storage/local"
)

// TestLazyOpensOnceReachable: while the store cannot be opened every call fails with the reason
// (and is not retried more often than LazyRetryEvery); once Retry opens it, calls go through.
func TestLazyOpensOnceReachable(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	reachable, opens := false, 0
	l := storage.NewLazy(func(context.Context) (storage.Store, error) {
		opens++
		if !reachable {
			return nil, errors.New("dial tcp: connection refused")
		}
		return local.New(dir)
	}, "s3", errors.New("dial tcp: connection refused"))
	if _, err := l.Put(ctx, "a/b", strings.NewReader("x"), storage.PutOptions{Size: 1}); err == nil || !strings.Contains(err.Error(), "object store unreachable: dial tcp") {
		t.Fatalf("put while unreachable: %v", err)
	}
	if opens != 0 || l.String() != "unreachable object store (s3)" {
		t.Fatalf("opened %d times within the retry interval; String %q", opens, l.String())
	}
	if err := l.Retry(ctx); err == nil || opens != 1 {
		t.Fatalf("retry while unreachable: %v, %d opens", err, opens)
	}
	reachable = true
	if err := l.Retry(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Put(ctx, "a/b", strings.NewReader("x"), storage.PutOptions{Size: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Copy(ctx, "a/b", "a/c"); err != nil {
		t.Fatal(err)
	}
	rc, info, err := l.Get(ctx, "a/c")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(rc)
	rc.Close()
	if string(b) != "x" || info.Size != 1 {
		t.Fatalf("got %q %+v", b, info)
	}
	if _, err := l.Stat(ctx, "a/b"); err != nil {
		t.Fatal(err)
	}
	var keys []string
	l.List(ctx, "a/", func(o storage.ObjectInfo) error { keys = append(keys, o.Key); return nil })
	if err := l.Delete(ctx, "a/b"); err != nil || len(keys) != 2 {
		t.Fatalf("delete %v; listed %v", err, keys)
	}
	if _, err := l.AbortIncompleteUploads(ctx, "a/", 0); err != nil {
		t.Fatal(err)
	}
	if opens != 2 || !strings.Contains(l.String(), dir) {
		t.Fatalf("opens %d, String %q", opens, l.String())
	}
}
