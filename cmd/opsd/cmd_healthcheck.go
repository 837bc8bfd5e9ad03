package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/wopr-network/opsd/config"
	"github.com/wopr-network/opsd/internal/health"
)

// cmdHealthcheck asks a running opsd whether it is ready: the Docker HEALTHCHECK of an image
// that has no curl. Without --url it probes the daemon's own listen address, read from the job
// file (-c, $OPSD_CONFIG), so a changed http.listen needs no change to the image.
func cmdHealthcheck(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("healthcheck", "opsd healthcheck [-c FILE] [--url URL] [--timeout D]", stdout, stderr)
	cfgPath := configFlag(fs)
	url := fs.String("url", "", "readiness URL (default: /health/ready on the job file's http.listen)")
	timeout := fs.Duration("timeout", 3*time.Second, "give up after")
	if code, ok := parseFlags(fs, args, stdout); !ok {
		return code
	}
	var note string
	if *url == "" {
		var listen string
		listen, note = config.ListenAddress(*cfgPath)
		*url = health.ReadyURL(listen)
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	if err := health.Probe(ctx, *url); err != nil {
		fmt.Fprintf(stderr, "opsd healthcheck: %v\n", err)
		if note != "" {
			fmt.Fprintf(stderr, "opsd healthcheck: %s\n", note)
		}
		return 1
	}
	return 0
}
