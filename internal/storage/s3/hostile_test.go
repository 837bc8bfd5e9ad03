package s3_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/wopr-network/opsd/internal/storage"
	s3store "github.com/wopr-network/opsd/internal/storage/s3"
)

// loopingListServer answers every ListObjectsV2 page "truncated, continue with token t", always
// the same token: a broken or hostile server whose listing never ends. empty pages hold no keys.
func loopingListServer(t *testing.T, empty bool) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodHead {
			return // the bucket exists
		}
		if r.URL.Query().Get("list-type") != "2" {
			http.Error(w, "unexpected", http.StatusNotImplemented)
			return
		}
		contents := ""
		if !empty {
			contents = "<Contents><Key>nightly/a.tar.gz</Key><Size>1</Size><LastModified>2026-11-25T00:00:00.000Z</LastModified></Contents>"
		}
		w.Header().Set("Content-Type", "application/xml")
		fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?><ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">`+
			`<Name>b</Name><Prefix></Prefix><KeyCount>1</KeyCount><MaxKeys>1000</MaxKeys><IsTruncated>true</IsTruncated>`+
			`<NextContinuationToken>same</NextContinuationToken>%s</ListBucketResult>`, contents)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// TestListRefusesALoopingListing: a listing whose server hands back a continuation token it
// already gave fails with an error naming it, instead of paging forever (the same keys again and
// again, or nothing at all) until the caller's deadline, if it has one.
func TestListRefusesALoopingListing(t *testing.T) {
	for _, empty := range []bool{false, true} {
		srv := loopingListServer(t, empty)
		ctx := context.Background()
		s, err := s3store.New(ctx, s3store.Config{Endpoint: strings.TrimPrefix(srv.URL, "http://"), Region: "us-east-1", Bucket: "bkt",
			AccessKey: "k", SecretKey: "s", MaxRetries: 1})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		seen := 0
		err = s.List(ctx, "", func(storage.ObjectInfo) error { seen++; return nil })
		cancel()
		t.Logf("empty pages %v: %v", empty, err)
		if err == nil || errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "same") {
			t.Fatalf("empty pages %v: List = %v after %d keys, want an error naming the repeated token", empty, err, seen)
		}
		if seen > 2 { // the first page, and the first answer to the repeated token
			t.Errorf("empty pages %v: %d keys listed from one key repeated", empty, seen)
		}
	}
}
