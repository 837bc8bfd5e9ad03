// Package alertstest is a recording stand-in for the alerts' receivers (PagerDuty's Events API, a
// webhook, Sentry) for tests.
package alertstest

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"
)

// Server is a real HTTP server on loopback standing in for a receiver of notifications. It can be
// stopped and started again on the same address (an outage), and records the request bodies it
// accepted, in order.
type Server struct {
	answer func(body []byte) int
	addr   string
	mu     sync.Mutex
	bodies []string
	srv    *http.Server
}

// New starts a Server on a free loopback port and stops it at the end of the test. answer, when
// not nil, gives the status for each request body; without it every request is accepted (202). A
// body answered with another status than 202 is not recorded.
func New(t testing.TB, answer func(body []byte) int) *Server {
	t.Helper()
	s := &Server{answer: answer, addr: "127.0.0.1:0"}
	s.Start(t)
	t.Cleanup(s.Stop)
	return s
}

// Start serves on the server's address again after Stop.
func (s *Server) Start(t testing.TB) {
	t.Helper()
	var ln net.Listener
	var err error
	for i := 0; i < 50; i++ { // the port may linger briefly after the stop
		if ln, err = net.Listen("tcp", s.addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	s.addr = ln.Addr().String()
	s.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		code := http.StatusAccepted
		if s.answer != nil {
			code = s.answer(b)
		}
		if code == http.StatusAccepted {
			s.mu.Lock()
			s.bodies = append(s.bodies, string(b))
			s.mu.Unlock()
		}
		w.WriteHeader(code)
	})}
	go s.srv.Serve(ln)
}

// Stop closes the server and every connection to it: connections are refused until Start.
func (s *Server) Stop() {
	if s.srv != nil {
		s.srv.Close()
	}
}

// Addr is the server's host:port.
func (s *Server) Addr() string { return s.addr }

// URL is the server's base URL.
func (s *Server) URL() string { return "http://" + s.addr }

// Bodies returns the request bodies accepted so far, in order.
func (s *Server) Bodies() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.bodies...)
}

// Events returns the accepted bodies decoded as JSON objects (nil for a body that is not one), in
// order.
func (s *Server) Events() []map[string]any {
	var events []map[string]any
	for _, b := range s.Bodies() {
		var ev map[string]any
		json.Unmarshal([]byte(b), &ev)
		events = append(events, ev)
	}
	return events
}
