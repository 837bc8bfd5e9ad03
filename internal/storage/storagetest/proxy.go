package storagetest

import (
	"io"
	"net"
	"sync"
	"testing"

	s3store "github.com/wopr-network/opsd/internal/storage/s3"
)

// Proxy forwards TCP connections to a target address. Kill makes the target vanish for its
// clients at once (listener closed, every open connection cut), the way a store that dies
// mid-upload looks from opsd's side.
type Proxy struct {
	Addr   string
	ln     net.Listener
	target string
	mu     sync.Mutex
	conns  []net.Conn
	killed bool
}

// NewProxy starts a proxy on a loopback port in front of target (host:port); it is killed when
// the test ends.
func NewProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("proxy: %v", err)
	}
	p := &Proxy{Addr: ln.Addr().String(), ln: ln, target: target}
	go p.serve(ln)
	t.Cleanup(p.Kill)
	return p
}

func (p *Proxy) serve(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		u, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		if p.killed {
			p.mu.Unlock()
			c.Close()
			u.Close()
			return
		}
		p.conns = append(p.conns, c, u)
		p.mu.Unlock()
		go func() { io.Copy(u, c); u.Close() }()
		go func() { io.Copy(c, u); c.Close() }()
	}
}

// Kill closes the listener and cuts every connection.
func (p *Proxy) Kill() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.killed {
		return
	}
	p.killed = true
	p.ln.Close()
	for _, c := range p.conns {
		c.Close()
	}
}

// Revive listens again on the same address after Kill: the store is back.
func (p *Proxy) Revive(t testing.TB) {
	t.Helper()
	ln, err := net.Listen("tcp", p.Addr)
	if err != nil {
		t.Fatalf("proxy: %v", err)
	}
	p.mu.Lock()
	p.ln, p.killed, p.conns = ln, false, nil
	p.mu.Unlock()
	go p.serve(ln)
}

// Via returns cfg pointed at the proxy, with few retries (the store is expected to die).
func (p *Proxy) Via(cfg s3store.Config) s3store.Config {
	cfg.Endpoint = p.Addr
	cfg.MaxRetries = 1
	cfg.CreateBucket = false
	return cfg
}
