// Package sentrytest is a local HTTP server standing in for Sentry's ingest endpoint: it records
// every envelope it receives so tests can assert what would have reached Sentry.
package sentrytest

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// Server records envelopes.
type Server struct {
	*httptest.Server
	mu     sync.Mutex
	bodies []string
}

// New starts a recording server for the test.
func New(t testing.TB) *Server {
	s := &Server{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		s.mu.Lock()
		s.bodies = append(s.bodies, string(b))
		s.mu.Unlock()
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(s.Close)
	return s
}

// All returns every envelope received, joined by newlines.
func (s *Server) All() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Join(s.bodies, "\n")
}

// DSN is a DSN pointing at the server.
func (s *Server) DSN() string {
	return strings.Replace(s.URL, "http://", "http://publickey123@", 1) + "/42"
}
