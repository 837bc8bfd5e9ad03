package s3_test

import (
	"context"
	"io"
	"net"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"

	"github.com/wopr-network/opsd/internal/storage"
	s3store "github.com/wopr-network/opsd/internal/storage/s3"
	"github.com/wopr-network/opsd/internal/storage/storagetest"
)

// hangProxy forwards TCP to an S3 server until hang() is called; from then on it accepts
// connections and never answers (a hung server), and the connections it had are cut.
type hangProxy struct {
	ln      net.Listener
	backend string
	mu      sync.Mutex
	hung    bool
	conns   []net.Conn
}

func newHangProxy(t *testing.T, backend string) *hangProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &hangProxy{ln: ln, backend: backend}
	t.Cleanup(func() {
		ln.Close()
		p.mu.Lock()
		for _, c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			p.conns = append(p.conns, c)
			hung := p.hung
			p.mu.Unlock()
			if hung {
				continue // accepted, never answered
			}
			b, err := net.Dial("tcp", backend)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, b)
			p.mu.Unlock()
			go func() { io.Copy(b, c); b.Close() }()
			go func() { io.Copy(c, b); c.Close() }()
		}
	}()
	return p
}

func (p *hangProxy) hang() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.hung = true
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// TestRequestTimeoutBoundsAHungServer: with request_timeout set, every operation against a
// server that accepts connections and never answers fails with an error instead of hanging the
// run (the test's own -timeout is what a hang would hit).
func TestRequestTimeoutBoundsAHungServer(t *testing.T) {
	// Plain HTTP: a hung TLS server would also be cut by the TLS handshake timeout; over plain
	// HTTP only request_timeout stands between a run and a server that never answers.
	srv := httptest.NewServer(gofakes3.New(s3mem.New()).Server())
	t.Cleanup(srv.Close)
	cfg := storagetest.NewFakeS3(t).Config
	cfg.Secure, cfg.RootCAs = false, nil
	proxy := newHangProxy(t, strings.TrimPrefix(srv.URL, "http://"))
	cfg.Endpoint = proxy.ln.Addr().String()
	cfg.RequestTimeout = 300 * time.Millisecond
	cfg.MaxRetries = 1
	ctx := context.Background()
	st, err := s3store.New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	proxy.hang()
	ops := map[string]func() error{
		"stat": func() error { _, err := st.Stat(ctx, "a/one"); return err },
		"get": func() error {
			rc, _, err := st.Get(ctx, "a/one")
			if err == nil {
				_, err = io.ReadAll(rc)
				rc.Close()
			}
			return err
		},
		"put": func() error {
			_, err := st.Put(ctx, "a/two", strings.NewReader("world"), storage.PutOptions{})
			return err
		},
		"list": func() error { return st.List(ctx, "a/", func(storage.ObjectInfo) error { return nil }) },
		"new":  func() error { _, err := s3store.New(ctx, cfg); return err },
	}
	for name, op := range ops {
		done := make(chan error, 1)
		go func() { done <- op() }()
		select {
		case err := <-done:
			if err == nil {
				t.Errorf("%s against a hung server succeeded", name)
			}
		case <-time.After(60 * time.Second):
			t.Fatalf("%s against a hung server is still waiting: request_timeout does not bound it", name)
		}
	}
}
