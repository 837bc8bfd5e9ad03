package restore

import (
	"context"
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/wopr-network/opsd/internal/postgres"
	"github.com/wopr-network/opsd/internal/state"
)

// TestRestorePostgresConnectionLostMidSwap: the server connection opsd swaps with is lost
// between its two renames (the live database already renamed away, the restored one not yet in
// its place), so neither the second rename nor its undo can run. The restore must not say that
// nothing changed, nor drop the restored database: it is a failed rollback naming both databases
// (the live name is free, the previous database refuses connections until it is put back).
func TestRestorePostgresConnectionLostMidSwap(t *testing.T) {
	r := newPGRig(t)
	ctx := context.Background()
	admin := r.conn(t, r.server)
	defer admin.Close(ctx)
	live := r.live.Database()
	newDB := live + "_restore_20261126_100000"
	// A lock on the restored database object makes its rename into place wait: the test cuts
	// opsd's connection there.
	hold := r.conn(t, r.server)
	defer hold.Close(ctx)
	o := r.opts()
	o.OnRestoreStart = func(*exec.Cmd) {
		hold.Exec(ctx, "BEGIN")
		if _, err := hold.Exec(ctx, "COMMENT ON DATABASE "+postgres.Quote(newDB)+" IS 'held by the test'"); err != nil {
			t.Error(err)
		}
	}
	cut := make(chan error, 1)
	go func() {
		deadline := time.Now().Add(2 * time.Minute)
		for time.Now().Before(deadline) {
			var n int
			admin.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
				WHERE wait_event_type = 'Lock' AND query ILIKE 'ALTER DATABASE%RENAME%'`).Scan(&n)
			if n > 0 {
				cut <- nil
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		cut <- errors.New("the swap never waited on the held lock")
	}()
	_, err := RestorePostgres(ctx, o)
	hold.Exec(ctx, "ROLLBACK")
	if cerr := <-cut; cerr != nil {
		t.Fatal(cerr)
	}
	t.Logf("restore: %v", err)
	if err == nil {
		t.Fatal("the restore succeeded without its connection")
	}
	if got := databasesLike(t, r.server, live); len(got) != 0 {
		t.Fatalf("the test did not cut the swap between its renames: %v", got)
	}
	var rf *RollbackFailedError
	if !errors.As(err, &rf) || Outcome(ctx, err) != state.OutcomeRollbackFailed {
		t.Errorf("outcome %s, want %s (the live database is renamed away): %v", Outcome(ctx, err), state.OutcomeRollbackFailed, err)
	}
	if strings.Contains(err.Error(), "nothing changed") {
		t.Errorf("the error says nothing changed while %s is renamed away: %v", live, err)
	}
	prev := databasesLike(t, r.server, live+"_pre_restore_%")
	if len(prev) != 1 || !strings.Contains(err.Error(), prev[0]) || !strings.Contains(err.Error(), newDB) {
		t.Errorf("the error does not name the previous database %v and the restored one %s: %v", prev, newDB, err)
	}
	if got := databasesLike(t, r.server, newDB); len(got) != 1 {
		t.Errorf("the proven restored database %s was dropped: %v", newDB, got)
	}
}
