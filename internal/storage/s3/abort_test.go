package s3_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	s3store "github.com/wopr-network/opsd/internal/storage/s3"
)

// TestAbortUploadsStopsListingOnError: when aborting one upload fails, AbortIncompleteUploads
// returns the error and leaves no listing goroutine behind (it used to stay blocked forever,
// one per prune run).
func TestAbortUploadsStopsListingOnError(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == http.MethodGet && r.URL.Query().Has("uploads"):
			var b strings.Builder
			b.WriteString(`<?xml version="1.0" encoding="UTF-8"?><ListMultipartUploadsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Bucket>wopr-backups</Bucket>`)
			b.WriteString(`<NextKeyMarker>k99</NextKeyMarker><NextUploadIdMarker>u99</NextUploadIdMarker><MaxUploads>100</MaxUploads><IsTruncated>true</IsTruncated>`)
			for i := 0; i < 100; i++ {
				fmt.Fprintf(&b, `<Upload><Key>nightly/k%d</Key><UploadId>u%d</UploadId><Initiated>2020-01-01T00:00:00.000Z</Initiated></Upload>`, i, i)
			}
			b.WriteString(`</ListMultipartUploadsResult>`)
			w.Header().Set("Content-Type", "application/xml")
			w.Write([]byte(b.String()))
		case r.Method == http.MethodDelete:
			w.Header().Set("Content-Type", "application/xml")
			w.WriteHeader(http.StatusForbidden)
			w.Write([]byte(`<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code><Message>denied</Message></Error>`))
		default: // HEAD bucket and the rest
			w.WriteHeader(http.StatusOK)
		}
	}))
	defer srv.Close()
	ctx := context.Background()
	st, err := s3store.New(ctx, s3store.Config{Endpoint: strings.TrimPrefix(srv.URL, "http://"), Region: "us-east-1", Bucket: "wopr-backups",
		AccessKey: "a", SecretKey: "b", MaxRetries: 1})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10; i++ {
		if _, err := st.AbortIncompleteUploads(ctx, "nightly/", time.Hour); err == nil || !strings.Contains(err.Error(), "abort upload") {
			t.Fatalf("abort: %v", err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for n := listers(); n > 0; n = listers() {
		if time.Now().After(deadline) {
			t.Fatalf("%d listing goroutines left behind by 10 failed abort runs", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// listers counts the goroutines inside minio-go's incomplete-upload listing.
func listers() int {
	buf := make([]byte, 1<<22)
	buf = buf[:runtime.Stack(buf, true)]
	n := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "listIncompleteUploads") {
			n++
		}
	}
	return n
}
