package restore

import (
	"context"
	"fmt"
	"sync"

	"github.com/wopr-network/opsd/internal/httpapi"
)

// Registry holds a daemon's restores in progress: one per restore name (kind and target) at
// a time, each cancellable (admin API, shutdown). The zero value is ready to use.
type Registry struct {
	mu     sync.Mutex
	byName map[string]int64
	cancel map[int64]context.CancelFunc
}

// Reserve claims name; when a restore of it runs, it returns that one's id and false.
func (s *Registry) Reserve(name string) (int64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.byName == nil {
		s.byName, s.cancel = map[string]int64{}, map[int64]context.CancelFunc{}
	}
	if id, busy := s.byName[name]; busy {
		return id, false
	}
	s.byName[name] = 0
	return 0, true
}

// Set records the id and cancel function of the restore that reserved name.
func (s *Registry) Set(name string, id int64, cancel context.CancelFunc) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.byName[name], s.cancel[id] = id, cancel
}

// Done forgets a restore that ended (or never started: id 0).
func (s *Registry) Done(name string, id int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.byName, name)
	delete(s.cancel, id)
}

// Stop cancels the restore id; false when it does not run here.
func (s *Registry) Stop(id int64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.cancel[id]
	if ok {
		c()
	}
	return ok
}

// StopAll cancels every running restore (shutdown).
func (s *Registry) StopAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.cancel {
		c()
	}
}

// Start runs a restore in the background, one per restore name at a time: it claims run's name
// (a restore of the same kind and target already running is an httpapi.ErrConflict), records
// it (Begin), and hands it to start with a context that parent, Stop and StopAll cancel. start
// runs it and calls finish once it ended, with the id of its run (0: it never started, the
// restore is then recorded as aborted). release is called once the restore ended or could not
// start. It returns the restore's id.
func (s *Registry) Start(ctx, parent context.Context, run *Run, release func(), start func(ctx context.Context, finish func(runID int64, err error)) error) (int64, error) {
	name := run.Name()
	if other, ok := s.Reserve(name); !ok {
		release()
		return 0, fmt.Errorf("%w: a restore of %s is already running (id %d)", httpapi.ErrConflict, run.Target, other)
	}
	id, err := run.Begin(ctx)
	if err != nil {
		s.Done(name, 0)
		release()
		return 0, err
	}
	rctx, cancel := context.WithCancel(parent)
	s.Set(name, id, cancel)
	finish := func(runID int64, err error) {
		if runID == 0 {
			run.Abort(rctx, err)
		}
		s.Done(name, id)
		cancel()
		release()
	}
	if err := start(rctx, finish); err != nil {
		finish(0, err)
		return 0, fmt.Errorf("%w: %v", httpapi.ErrConflict, err)
	}
	return id, nil
}
