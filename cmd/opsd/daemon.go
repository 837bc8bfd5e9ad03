package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/wopr-network/opsd/alerts"
	"github.com/wopr-network/opsd/config"
	"github.com/wopr-network/opsd/internal/coord"
	"github.com/wopr-network/opsd/internal/docker"
	"github.com/wopr-network/opsd/internal/health"
	"github.com/wopr-network/opsd/internal/httpapi"
	"github.com/wopr-network/opsd/internal/metrics"
	"github.com/wopr-network/opsd/internal/prefixlock"
	"github.com/wopr-network/opsd/internal/state"
	"github.com/wopr-network/opsd/internal/storage"
	"github.com/wopr-network/opsd/internal/telemetry"
	"github.com/wopr-network/opsd/jobs"
)

// Options tune NewMain beyond the config.
type Options struct {
	Stderr io.Writer
	// Listen overrides http.listen (tests use 127.0.0.1:0).
	Listen string
	// LogLevel overrides log.level.
	LogLevel string
	// CheckInterval is how often the daemon checks the dependencies its jobs need (the Docker
	// engine, an object store that was unreachable at start); default 30s.
	CheckInterval time.Duration

	// daemon: an unreachable object store does not stop the start (it is retried).
	daemon bool
}

// env is what every command needs: config, logging, state, store, metrics, Sentry and a runner.
type env struct {
	cfg      *config.Config
	log      zerolog.Logger
	redactor *telemetry.Redactor
	reg      *metrics.Registry
	metrics  *metrics.Metrics
	state    *state.Store
	store    storage.Store
	sentry   *telemetry.Sentry
	runner   *jobs.Runner
	locks    *prefixlock.Locks
	docker   *docker.Client
	cliLock  *state.Lock
	// problems make /health degraded besides stale targets.
	problems *health.Problems
	// lazy is set when the object store could not be opened at start (daemon only).
	lazy *lazyStore
}

// newEnv opens everything a command needs from the config.
func newEnv(ctx context.Context, cfg *config.Config, o Options) (*env, error) {
	if cfg.MemoryLimit > 0 && os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(int64(cfg.MemoryLimit))
	}
	red := telemetry.NewRedactor(cfg.Secrets()...)
	level := cfg.Log.Level
	if o.LogLevel != "" {
		level = o.LogLevel
	}
	log := telemetry.NewLogger(o.Stderr, level, cfg.Log.Format, red).With().Str("node", cfg.NodeID).Logger()
	var cliLock *state.Lock
	if !o.daemon {
		// Say a CLI command uses the state database, so a daemon starting meanwhile does not
		// take this command's runs for interrupted ones.
		l, err := state.AcquireCLILock(ctx, cfg.State.Path)
		if err != nil {
			return nil, err
		}
		cliLock = l
	}
	st, err := state.Open(ctx, cfg.State.Path)
	if err != nil {
		cliLock.Release()
		return nil, err
	}
	problems := &health.Problems{}
	octx, cancel := ctx, context.CancelFunc(func() {})
	if o.daemon {
		// Do not hold the daemon's start (and /health) for the client's retries.
		octx, cancel = context.WithTimeout(ctx, 3*time.Second)
	}
	store, err := openStore(octx, cfg.Storage)
	cancel()
	var lazy *lazyStore
	if err != nil {
		if !o.daemon {
			st.Close()
			cliLock.Release()
			return nil, err
		}
		// The daemon starts anyway: /health, metrics and alerts stay up, /health says degraded,
		// and the store is opened again on use and every CheckInterval.
		lazy = newLazyStore(cfg.Storage, err)
		store = lazy
		problems.Set("store", "object store unreachable: "+red.Redact(err.Error()))
		log.Error().Err(err).Msg("object store unreachable at start; starting anyway and retrying")
	}
	sn, err := telemetry.NewSentry(telemetry.SentryOptions{DSN: cfg.Sentry.DSN.Value(), Environment: cfg.Sentry.Environment,
		Release: "opsd@" + version, Node: cfg.NodeID, SampleRate: cfg.Sentry.SampleRate}, red)
	if err != nil {
		st.Close()
		cliLock.Release()
		return nil, err
	}
	reg := metrics.NewRegistry()
	m := metrics.New(reg, version)
	m.Backups.SetStaleAfter(cfg.State.StaleAfter.D())
	if err := loadTracker(ctx, st, m); err != nil {
		st.Close()
		cliLock.Release()
		return nil, err
	}
	dc, err := docker.New(cfg.Docker.Host)
	if err != nil {
		st.Close()
		cliLock.Release()
		return nil, err
	}
	e := &env{cfg: cfg, log: log, redactor: red, reg: reg, metrics: m, state: st, store: instrument(store, m), sentry: sn, locks: prefixlock.NewShared(filepath.Dir(cfg.State.Path)), docker: dc,
		problems: problems, lazy: lazy, cliLock: cliLock}
	e.runner = jobs.NewRunner(st, m, sn, log, cfg.NodeID, cfg.Scheduler.MaxConcurrent)
	e.runner.Problems = problems
	e.runner.SetKeepRuns(cfg.State.KeepRuns)
	return e, nil
}

// loadTracker seeds the per-target metrics from the state database, so staleness survives a
// restart.
func loadTracker(ctx context.Context, st *state.Store, m *metrics.Metrics) error {
	all, err := st.ListBackups(ctx, time.Now(), time.Hour)
	if err != nil {
		return err
	}
	for _, b := range all {
		ts := metrics.TargetState{Job: b.Job, Kind: b.Kind, Node: b.NodeID, LastOK: b.LastBackupSuccess}
		if b.LastBackupAt != nil {
			ts.LastSuccess = *b.LastBackupAt
		}
		if b.LastBackupSizeMB != nil {
			ts.SizeBytes = int64(*b.LastBackupSizeMB * 1024 * 1024)
		}
		m.Backups.Set(b.ContainerID, ts)
	}
	return nil
}

func (e *env) close(ctx context.Context) {
	e.sentry.Flush(ctx)
	e.docker.Close()
	e.state.Close()
	e.cliLock.Release()
}

func (e *env) deps(cfg *config.Config, store storage.Store) deps {
	return deps{cfg: cfg, store: store, log: e.log, locks: e.locks, docker: e.docker, state: e.state}
}

// Main is the daemon: built by hand from the config by NewMain, started by Run, stopped by Close.
type Main struct {
	*env
	opts    Options
	cfgPtr  atomic.Pointer[config.Config]
	sched   *jobs.Scheduler
	http    *httpapi.Server
	addr    net.Addr
	ready   atomic.Bool
	reload  sync.Mutex
	runCtx  context.Context
	cancel  context.CancelFunc
	stopBg  context.CancelFunc
	bg      sync.WaitGroup
	closing atomic.Bool

	storeMu   sync.RWMutex // guards env.store, which a reload may replace
	evaluator *alerts.Evaluator
	dispatch  *alerts.Dispatcher
	stops     *alerts.UnexpectedStops

	coord *coord.Postgres // fleet coordination (nil without coordination.postgres)
	fleet *metrics.Fleet

	// restoring holds the containers an admin restore is running for (name → restore id).
	restoring sync.Map
	// lock is the exclusive lock on the state database (one daemon per state database).
	lock *state.Lock
}

// NewMain builds the daemon from a validated config: state, store, metrics, Sentry, the runner,
// the scheduler with every job, and the HTTP server (not yet listening).
func NewMain(ctx context.Context, cfg *config.Config, o Options) (*Main, error) {
	// One daemon per state database, decided before anything is touched: a second daemon must
	// not mark the first one's running jobs interrupted.
	lock, err := state.AcquireLock(cfg.State.Path)
	if err != nil {
		return nil, err
	}
	o.daemon = true
	e, err := newEnv(ctx, cfg, o)
	if err != nil {
		lock.Release()
		return nil, err
	}
	m := &Main{env: e, opts: o, lock: lock}
	fail := func(err error) (*Main, error) {
		e.close(ctx)
		lock.Release()
		return nil, err
	}
	m.cfgPtr.Store(cfg)
	m.cleanTemp(cfg)
	m.sched, err = jobs.NewScheduler(e.runner)
	if err != nil {
		return fail(err)
	}
	specs, err := buildSpecs(cfg, m.deps(cfg, e.store))
	if err != nil {
		return fail(err)
	}
	// Runs a killed process left "running" are failed runs: marked before the scheduler seeds
	// the metrics from job_runs, so opsd_job_last_run_success says 0 for them.
	if err := m.markInterrupted(ctx, specs); err != nil {
		return fail(err)
	}
	if err := m.sched.Apply(specs); err != nil {
		return fail(err)
	}
	m.retireRemovedJobs(ctx, cfg)
	alertSpecs, err := m.buildAlerts(cfg)
	if err != nil {
		return fail(err)
	}
	m.dispatch = alerts.NewDispatcher(m.notifiers(cfg), e.state, e.metrics, e.log)
	m.evaluator = alerts.NewEvaluator(e.state, e.metrics, e.log, m.dispatch, cfg.NodeID, cfg.Alerts.Interval.D())
	m.evaluator.SetRules(alertSpecs)
	e.metrics.ConfigReloadSuccessful.Set(1)
	e.metrics.ConfigReloadTimestamp.SetToCurrentTime()
	m.http = httpapi.New(httpapi.Options{
		Service:    "opsd",
		State:      e.state,
		StaleAfter: func() time.Duration { return m.cfg().State.StaleAfter.D() },
		Gatherer:   e.reg,
		AdminToken: func() string { return m.cfg().HTTP.AdminToken.Value() },
		Ready:      m.ready.Load,
		Log:        e.log,
		Problems:   e.problems,
		ListJobs: func(ctx context.Context, full bool) any {
			list := m.listJobs(ctx)
			for i := range list {
				if full {
					list[i].LastError = m.redactor.Redact(list[i].LastError)
				} else {
					list[i].LastError = m.http.PublicError(list[i].LastError)
				}
			}
			return list
		},
		Redact:     func(s string) string { return m.redactor.Redact(s) },
		TriggerJob: m.trigger,
		JobExists: func(name string) bool {
			_, ok := m.sched.Spec(name)
			return ok
		},
		Reload: m.Reload,
	})
	m.http.EnableAdmin(httpapi.AdminOptions{
		Snapshots:   m.snapshots,
		Alerts:      func() any { return m.evaluator.Statuses() },
		Health:      m.adminHealth,
		Restore:     m.startRestore,
		NodeRestore: m.startNodeRestore,
	})
	if err := m.openCoordination(ctx, cfg); err != nil {
		e.close(ctx)
		return nil, err
	}
	if m.coord != nil {
		m.evaluator.SetRules(append(alertSpecs, m.nodeLostRule()))
	}
	return m, nil
}

func (m *Main) cfg() *config.Config { return m.cfgPtr.Load() }

// objStore returns the current object store.
func (m *Main) objStore() storage.Store {
	m.storeMu.RLock()
	defer m.storeMu.RUnlock()
	return m.store
}

func (m *Main) trigger(name string) error {
	err := m.sched.Trigger(name)
	switch {
	case errors.Is(err, jobs.ErrUnknownJob):
		return fmt.Errorf("%w: %v", httpapi.ErrNotFound, err)
	case errors.Is(err, jobs.ErrAlreadyRunning), errors.Is(err, jobs.ErrHeldElsewhere):
		return fmt.Errorf("%w: %v", httpapi.ErrConflict, err)
	}
	return err
}

// Addr is the HTTP server's bound address (after Run).
func (m *Main) Addr() net.Addr { return m.addr }

// Run binds the HTTP server, starts the scheduler and the config watcher, and returns. Runs get
// a context that Close cancels when the shutdown grace period ends.
func (m *Main) Run(ctx context.Context) error {
	cfg := m.cfg()
	listen := cfg.HTTP.Listen
	if m.opts.Listen != "" {
		listen = m.opts.Listen
	}
	if listen != "" {
		addr, err := m.http.Listen(listen)
		if err != nil {
			return err
		}
		m.addr = addr
	}
	m.runCtx, m.cancel = context.WithCancel(context.WithoutCancel(ctx))
	m.sched.Start(m.runCtx)
	bgCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	m.stopBg = stop
	if cfg.File != "" && cfg.Reload.Watching() {
		m.bg.Add(1)
		go func() {
			defer m.bg.Done()
			config.WatchSince(bgCtx, cfg.File, cfg.Hash, cfg.Reload.Interval.D(), func() {
				if _, err := m.Reload(bgCtx); err != nil {
					m.log.Error().Err(err).Msg("config reload failed; the previous config keeps running")
				}
			})
		}()
	}
	m.startAlerts(bgCtx)
	m.heartbeats(bgCtx)
	m.startChecks(bgCtx)
	m.ready.Store(true)
	ev := m.log.Info().Int("jobs", len(cfg.Jobs)).Str("store", m.objStore().String())
	if m.addr != nil {
		ev = ev.Str("listen", m.addr.String())
	}
	ev.Msg("opsd started")
	return nil
}

// Reload re-reads the config file: parse, validate and build every job beside the running set,
// then swap. A bad file keeps the old config running. Unchanged content is a no-op.
func (m *Main) Reload(ctx context.Context) (bool, error) {
	m.reload.Lock()
	defer m.reload.Unlock()
	if err := ctx.Err(); err != nil {
		return false, fmt.Errorf("reload: %w", err) // shutting down, or the caller left
	}
	old := m.cfg()
	if old.File == "" {
		return false, errors.New("reload: the config was not loaded from a file")
	}
	cfg, err := config.Load(old.File)
	if err != nil {
		m.metrics.ConfigReloadSuccessful.Set(0)
		m.metrics.ConfigReloads.WithLabelValues("failure").Inc()
		return false, fmt.Errorf("reload: %w", err)
	}
	if cfg.Hash == old.Hash {
		// The file on disk is valid again (e.g. a bad edit reverted): it is what runs.
		m.metrics.ConfigReloadSuccessful.Set(1)
		m.metrics.ConfigReloads.WithLabelValues("unchanged").Inc()
		return false, nil
	}
	store := m.objStore()
	if !reflect.DeepEqual(cfg.Storage, old.Storage) {
		s, err := openStore(ctx, cfg.Storage)
		if err != nil {
			m.metrics.ConfigReloadSuccessful.Set(0)
			m.metrics.ConfigReloads.WithLabelValues("failure").Inc()
			return false, fmt.Errorf("reload: %w", err)
		}
		store = instrument(s, m.metrics)
	}
	specs, err := buildSpecs(cfg, m.deps(cfg, store))
	var alertSpecs []alerts.Spec
	if err == nil {
		alertSpecs, err = m.buildAlerts(cfg)
	}
	if err == nil {
		err = m.sched.Apply(specs)
	}
	if err != nil {
		m.metrics.ConfigReloadSuccessful.Set(0)
		m.metrics.ConfigReloads.WithLabelValues("failure").Inc()
		return false, fmt.Errorf("reload: %w", err)
	}
	for _, w := range restartOnly(old, cfg) {
		m.log.Warn().Str("field", w).Msg("changed in the config but only takes effect after a restart")
	}
	m.storeMu.Lock()
	m.store = store
	m.storeMu.Unlock()
	if m.coord != nil {
		alertSpecs = append(alertSpecs, m.nodeLostRule())
	}
	m.evaluator.SetRules(alertSpecs)
	m.retireRemovedJobs(ctx, cfg)
	m.redactor.Set(append(old.Secrets(), cfg.Secrets()...))
	m.metrics.Backups.SetStaleAfter(cfg.State.StaleAfter.D())
	m.runner.SetKeepRuns(cfg.State.KeepRuns)
	m.cfgPtr.Store(cfg)
	m.metrics.ConfigReloadSuccessful.Set(1)
	m.metrics.ConfigReloadTimestamp.SetToCurrentTime()
	m.metrics.ConfigReloads.WithLabelValues("success").Inc()
	m.log.Info().Int("jobs", len(cfg.Jobs)).Msg("config reloaded")
	return true, nil
}

// retireRemovedJobs stops tracking the backup status of jobs no longer in the config, so their
// targets do not stay stale forever.
func (m *Main) retireRemovedJobs(ctx context.Context, cfg *config.Config) {
	names := make([]string, 0, len(cfg.Jobs))
	for _, j := range cfg.Jobs {
		names = append(names, j.Name)
	}
	gone, err := m.state.RetireJobsExcept(ctx, names, time.Now())
	if err != nil {
		m.log.Error().Err(err).Msg("cannot retire the backup status of removed jobs")
	}
	for _, b := range gone {
		m.metrics.Backups.DeleteFor(b.Job, b.ContainerID)
		m.log.Info().Str("job", b.Job).Str("target", b.ContainerID).Msg("job removed from the config; stopped tracking its target")
	}
}

func restartOnly(old, cfg *config.Config) []string {
	var out []string
	if old.HTTP.Listen != cfg.HTTP.Listen {
		out = append(out, "http.listen")
	}
	if old.State.Path != cfg.State.Path {
		out = append(out, "state.path")
	}
	if old.Sentry != cfg.Sentry {
		out = append(out, "sentry")
	}
	if old.Log != cfg.Log {
		out = append(out, "log")
	}
	if old.NodeID != cfg.NodeID {
		out = append(out, "node_id")
	}
	if !reflect.DeepEqual(old.Alerts.Notify, cfg.Alerts.Notify) {
		out = append(out, "alerts.notify")
	}
	if old.Alerts.Interval != cfg.Alerts.Interval {
		out = append(out, "alerts.interval")
	}
	if old.Coordination.Postgres != cfg.Coordination.Postgres {
		out = append(out, "coordination.postgres")
	}
	if old.Scheduler.MaxConcurrent != cfg.Scheduler.MaxConcurrent {
		out = append(out, "scheduler.max_concurrent")
	}
	if old.Docker.Host != cfg.Docker.Host {
		out = append(out, "docker.host") // the Docker client is built once, at start
	}
	return out
}

// Close stops the daemon gracefully: no new runs start, runs in progress get until ctx ends (the
// shutdown timeout) to finish, then they are cancelled and given a short, bounded time to clean
// up; then the HTTP server stops, Sentry is flushed and the state database is closed.
func (m *Main) Close(ctx context.Context) error {
	if !m.closing.CompareAndSwap(false, true) {
		return nil
	}
	m.ready.Store(false)
	if m.stopBg != nil {
		m.stopBg()
	}
	m.bg.Wait()
	if m.dispatch != nil {
		m.dispatch.Close(5 * time.Second)
	}
	err := m.sched.Shutdown(ctx)
	if m.cancel != nil {
		m.cancel()
	}
	if err != nil {
		m.log.Warn().Msg("shutdown timeout reached: cancelling runs in progress")
		cleanup, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if m.runner.Wait(cleanup) != nil {
			m.log.Error().Msg("runs did not stop within 10s of cancellation")
		}
		cancel()
	}
	hctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	m.http.Shutdown(hctx)
	m.log.Info().Msg("opsd stopped")
	if m.coord != nil {
		m.coord.Close()
	}
	m.env.close(hctx)
	m.lock.Release()
	return nil
}
