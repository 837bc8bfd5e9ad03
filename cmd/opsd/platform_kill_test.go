package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wopr-network/opsd/internal/coord"
	"github.com/wopr-network/opsd/internal/opsdtest"
	"github.com/wopr-network/opsd/internal/state"
)

// TestSIGKILLInterruptedPlatformRunIsOnHealth: a platform-scoped job (once across the fleet,
// claimed in the coordination database) is running on this node when the real binary is
// SIGKILLed. At the next start the run is recorded interrupted, and /health says so with
// interrupted:<job>, as for a node-scoped job: opsd stopped during it, which an operator must
// see, however the tick is retried.
func TestSIGKILLInterruptedPlatformRunIsOnHealth(t *testing.T) {
	dsn := pgDSN(t)
	bin := opsdtest.Binary(t)
	dir := t.TempDir()
	schema := fmt.Sprintf("opsd_k%d", time.Now().UnixNano()%1e9)
	addr := opsdtest.FreeAddr(t)
	os.WriteFile(filepath.Join(dir, "pg.dsn"), []byte(dsn), 0o600)
	cfgPath := filepath.Join(dir, "opsd.yaml")
	writeConfig(t, cfgPath, binaryConfig("pkill", addr, dir, fmt.Sprintf(`reload:
  interval: 1h
coordination:
  postgres:
    dsn_file: %s/pg.dsn
    schema: %s
  heartbeat_interval: 1s
  node_lost_after: 4s
`, dir, schema), `  - name: fleet-prune
    kind: noop
    schedule: "@every 2s"
    scope: platform
    sleep: 10m
`))
	base := "http://" + addr
	cmd := startBinary(t, bin, cfgPath, addr)
	eventually(t, "a claimed tick of the platform job to run", 20*time.Second, func() bool {
		return strings.HasSuffix(metricLine(t, base, `opsd_job_running{`), " 1")
	})
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()

	cmd = startBinary(t, bin, cfgPath, addr)
	_, body := get(t, base+"/api/jobs/fleet-prune/runs")
	if !strings.Contains(body, `"outcome":"interrupted"`) || !strings.Contains(body, state.InterruptedError) {
		t.Fatalf("runs after the restart: want the killed run interrupted: %s", body)
	}
	if _, body := get(t, base+"/health"); !strings.Contains(body, `"status":"degraded"`) || !strings.Contains(body, "interrupted:fleet-prune") {
		t.Fatalf("/health after the restart: %s", body)
	}
	// The killed run was a claimed tick of the fleet's: its claim is left unfinished (lost).
	c, err := coord.Open(context.Background(), coord.Options{DSN: dsn, Schema: schema, Node: "observer"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	claims, err := c.Claims(context.Background(), "fleet-prune")
	if err != nil || len(claims) == 0 || claims[0].Node != "pkill" || claims[0].FinishedAt != nil {
		t.Fatalf("claims of the platform job: %+v %v", claims, err)
	}
	// The restarted node goes on claiming the job's ticks (a new run, not a success): the
	// problem stays.
	eventually(t, "a newer tick claimed after the restart", 20*time.Second, func() bool {
		claims, _ = c.Claims(context.Background(), "fleet-prune")
		return len(claims) >= 2
	})
	if _, body := get(t, base+"/health"); !strings.Contains(body, "interrupted:fleet-prune") {
		t.Fatalf("/health once the job runs again: %s", body)
	}
}
