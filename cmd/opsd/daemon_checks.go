package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/wopr-network/opsd/config"
	"github.com/wopr-network/opsd/internal/scratch"
	"github.com/wopr-network/opsd/internal/state"
	"github.com/wopr-network/opsd/internal/storage"
	"github.com/wopr-network/opsd/jobs"
)

// lazyStore stands in for an object store that could not be opened at start: every call first
// tries to open it (at most once per retryEvery), and fails with the reason while it cannot.
type lazyStore struct {
	cfg config.Storage

	mu      sync.Mutex
	inner   storage.Store
	lastErr error
	tried   time.Time
}

const lazyRetryEvery = 5 * time.Second

func newLazyStore(cfg config.Storage, err error) *lazyStore {
	return &lazyStore{cfg: cfg, lastErr: err, tried: time.Now()}
}

// get returns the opened store, opening it when due.
func (l *lazyStore) get(ctx context.Context, force bool) (storage.Store, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.inner != nil {
		return l.inner, nil
	}
	if !force && time.Since(l.tried) < lazyRetryEvery {
		return nil, fmt.Errorf("object store unreachable: %w", l.lastErr)
	}
	l.tried = time.Now()
	s, err := openStore(ctx, l.cfg)
	if err != nil {
		l.lastErr = err
		return nil, fmt.Errorf("object store unreachable: %w", err)
	}
	l.inner = s
	return s, nil
}

func (l *lazyStore) Put(ctx context.Context, key string, r io.Reader, o storage.PutOptions) (storage.ObjectInfo, error) {
	s, err := l.get(ctx, false)
	if err != nil {
		return storage.ObjectInfo{}, err
	}
	return s.Put(ctx, key, r, o)
}

func (l *lazyStore) Get(ctx context.Context, key string) (io.ReadCloser, storage.ObjectInfo, error) {
	s, err := l.get(ctx, false)
	if err != nil {
		return nil, storage.ObjectInfo{}, err
	}
	return s.Get(ctx, key)
}

func (l *lazyStore) Stat(ctx context.Context, key string) (storage.ObjectInfo, error) {
	s, err := l.get(ctx, false)
	if err != nil {
		return storage.ObjectInfo{}, err
	}
	return s.Stat(ctx, key)
}

func (l *lazyStore) List(ctx context.Context, prefix string, fn func(storage.ObjectInfo) error) error {
	s, err := l.get(ctx, false)
	if err != nil {
		return err
	}
	return s.List(ctx, prefix, fn)
}

func (l *lazyStore) Delete(ctx context.Context, key string) error {
	s, err := l.get(ctx, false)
	if err != nil {
		return err
	}
	return s.Delete(ctx, key)
}

func (l *lazyStore) Copy(ctx context.Context, src, dst string) (storage.ObjectInfo, error) {
	s, err := l.get(ctx, false)
	if err != nil {
		return storage.ObjectInfo{}, err
	}
	return s.Copy(ctx, src, dst)
}

func (l *lazyStore) AbortIncompleteUploads(ctx context.Context, prefix string, olderThan time.Duration) (int, error) {
	s, err := l.get(ctx, false)
	if err != nil {
		return 0, err
	}
	return s.AbortIncompleteUploads(ctx, prefix, olderThan)
}

func (l *lazyStore) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.inner != nil {
		return l.inner.String()
	}
	return "unreachable object store (" + l.cfg.Backend + ")"
}

// tempDirs are the directories where opsd's temporary files live: the system temp dir, every
// job's temp_dir, and the directories of the databases a restore prepares files beside.
func tempDirs(cfg *config.Config) []string {
	dirs := []string{os.TempDir()}
	for _, j := range cfg.Jobs {
		switch {
		case j.SQLiteBackup != nil:
			dirs = append(dirs, j.SQLiteBackup.TempDir)
			for _, d := range j.SQLiteBackup.Databases {
				dirs = append(dirs, filepath.Dir(d.Path))
			}
		case j.SQLiteDrill != nil:
			dirs = append(dirs, j.SQLiteDrill.TempDir)
		case j.ContainerDrill != nil:
			dirs = append(dirs, j.ContainerDrill.TempDir)
		}
	}
	return dirs
}

// cleanTemp removes the temporary files and directories a crashed opsd left behind (only
// opsd's own, named by scratch, whose process is gone).
func (m *Main) cleanTemp(cfg *config.Config) {
	removed, err := scratch.Clean(tempDirs(cfg), time.Now())
	if err != nil {
		m.log.Warn().Err(err).Msg("cleaning temp files left by a previous run")
	}
	if len(removed.Paths) > 0 {
		m.log.Warn().Int("files", len(removed.Paths)).Int64("bytes", removed.Bytes).Strs("paths", removed.Paths).
			Msg("removed temp files left behind by a previous opsd")
	}
}

// markInterrupted marks the runs a previous process left "running" as interrupted and counts
// each as a failed run (metrics, /health, Sentry).
func (m *Main) markInterrupted(ctx context.Context, specs []jobs.Spec) error {
	// A CLI command (opsd backup db, jobs run) may be running against this state database: its
	// runs are live, not interrupted.
	cli, release, err := state.CLIsRunning(m.state.Path())
	if err != nil {
		return err
	}
	defer release()
	var keep []string
	if cli {
		keep = []string{jobs.TriggerCLI}
	}
	runs, err := m.state.MarkInterruptedRuns(ctx, time.Now(), keep...)
	if err != nil {
		return err
	}
	byName := map[string]jobs.Job{}
	for _, sp := range specs {
		byName[sp.Job.Name()] = sp.Job
	}
	for _, r := range runs {
		m.runner.RecordInterrupted(ctx, r, byName[r.Job])
	}
	if len(runs) > 0 {
		m.log.Warn().Int("runs", len(runs)).Msg("marked runs left running by a previous process as interrupted")
	}
	return nil
}

// dockerJobs returns the configured jobs that need the Docker engine.
func dockerJobs(cfg *config.Config) []string {
	var out []string
	for _, j := range cfg.Jobs {
		if j.IsEnabled() && (j.ContainerExport != nil || j.ContainerDrill != nil) {
			out = append(out, j.Name)
		}
	}
	sort.Strings(out)
	return out
}

// startChecks checks, now and every CheckInterval, the dependencies the configured jobs need:
// the Docker engine (when a job uses it) and an object store that was unreachable at start.
// Each unreachable one is a /health problem until it answers again.
func (m *Main) startChecks(ctx context.Context) {
	every := m.opts.CheckInterval
	if every <= 0 {
		every = 30 * time.Second
	}
	m.bg.Add(1)
	go func() {
		defer m.bg.Done()
		m.checkDeps(ctx)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				m.checkDeps(ctx)
			}
		}
	}()
}

func (m *Main) checkDeps(ctx context.Context) {
	// A CLI restore whose process died while this daemon runs (its start saw only older ones).
	reportInterrupted(ctx, m.env)
	if need := dockerJobs(m.cfg()); len(need) > 0 {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := m.docker.Ping(cctx)
		cancel()
		if err != nil {
			if m.problems.Set("docker", fmt.Sprintf("docker engine unreachable (needed by %s): %v", strings.Join(need, ", "), err)) {
				m.log.Error().Err(err).Strs("jobs", need).Msg("docker engine unreachable")
			}
		} else if m.problems.Clear("docker") {
			m.log.Info().Msg("docker engine reachable again")
		}
	} else {
		m.problems.Clear("docker")
	}
	if m.lazy != nil {
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err := m.lazy.get(sctx, true)
		cancel()
		if err != nil {
			m.problems.Set("store", m.redactor.Redact(err.Error()))
			m.log.Debug().Err(err).Msg("object store still unreachable; retrying")
		} else if m.problems.Clear("store") {
			m.log.Info().Str("store", m.lazy.String()).Msg("object store reachable")
		}
	}
}

// listJobs is /api/jobs: the scheduler's view, except that a job whose last run could not be
// recorded (the state database's disk is full) shows that failure, not the last recorded run.
func (m *Main) listJobs(ctx context.Context) []jobs.Info {
	infos := m.sched.Jobs(ctx)
	byName := map[string]string{}
	for _, p := range m.problems.List() {
		if job, ok := strings.CutPrefix(p.Name, "record:"); ok {
			byName[job] = p.Error
		}
	}
	for i := range infos {
		if msg, ok := byName[infos[i].Name]; ok {
			infos[i].LastOutcome, infos[i].LastError = "failure", msg
		}
	}
	return infos
}
