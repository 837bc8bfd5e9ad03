package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wopr-network/opsd/internal/artifact"
	"github.com/wopr-network/opsd/internal/demo"
	"github.com/wopr-network/opsd/internal/docker/dockertest"
	"github.com/wopr-network/opsd/internal/storage/local"
)

// TestDemo runs `opsd demo` as the README's first command does (with a free port) and checks what
// an operator would: /health says ok with 7 tracked targets, and the store holds today's 7
// platform backups with manifests.
func TestDemo(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "opsd-demo")
	tenant := strings.TrimSuffix(dockertest.Unique("tenant_demo_"), "_") // never another run's container
	done := make(chan struct{})
	var out, errb syncBuffer
	code := make(chan int, 1)
	var base string
	ready := make(chan struct{})
	go func() {
		code <- runDemo(demo.Options{Dir: dir, Listen: "127.0.0.1:0", Container: tenant, Rows: 500, Writes: 50, Stdout: &out, Stderr: &errb, Done: done,
			Started: func(s demo.Started) { base = "http://" + s.Addr; close(ready) }})
	}()
	select {
	case <-ready:
	case c := <-code:
		t.Fatalf("demo exited with %d: %s", c, errb.String())
	case <-time.After(30 * time.Second):
		t.Fatal("demo did not start")
	}
	eventually(t, "/health ok with the 7 databases (and snapshots, containers) tracked", 20*time.Second, func() bool {
		code, body := get(t, base+"/health")
		var h struct {
			Status  string
			Backups struct{ StaleCount, TotalTracked int }
		}
		json.Unmarshal([]byte(body), &h)
		return code == 200 && h.Status == "ok" && h.Backups.StaleCount == 0 && h.Backups.TotalTracked >= 9
	})
	today := time.Now().UTC().Format("20060102")
	store, _ := local.New(filepath.Join(dir, "store"))
	for _, name := range demo.Names {
		key := "platform/" + today + "/" + name + "-" + today + ".db"
		m, err := artifact.ReadManifest(context.Background(), store, key)
		if err != nil || m.Size == 0 {
			t.Fatalf("%s: %v", key, err)
		}
	}
	if strings.Contains(out.String(), "Docker engine found") {
		key := "nightly/demo-node/" + tenant + "/" + tenant + "_" + today + ".tar.gz"
		eventually(t, "the container export", 20*time.Second, func() bool {
			_, err := artifact.ReadManifest(context.Background(), store, key)
			return err == nil
		})
	} else if os.Getenv("OPSD_TEST_REQUIRE_DOCKER") == "1" {
		t.Fatalf("the demo did not find the Docker engine:\n%s", out.String())
	}
	if _, err := artifact.ReadManifest(context.Background(), store, "nightly/demo-node/bot-alpha/bot-alpha_"+today+".tar.gz"); err != nil {
		eventually(t, "the WOPR_HOME snapshot", 10*time.Second, func() bool {
			_, err := artifact.ReadManifest(context.Background(), store, "nightly/demo-node/bot-alpha/bot-alpha_"+today+".tar.gz")
			return err == nil
		})
	}
	for _, want := range []string{"/health", "/metrics", "/api/jobs", "opsd.yaml"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("demo output lacks %q:\n%s", want, out.String())
		}
	}
	eventually(t, "the drill and the verification to pass", 20*time.Second, func() bool {
		_, metrics := get(t, base+"/metrics")
		return strings.Contains(metrics, `opsd_drill_last_result{drill="platform-drill"} 1`) &&
			strings.Contains(metrics, `opsd_offsite_missing_objects{job_name="offsite-verify"} 0`) &&
			strings.Contains(metrics, `opsd_drill_rto_target_seconds{drill="platform-drill"} 900`) &&
			strings.Contains(metrics, `opsd_prune_kept_backups{job_name="prune"} `)
	})
	_, body := get(t, base+"/api/jobs")
	var jb jobsBody
	json.Unmarshal([]byte(body), &jb)
	if len(jb.Jobs) == 0 {
		t.Fatalf("/api/jobs: %s", body)
	}
	close(done)
	if c := <-code; c != 0 {
		t.Fatalf("demo exit %d: %s", c, errb.String())
	}
	if _, err := os.Stat(filepath.Join(dir, "opsd.yaml")); err != nil {
		t.Fatal(err)
	}
	// The drill's report shows the measured RTO, not a rounded "0s".
	if !strings.Contains(out.String(), "RTO (drill time): ") || strings.Contains(out.String(), "RTO (drill time): 0s") {
		t.Errorf("demo output lacks a measured RTO:\n%s", out.String())
	}
}
