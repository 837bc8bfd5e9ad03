package restore

import (
	"context"
	"sync"
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
