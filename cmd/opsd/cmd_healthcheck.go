package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"time"
)

// cmdHealthcheck asks a running opsd whether it is ready: the Docker HEALTHCHECK of an image
// that has no curl.
func cmdHealthcheck(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("healthcheck", "opsd healthcheck [--url URL] [--timeout D]", stdout, stderr)
	url := fs.String("url", "http://127.0.0.1:9100/health/ready", "readiness URL")
	timeout := fs.Duration("timeout", 3*time.Second, "give up after")
	if code, ok := parseFlags(fs, args, stdout); !ok {
		return code
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, *url, nil)
	if err != nil {
		fmt.Fprintf(stderr, "opsd healthcheck: %v\n", err)
		return 1
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Fprintf(stderr, "opsd healthcheck: %v\n", err)
		return 1
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(stderr, "opsd healthcheck: %s answered %d\n", *url, resp.StatusCode)
		return 1
	}
	return 0
}
