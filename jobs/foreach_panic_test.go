package jobs

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wopr-network/opsd/internal/state"
)

// TestForEachPanicFailsTheRunNotTheDaemon: a panic in one target's call of ForEach (the
// per-target goroutines of backups and drills; a bug) fails the run with the panic, after the
// other targets finished, instead of crashing opsd: the Runner recovers panics only in the job's
// own goroutine, and ForEach ran fn in goroutines of its own.
func TestForEachPanicFailsTheRunNotTheDaemon(t *testing.T) {
	r := newRig(t)
	var done atomic.Int32
	j := funcJob{"drill", func(ctx context.Context) (Result, error) {
		ForEach(ctx, 4, 2, func(i int) {
			if i == 1 {
				panic("a bug in one target")
			}
			done.Add(1)
		}, nil)
		return Result{}, nil
	}}
	o := r.runner.Run(context.Background(), j, time.Minute, TriggerManual)
	if o.Run.Outcome != state.OutcomeFailure || o.Err == nil || !strings.Contains(o.Err.Error(), "panic: a bug in one target") {
		t.Fatalf("outcome %+v", o)
	}
	if n := done.Load(); n != 3 {
		t.Fatalf("%d of the 3 other targets ran", n)
	}
}
