package main

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wopr-network/opsd/internal/opsdtest"
)

// aliasBomb is an 800-byte YAML "billion laughs": its aliases expand to 10^9 values.
func aliasBomb() string {
	var b strings.Builder
	b.WriteString("x0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n")
	for i := 1; i <= 9; i++ {
		b.WriteString(fmt.Sprintf("x%d: &a%d [%s*a%d]\n", i, i, strings.Repeat(fmt.Sprintf("*a%d, ", i-1), 9), i-1))
	}
	return b.String()
}

func hostileConfig(dir, extra string, n int) string {
	return fmt.Sprintf(`node_id: e2e
# revision %d
http:
  listen: 127.0.0.1:0
  admin_token: %s
state:
  path: %s/state.db
storage:
  backend: local
  local:
    path: %s/store
reload:
  interval: 100ms
scheduler:
  shutdown_timeout: 5s
jobs:
  - name: tick
    kind: noop
    schedule: "@every 1s"
%s`, n, token, dir, dir, extra)
}

// TestRunValidatesBeforeCreatingAnything: `opsd run` with a hostile file exits 1 with the
// message and creates neither the state database nor the store directory.
func TestRunValidatesBeforeCreatingAnything(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "token.fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	cases := map[string]struct{ body, want string }{
		"alias bomb":    {hostileConfig(dir, "", 1) + aliasBomb(), "YAML aliases expand to more than 100000 values"},
		"FIFO secret":   {strings.Replace(hostileConfig(dir, "", 1), "admin_token: "+token, "admin_token_file: "+fifo, 1), "a named pipe (FIFO), not a regular file"},
		"/dev/zero":     {hostileConfig(dir, "sentry:\n  dsn_file: /dev/zero\n", 1), "sentry.dsn_file (line 21): cannot read secret file: a character device"},
		"short token":   {strings.Replace(hostileConfig(dir, "", 1), token, "short", 1), "http.admin_token (line 5): is 5 bytes"},
		"never fires":   {strings.Replace(hostileConfig(dir, "", 1), "@every 1s", "0 0 31 4 *", 1), "jobs[0].schedule (line 19)"},
		"huge duration": {hostileConfig(dir, "    timeout: 213504d\n", 1), "jobs[0].timeout (line 20)"},
	}
	for name, c := range cases {
		cfgPath := filepath.Join(dir, "opsd.yaml")
		writeConfig(t, cfgPath, c.body)
		var out, errb bytes.Buffer
		if code := run([]string{"run", "-c", cfgPath}, &out, &errb); code != 1 || !strings.Contains(errb.String(), c.want) {
			t.Fatalf("%s: exit %d, stderr %q, want %q", name, code, errb.String(), c.want)
		}
		for _, p := range []string{"state.db", "store"} {
			if _, err := os.Stat(filepath.Join(dir, p)); err == nil {
				t.Fatalf("%s: %s was created before the file was validated", name, p)
			}
		}
	}
}

// TestHostileReloadsRefused: an alias bomb, a FIFO secret and a /dev/zero secret written over
// a running daemon's job file are each refused (by the watcher and by POST /-/reload), the
// daemon keeps running its jobs and stays small, and SIGHUP then SIGTERM with the FIFO in place
// still stop it within the shutdown timeout.
func TestHostileReloadsRefused(t *testing.T) {
	bin := opsdtest.Binary(t)
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "opsd.yaml")
	fifo := filepath.Join(dir, "token.fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	rev := 1
	writeConfig(t, cfgPath, hostileConfig(dir, "", rev))
	var logs syncBuffer
	cmd := exec.Command(bin, "run", "-c", cfgPath)
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stopped := false
	defer func() {
		if !stopped {
			cmd.Process.Kill()
			<-exited
		}
	}()
	listenRe := regexp.MustCompile(`"listen":"(127\.0\.0\.1:\d+)"`)
	var base string
	eventually(t, "opsd started", 30*time.Second, func() bool {
		m := listenRe.FindStringSubmatch(logs.String())
		if m != nil {
			base = "http://" + m[1]
		}
		return m != nil
	})
	client := &http.Client{Timeout: 30 * time.Second} // a hang guard, not a speed bound
	reload := func() (int, string) {
		req, _ := http.NewRequest(http.MethodPost, base+"/-/reload", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("POST /-/reload: %v", err)
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		b.ReadFrom(resp.Body)
		return resp.StatusCode, b.String()
	}
	lastRun := func() string {
		_, body := get(t, base+"/api/jobs")
		m := regexp.MustCompile(`"lastRun":"([^"]+)"`).FindStringSubmatch(body)
		if m == nil {
			return ""
		}
		return m[1]
	}
	gauge := func(v string) func() bool {
		return func() bool {
			_, metrics := get(t, base+"/metrics")
			return strings.Contains(metrics, "opsd_config_last_reload_successful "+v)
		}
	}
	peakRSS := func() int {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", cmd.Process.Pid))
		m := regexp.MustCompile(`VmHWM:\s+(\d+) kB`).FindSubmatch(b)
		if m == nil {
			return 0
		}
		kb, _ := strconv.Atoi(string(m[1]))
		return kb >> 10
	}

	hostile := []struct{ name, body, want string }{
		{"alias bomb", hostileConfig(dir, "", 0) + aliasBomb(), "YAML aliases expand to more than 100000 values"},
		{"/dev/zero secret", hostileConfig(dir, "sentry:\n  dsn_file: /dev/zero\n", 0), "cannot read secret file: a character device, not a regular file"},
		{"FIFO secret", strings.Replace(hostileConfig(dir, "", 0), "admin_token: "+token, "admin_token_file: "+fifo, 1), "cannot read secret file: a named pipe (FIFO), not a regular file"},
	}
	for i, h := range hostile {
		before := lastRun()
		writeConfig(t, cfgPath, h.body)
		eventually(t, h.name+": the watcher's reload refused", 30*time.Second, gauge("0"))
		if code, body := reload(); code != 400 || !strings.Contains(body, h.want) {
			t.Fatalf("%s: POST /-/reload = %d %s", h.name, code, body)
		}
		eventually(t, h.name+": tick keeps running", 30*time.Second, func() bool { r := lastRun(); return r != "" && r != before })
		if mib := peakRSS(); mib > 200 {
			t.Fatalf("%s: opsd's peak RSS is %d MiB", h.name, mib)
		}
		if !strings.Contains(logs.String(), h.want) {
			t.Fatalf("%s: the log lacks %q", h.name, h.want)
		}
		if i < len(hostile)-1 {
			rev++
			writeConfig(t, cfgPath, hostileConfig(dir, "", rev))
			eventually(t, h.name+": a good file reloads again", 30*time.Second, gauge("1"))
		}
	}
	// The FIFO is still in the file: a SIGHUP reload must not block the signal loop.
	fifoErrors := strings.Count(logs.String(), "a named pipe (FIFO)")
	cmd.Process.Signal(syscall.SIGHUP)
	eventually(t, "the SIGHUP reload refused", 30*time.Second, func() bool {
		return strings.Count(logs.String(), "a named pipe (FIFO)") > fifoErrors
	})
	// An S3 endpoint that accepts connections and never answers: the watcher's reload and a
	// SIGHUP reload both wait on it (the bucket check), and SIGTERM must still stop opsd.
	hole, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer hole.Close()
	accepted := make(chan net.Conn, 16)
	go func() {
		for {
			c, err := hole.Accept()
			if err != nil {
				return
			}
			accepted <- c // held open, never answered
		}
	}()
	rev++
	s3 := fmt.Sprintf("storage:\n  backend: s3\n  s3:\n    endpoint: %s\n    bucket: wopr-backups\n    tls: false\n    access_key: AK\n    secret_key: SK\n", hole.Addr())
	writeConfig(t, cfgPath, strings.Replace(hostileConfig(dir, "", rev), "storage:\n  backend: local\n  local:\n    path: "+dir+"/store\n", s3, 1))
	select {
	case c := <-accepted:
		defer c.Close()
	case <-time.After(30 * time.Second):
		t.Fatalf("the reload never reached the S3 endpoint:\n%s", logs.String())
	}
	cmd.Process.Signal(syscall.SIGHUP)
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-exited:
		stopped = true
		if err != nil {
			t.Fatalf("opsd exited with %v after SIGTERM", err)
		}
	case <-time.After(60 * time.Second): // shutdown_timeout is 5s; this only trips on a hang
		t.Fatal("SIGTERM did not stop opsd")
	}
	if strings.Contains(logs.String(), token) {
		t.Fatal("the admin token appears in the logs")
	}
}
