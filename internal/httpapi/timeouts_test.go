package httpapi

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// TestSlowClientsAreDisconnected: a client that sends part of its headers, or its headers and
// then a body that never completes, or nothing after a finished request, is disconnected. The
// server had no read timeout: a client that promised a body and trickled it (or sent none) held
// its connection and goroutine forever (slowloris). A handler that runs longer than the read
// timeout keeps its request context.
func TestSlowClientsAreDisconnected(t *testing.T) {
	s := New(Options{Gatherer: prometheus.NewRegistry(), AdminToken: func() string { return "tok" }, Log: zerolog.Nop()})
	s.readHeaderTimeout = 200 * time.Millisecond
	s.readTimeout = 300 * time.Millisecond
	s.idleTimeout = 300 * time.Millisecond
	s.writeTimeout = 500 * time.Millisecond
	bigDone := make(chan error, 1)
	s.Handle("GET /big", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		chunk := make([]byte, 1<<20)
		for range 256 { // far more than the socket buffers hold
			if _, err := w.Write(chunk); err != nil {
				bigDone <- err
				return
			}
		}
		bigDone <- nil
	}))
	entered, release, ctxErr := make(chan struct{}), make(chan struct{}), make(chan error, 1)
	s.Handle("POST /slow", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.ReadAll(r.Body); err != nil {
			ctxErr <- err
			return
		}
		close(entered)
		<-release
		ctxErr <- r.Context().Err()
	}))
	s.Handle("GET /ok", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { WriteJSON(w, http.StatusOK, "ok") }))
	addr, err := s.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Shutdown(context.Background()) })

	dial := func(t *testing.T) net.Conn {
		t.Helper()
		c, err := net.Dial("tcp", addr.String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	// closedByServer reads until the server closes the connection; the deadline only keeps a
	// failing test from hanging.
	closedByServer := func(t *testing.T, c net.Conn) string {
		t.Helper()
		_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
		got, err := io.ReadAll(c)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("the server still holds the connection (read %q)", got)
		}
		return string(got)
	}

	// A long handler, started first: it is still running after the slow clients below have been
	// cut by the read timeout.
	slow := dial(t)
	if _, err := io.WriteString(slow, "POST /slow HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nok"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-entered:
	case err := <-ctxErr:
		t.Fatalf("long handler: %v", err)
	}

	t.Run("partial header", func(t *testing.T) {
		c := dial(t)
		if _, err := io.WriteString(c, "GET /ok HTTP/1.1\r\nHost: x\r\nX-Slow: "); err != nil {
			t.Fatal(err)
		}
		if got := closedByServer(t, c); got != "" {
			t.Errorf("answered a request never finished: %q", got)
		}
	})
	t.Run("body never finished", func(t *testing.T) {
		c := dial(t)
		// Unauthenticated: the handler refuses without reading the body, and the server reads
		// what was promised before answering.
		if _, err := io.WriteString(c, "POST /-/reload HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"a\""); err != nil {
			t.Fatal(err)
		}
		got := closedByServer(t, c)
		if got != "" && !strings.HasPrefix(got, "HTTP/1.1 401") {
			t.Errorf("answer: %q", got)
		}
	})
	t.Run("idle after a request", func(t *testing.T) {
		c := dial(t)
		if _, err := io.WriteString(c, "GET /ok HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.Close {
			t.Fatalf("first request: %d, close %v", resp.StatusCode, resp.Close)
		}
		_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
		if rest, err := io.ReadAll(br); errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("the server keeps an idle connection open (read %q)", rest)
		}
	})

	t.Run("large response never read", func(t *testing.T) {
		c := dial(t)
		if _, err := io.WriteString(c, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		// The client reads nothing: the handler's writes fail once the write timeout passes.
		select {
		case err := <-bigDone:
			if err == nil {
				t.Fatal("256 MiB were written to a client that reads nothing")
			}
		case <-time.After(time.Minute):
			t.Fatal("the handler still writes to a client that reads nothing")
		}
	})

	close(release)
	// Its context ends only at the write bound (deadline exceeded), never with the read timeout
	// (the connection's context cancelled).
	if err := <-ctxErr; err != nil && !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("the long handler's context ended with the read timeout: %v", err)
	}
}
