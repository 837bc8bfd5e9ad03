package restore

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/wopr-network/opsd/internal/metrics"
	"github.com/wopr-network/opsd/internal/state"
)

// TestKindsAndOutcomesMatchMetrics: the restore counters exist at 0 for every kind and outcome.
func TestKindsAndOutcomesMatchMetrics(t *testing.T) {
	if !slices.Equal(Kinds, metrics.RestoreKinds) || !slices.Equal(Outcomes, metrics.RestoreOutcomes) {
		t.Fatalf("restore kinds %v / outcomes %v differ from metrics' %v / %v", Kinds, Outcomes, metrics.RestoreKinds, metrics.RestoreOutcomes)
	}
}

// TestOutcomeFromTypedErrors: the outcome comes from the error's type and the context, never
// from its text.
func TestOutcomeFromTypedErrors(t *testing.T) {
	live := context.Background()
	cancelled, cancel := context.WithCancel(live)
	cancel()
	cause := errors.New("boom")
	for _, c := range []struct {
		ctx  context.Context
		err  error
		want string
	}{
		{live, nil, "success"},
		{live, errors.New("text that says rolled back"), "failure"},
		{live, fmt.Errorf("wrapped: %w", &RolledBackError{Err: cause, What: "x"}), "rolled_back"},
		{live, &RollbackFailedError{Err: cause, Rollback: cause, Where: "y"}, "rollback_failed"},
		{cancelled, &RolledBackError{Err: cause, What: "x"}, "canceled"},
		{cancelled, &RollbackFailedError{Err: cause, Rollback: cause, Where: "y"}, "rollback_failed"},
	} {
		if got := Outcome(c.ctx, c.err); got != c.want {
			t.Errorf("Outcome(%v) = %s, want %s", c.err, got, c.want)
		}
	}
}

// TestRunRecordsSafetyBeforeItsDestructiveStep: a safety copy is in the state database when the
// restore goes on; a restore whose process is gone (its liveness lock free) is marked
// interrupted with a message naming it, one still running is not.
func TestRunRecordsSafetyBeforeItsDestructiveStep(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "state.db")
	st, err := state.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var seen state.Restore
	r := &Run{Kind: KindSnapshot, Target: "bot-1", Key: "k", RequestedBy: "test", State: st}
	r.Do = func(ctx context.Context, tr *Tracker) (Report, error) {
		tr.Phase("replace")
		if err := tr.Safety(ctx, "the previous directory is kept at /x/bot-1.pre-restore-1"); err != nil {
			return Report{}, err
		}
		seen, _ = st.GetRestore(ctx, r.ID()) // the destructive step would come here
		// Another process (a second Store) sees this restore alive.
		other, err := state.Open(ctx, path)
		if err != nil {
			return Report{}, err
		}
		defer other.Close()
		if rs, err := Recover(ctx, other); err != nil || len(rs) != 0 {
			return Report{}, fmt.Errorf("a live restore was marked interrupted: %v %v", rs, err)
		}
		return Report{}, nil
	}
	if _, err := r.Execute(ctx); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(seen.Safety, "/x/bot-1.pre-restore-1") || seen.Outcome != state.OutcomeRunning {
		t.Fatalf("safety copy not recorded before the destructive step: %+v", seen)
	}

	// A row left running without its lock (its process died) is interrupted.
	dead, err := st.StartRestore(ctx, state.Restore{Kind: KindDB, Target: "platform", Key: "platform/20261130/", RequestedBy: "cli", StartedAt: seen.StartedAt})
	if err != nil {
		t.Fatal(err)
	}
	st.RestoreSafety(ctx, dead, "/data/auth.db.pre-restore-20261130T000000Z (store: pre-restore/n/auth/x.db)")
	st.Close() // the process "dies": its liveness locks are released, the rows stay running
	st, _ = state.Open(ctx, path)
	rs, err := Recover(ctx, st)
	if err != nil || len(rs) != 1 || rs[0].ID != dead || rs[0].Outcome != state.OutcomeInterrupted ||
		!strings.Contains(rs[0].Error, "/data/auth.db.pre-restore-20261130T000000Z") || !strings.Contains(rs[0].Error, "To roll back") {
		t.Fatalf("interrupted restores: %+v %v", rs, err)
	}
	if again, _ := Recover(ctx, st); len(again) != 0 {
		t.Fatalf("reported twice: %+v", again)
	}
}
