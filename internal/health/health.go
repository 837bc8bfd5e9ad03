// Package health holds the problems that make opsd degraded besides stale backups: a dependency
// a configured job needs that does not answer (the Docker engine, the object store) or a run
// that could not be recorded in the state database. /health reports them; whoever detects a
// problem sets it and clears it when it is gone.
package health

import (
	"sort"
	"sync"
	"time"
)

// Problem is one reason opsd is degraded.
type Problem struct {
	Name  string    `json:"name"`
	Error string    `json:"error"`
	Since time.Time `json:"since"`
}

// Problems is a concurrency-safe set of problems by name. The zero value is ready to use.
type Problems struct {
	mu   sync.Mutex
	m    map[string]Problem
	wake chan struct{} // Wake to Watch
}

// Set records (or updates the message of) a problem; Since stays from the first time it was set.
// It reports whether the problem is new.
func (p *Problems) Set(name, msg string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.m == nil {
		p.m = map[string]Problem{}
	}
	old, ok := p.m[name]
	since := time.Now().UTC()
	if ok {
		since = old.Since
	}
	p.m[name] = Problem{Name: name, Error: msg, Since: since}
	return !ok
}

// Clear removes a problem; it reports whether there was one.
func (p *Problems) Clear(name string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	_, ok := p.m[name]
	delete(p.m, name)
	return ok
}

// List returns the problems sorted by name.
func (p *Problems) List() []Problem {
	if p == nil {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]Problem, 0, len(p.m))
	for _, v := range p.m {
		out = append(out, v)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}
