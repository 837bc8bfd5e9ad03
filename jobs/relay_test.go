package jobs

import (
	"context"
	"crypto/rand"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/wopr-network/opsd/internal/demo"
	"github.com/wopr-network/opsd/internal/docker"
)

// connSet is every connection a test proxy opened, to cut them all at once.
type connSet struct {
	mu    sync.Mutex
	conns []net.Conn
}

func (s *connSet) add(c ...net.Conn) {
	s.mu.Lock()
	s.conns = append(s.conns, c...)
	s.mu.Unlock()
}

// closeAll closes every connection opened so far; new ones pass again.
func (s *connSet) closeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.conns {
		c.Close()
	}
	s.conns = nil
}

// serveRelay accepts clients on ln until it is closed, dials network/upstream for each (a client
// whose upstream does not answer is dropped), adds both to set and runs up (client to upstream)
// and down (upstream to client), each as func(dst, src).
func serveRelay(ln net.Listener, network, upstream string, set *connSet, up, down func(dst, src net.Conn)) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		u, err := net.Dial(network, upstream)
		if err != nil {
			c.Close()
			continue
		}
		set.add(c, u)
		go down(c, u)
		go up(u, c)
	}
}

// copyClose copies src to dst as is, then closes dst.
func copyClose(dst, src net.Conn) {
	io.Copy(dst, src)
	dst.Close()
}

// pump copies src to dst chunk by chunk until either side fails or stop returns true for a chunk
// (that chunk is not forwarded; stop does the cutting); it closes dst when it returns.
func pump(dst, src net.Conn, stop func(chunk []byte) bool) {
	defer dst.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if stop(buf[:n]) {
				return
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// waitContainerData waits until the container's filesystem holds at least size bytes (its command
// writes them as it starts).
func waitContainerData(t *testing.T, dc *docker.Client, name string, size int64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		d, err := dc.Inspect(context.Background(), name, true)
		if err == nil && d.SizeRw >= size {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("container never wrote its data: %+v %v", d, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// killSources are the sources of the writers the kill tests drive, in one temp dir: a SQLite
// database of about 24 MiB (dbPath, table items) and an instance directory (base/inst-1) with
// 24 MiB of random bytes (nothing for gzip to shrink).
type killSources struct {
	dbPath, base string
}

func newKillSources(t *testing.T, dir string) killSources {
	t.Helper()
	s := killSources{dbPath: filepath.Join(dir, "auth.db"), base: filepath.Join(dir, "homes")}
	if err := demo.ItemsDB(s.dbPath, 22000); err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(s.base, "inst-1"), 0o755)
	s.changeDir(t)
	return s
}

// changeDB deletes every seventh item from the database.
func (s killSources) changeDB(t *testing.T) {
	db, err := demo.Open(s.dbPath)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`DELETE FROM items WHERE id % 7 = 0`); err != nil {
		t.Fatal(err)
	}
}

// changeDir writes the instance's 24 MiB of random bytes anew.
func (s killSources) changeDir(t *testing.T) {
	b := make([]byte, 24<<20)
	rand.Read(b)
	if err := os.WriteFile(filepath.Join(s.base, "inst-1", "big.bin"), b, 0o644); err != nil {
		t.Fatal(err)
	}
}
