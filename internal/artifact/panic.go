package artifact

import (
	"errors"
	"fmt"
	"runtime/debug"
)

// ErrPanic marks the error that stands for a panic (a bug in opsd) recovered in a helper
// goroutine: the Runner recovers panics only in a job's own goroutine, so a goroutine a job
// starts (a stream's parser, an encoder, an import feeder) recovers its own and fails the
// operation with this instead of crashing the daemon.
var ErrPanic = errors.New("internal error (a bug in opsd, please report it)")

// PanicError turns a recovered panic value into an error wrapping ErrPanic, with the stack.
func PanicError(p any) error {
	return fmt.Errorf("%w: panic: %v\n%s", ErrPanic, p, debug.Stack())
}
