package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	_ "modernc.org/sqlite"

	"github.com/wopr-network/opsd/internal/artifact"
	"github.com/wopr-network/opsd/internal/layout"
	"github.com/wopr-network/opsd/internal/storage"
	"github.com/wopr-network/opsd/jobs"
)

// opsdBinary builds the opsd binary once.
func (b *bench) opsdBinary(ctx context.Context) (string, error) {
	bin := filepath.Join(b.dir, "opsd")
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	// As the image builds it (Dockerfile, .ci/image): the idle scenario's RSS is the shipped binary's.
	build := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", bin, "./cmd/opsd")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build opsd: %v: %s", err, out)
	}
	return bin, nil
}

// runProcess runs a command, sampling its peak RSS.
func runProcess(ctx context.Context, bytes int64, name string, args ...string) sample {
	cmd := exec.CommandContext(ctx, name, args...)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return sample{failed: err.Error()}
	}
	rs := sampleRSS(cmd.Process.Pid)
	err := cmd.Wait()
	s := sample{d: time.Since(start), rssMB: rs.Stop(), bytes: bytes}
	if cmd.ProcessState != nil {
		s.cpu = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	}
	if err != nil {
		s.failed = fmt.Sprintf("failed: %v: %s", err, lastLine(out.String()))
	}
	return s
}

func (b *bench) pruneScenario(ctx context.Context) error {
	store := newMemStore()
	containers := b.sz.objects / 2 / 365
	if containers < 1 {
		containers = 1
	}
	tiers := []string{"free", "starter", "pro", "enterprise"}
	base := time.Date(2026, 11, 26, 3, 0, 0, 0, time.UTC)
	n := 0
	nightly := layout.MustParse(layout.DefaultNightly)
	for c := 0; n < b.sz.objects; c++ {
		name := fmt.Sprintf("tenant_%05d", c)
		for d := 0; d < 365 && n < b.sz.objects; d++ {
			key := nightly.Key(layout.Fields{Node: "n1", Target: name, Date: layout.Date(base.AddDate(0, 0, -d))})
			store.put(key, []byte("x"))
			mj := fmt.Sprintf(`{"version":1,"key":%q,"kind":"container","target":%q,"tier":%q,"sha256":"00","size":1}`, key, name, tiers[c%4])
			store.put(artifact.ManifestKey(key), []byte(mj))
			n += 2
		}
	}
	p := jobs.NewPrune("bench", jobs.PruneConfig{DryRun: true, Tiers: map[string]jobs.Tier{
		"free":       {KeepDaily: 3, OnDemandMax: 1, RetentionDays: 7},
		"starter":    {KeepDaily: 7, KeepWeekly: 4, OnDemandMax: 5, RetentionDays: 30},
		"pro":        {KeepDaily: 7, KeepWeekly: 4, OnDemandMax: 20, RetentionDays: 90},
		"enterprise": {KeepDaily: 7, KeepWeekly: 4, RetentionDays: 365}},
		Rules: []jobs.PruneRule{{Prefix: layout.Default().Root(layout.Nightly), Depth: 2, TierPolicy: "nightly", Policy: jobs.Policy{MinKeep: 1}}}, Now: func() time.Time { return base }}, store)
	rows := []row{{name: "opsd prune plan (dry run)"}}
	var res jobs.Result
	for r := 0; r < b.rounds; r++ {
		rows[0].samples = append(rows[0].samples, timed(func() (int64, error) {
			var err error
			res, err = p.Run(ctx)
			return 0, err
		}))
	}
	table(fmt.Sprintf("prune: plan over %d objects (in-memory store: listing cost excluded)", n),
		fmt.Sprintf("Plan: keep %d backups, delete %d objects. Goal: plan in at most 10 s.", res.Prune.Kept, res.Prune.Deleted), rows)
	return nil
}

// memStore is an in-memory object store: it isolates the prune planner from listing latency.
type memStore struct {
	mu   sync.Mutex
	objs map[string][]byte
	keys []string
}

func newMemStore() *memStore { return &memStore{objs: map[string][]byte{}} }

func (m *memStore) put(k string, b []byte) {
	if _, ok := m.objs[k]; !ok {
		m.keys = append(m.keys, k)
	}
	m.objs[k] = b
}

func (m *memStore) Put(ctx context.Context, key string, r io.Reader, o storage.PutOptions) (storage.ObjectInfo, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return storage.ObjectInfo{}, err
	}
	m.mu.Lock()
	m.put(key, b)
	m.mu.Unlock()
	return storage.ObjectInfo{Key: key, Size: int64(len(b))}, nil
}

func (m *memStore) Get(ctx context.Context, key string) (io.ReadCloser, storage.ObjectInfo, error) {
	m.mu.Lock()
	b, ok := m.objs[key]
	m.mu.Unlock()
	if !ok {
		return nil, storage.ObjectInfo{}, storage.ErrNotFound
	}
	return io.NopCloser(bytes.NewReader(b)), storage.ObjectInfo{Key: key, Size: int64(len(b))}, nil
}

func (m *memStore) Stat(ctx context.Context, key string) (storage.ObjectInfo, error) {
	_, info, err := m.Get(ctx, key)
	return info, err
}

func (m *memStore) List(ctx context.Context, prefix string, fn func(storage.ObjectInfo) error) error {
	m.mu.Lock()
	sort.Strings(m.keys)
	keys := append([]string(nil), m.keys...)
	m.mu.Unlock()
	for _, k := range keys {
		if strings.HasPrefix(k, prefix) {
			if err := fn(storage.ObjectInfo{Key: k, Size: int64(len(m.objs[k])), ModTime: time.Now().Add(-48 * time.Hour)}); err != nil {
				return err
			}
		}
	}
	return nil
}

func (m *memStore) Delete(ctx context.Context, key string) error {
	m.mu.Lock()
	delete(m.objs, key)
	m.mu.Unlock()
	return nil
}

func (m *memStore) Copy(ctx context.Context, src, dst string) (storage.ObjectInfo, error) {
	m.mu.Lock()
	b, ok := m.objs[src]
	if ok {
		m.put(dst, b)
	}
	m.mu.Unlock()
	if !ok {
		return storage.ObjectInfo{}, storage.ErrNotFound
	}
	return storage.ObjectInfo{Key: dst, Size: int64(len(b))}, nil
}

func (m *memStore) AbortIncompleteUploads(context.Context, string, time.Duration) (int, error) {
	return 0, nil
}

func (m *memStore) String() string { return "memory" }
