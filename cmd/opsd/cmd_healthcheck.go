package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/wopr-network/opsd/config"
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
		listen, n := listenAddress(*cfgPath)
		*url, note = "http://"+probeAddress(listen)+"/health/ready", n
	}
	fail := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "opsd healthcheck: "+format+"\n", a...)
		if note != "" {
			fmt.Fprintf(stderr, "opsd healthcheck: %s\n", note)
		}
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, *url, nil)
	if err != nil {
		return fail("%v", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fail("%v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fail("%s answered %d", *url, resp.StatusCode)
	}
	return 0
}

// listenAddress returns the job file's http.listen. When the file does not load (a bad edit the
// running daemon refused keeps it on its old config), http.listen is read on its own, so the
// probe still goes to the daemon; note says what happened.
func listenAddress(path string) (listen, note string) {
	def := config.Default().HTTP.Listen
	cfg, err := config.Load(path)
	if err == nil {
		return cfg.HTTP.Listen, ""
	}
	first, _, _ := strings.Cut(err.Error(), "\n")
	note = fmt.Sprintf("the job file does not load (%s); http.listen read on its own", first)
	data, rerr := os.ReadFile(path)
	if rerr != nil {
		return def, fmt.Sprintf("cannot read the job file (%v); probed the default %s", rerr, def)
	}
	var doc struct {
		HTTP struct {
			Listen string `yaml:"listen"`
		} `yaml:"http"`
	}
	if yaml.Unmarshal(data, &doc) != nil || doc.HTTP.Listen == "" {
		return def, note + "; probed the default " + def
	}
	return expandDefault(doc.HTTP.Listen), note
}

// expandDefault expands ${VAR} and ${VAR:-default} from the environment (as the job file does).
func expandDefault(s string) string {
	return os.Expand(s, func(v string) string {
		name, def, hasDef := strings.Cut(v, ":-")
		if val, ok := os.LookupEnv(name); ok && (val != "" || !hasDef) {
			return val
		}
		return def
	})
}

// probeAddress turns a listen address into one to connect to: a wildcard or empty host is
// probed on loopback.
func probeAddress(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return listen
	}
	switch host {
	case "", "0.0.0.0", "::":
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}
