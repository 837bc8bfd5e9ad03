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
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/wopr-network/opsd/alerts"
	"github.com/wopr-network/opsd/config"
	"github.com/wopr-network/opsd/internal/artifact"
	"github.com/wopr-network/opsd/internal/coord"
	"github.com/wopr-network/opsd/internal/docker"
	"github.com/wopr-network/opsd/internal/health"
	"github.com/wopr-network/opsd/internal/httpapi"
	"github.com/wopr-network/opsd/internal/membuf"
	"github.com/wopr-network/opsd/internal/metrics"
	"github.com/wopr-network/opsd/internal/prefixlock"
	"github.com/wopr-network/opsd/internal/restore"
	"github.com/wopr-network/opsd/internal/scratch"
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
	// StoreProbeInterval is how often an idle daemon asks the object store whether it answers
	// (storage.Probe), on the alert evaluation's wake-up; default 5m.
	StoreProbeInterval time.Duration

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
	// keyLocks keep the artifact writers of one key apart (lock files in the state directory).
	keyLocks *artifact.KeyLocks
	docker   *docker.Client
	cliLock  *state.Lock
	// problems make /health degraded besides stale targets.
	problems *health.Problems
	// lazy is set when the object store could not be opened at start (daemon only).
	lazy *storage.Lazy
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
	fail := func(err error) (*env, error) {
		st.Close()
		cliLock.Release()
		return nil, err
	}
	problems := &health.Problems{}
	octx, cancel := ctx, context.CancelFunc(func() {})
	if o.daemon {
		// Do not hold the daemon's start (and /health) for the client's retries.
		octx, cancel = context.WithTimeout(ctx, 3*time.Second)
	}
	store, err := openStore(octx, cfg)
	cancel()
	var lazy *storage.Lazy
	if err != nil {
		if !o.daemon {
			return fail(err)
		}
		// The daemon starts anyway: /health, metrics and alerts stay up, /health says degraded,
		// and the store is opened again on use and every CheckInterval.
		lazy = storage.NewLazy(func(ctx context.Context) (storage.Store, error) { return openStore(ctx, cfg) }, cfg.Storage.Backend, err)
		store = lazy
		problems.Set("store", "object store unreachable: "+red.Redact(err.Error()))
		log.Error().Err(err).Msg("object store unreachable at start; starting anyway and retrying")
	}
	sn, err := telemetry.NewSentry(telemetry.SentryOptions{DSN: cfg.Sentry.DSN.Value(), Environment: cfg.Sentry.Environment,
		Release: "opsd@" + version, Node: cfg.NodeID, SampleRate: cfg.Sentry.SampleRate}, red)
	if err != nil {
		return fail(err)
	}
	reg := metrics.NewRegistry()
	m := metrics.New(reg, version)
	m.Backups.SetStaleAfter(cfg.State.StaleAfter.D())
	if err := jobs.SeedTargetMetrics(ctx, st, m); err != nil {
		return fail(err)
	}
	dc, err := docker.New(cfg.Docker.Host)
	if err != nil {
		return fail(err)
	}
	keyLocks := artifact.NewKeyLocks(filepath.Dir(cfg.State.Path))
	keyLocks.OnWait = func(key string) {
		log.Warn().Str("key", key).Msg("waiting for another opsd writing this key (the daemon or a command on this host)")
	}
	e := &env{cfg: cfg, log: log, redactor: red, reg: reg, metrics: m, state: st, store: instrument(store, m, keyLocks), keyLocks: keyLocks, sentry: sn, locks: newLocks(cfg, log), docker: dc,
		problems: problems, lazy: lazy, cliLock: cliLock}
	e.runner = jobs.NewRunner(st, m, sn, log, cfg.NodeID, cfg.Scheduler.MaxConcurrent)
	e.runner.Problems = problems
	e.runner.SetKeepRuns(cfg.State.KeepRuns)
	return e, nil
}

func (e *env) close(ctx context.Context) {
	e.sentry.Flush(ctx)
	e.docker.Close()
	e.state.Close()
	e.locks.Close()
	e.cliLock.Release()
}

func (e *env) deps(cfg *config.Config, store storage.Store) deps {
	return deps{cfg: cfg, store: store, log: e.log, locks: e.locks, docker: e.docker, state: e.state}
}

// reporting is where the restores found interrupted are reported.
func (e *env) reporting() restore.Reporting {
	return restore.Reporting{Log: e.log, Metrics: e.metrics.Restore, Problems: e.problems, Sentry: e.sentry}
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
	mem     *membuf.Releaser // returns freed memory to the OS after start-up and runs
	reload  sync.Mutex
	runCtx  context.Context
	cancel  context.CancelFunc
	stopBg  context.CancelFunc
	bg      sync.WaitGroup
	closing atomic.Bool
	// finishing is set while manifests this process could not write are retried (periodic).
	finishing atomic.Bool

	storeMu   sync.RWMutex // guards env.store, which a reload may replace
	evaluator *alerts.Evaluator
	dispatch  *alerts.Dispatcher
	alerts    *alerts.Builder

	coord *coord.Postgres // fleet coordination (nil without coordination.postgres)
	fleet *coord.Fleet

	// restores are the restores this daemon runs (admin API): cancellable, cancelled by Close.
	restores restore.Registry
	// lock is the exclusive lock on the state database (one daemon per state database).
	lock *state.Lock
	// probes paces periodic's store probes (only periodic touches it).
	probes health.ProbeClock
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
	m := &Main{env: e, opts: o, lock: lock, mem: membuf.NewReleaser(), probes: health.ProbeClock{Every: o.StoreProbeInterval}}
	e.runner.Idle = func() { m.mem.Release() }
	fail := func(err error) (*Main, error) {
		e.close(ctx)
		lock.Release()
		return nil, err
	}
	m.cfgPtr.Store(cfg)
	// Temp files a crashed opsd left behind (only opsd's own, whose process is gone).
	if removed, err := scratch.Clean(cfg.TempDirs(), time.Now()); err != nil {
		m.log.Warn().Err(err).Msg("cleaning temp files left by a previous run")
	} else if len(removed.Paths) > 0 {
		m.log.Warn().Int("files", len(removed.Paths)).Int64("bytes", removed.Bytes).Strs("paths", removed.Paths).
			Msg("removed temp files left behind by a previous opsd")
	}
	m.alerts = &alerts.Builder{State: e.state, Docker: e.docker, Log: e.log, Config: m.cfg}
	m.sched, err = jobs.NewScheduler(e.runner)
	if err != nil {
		return fail(err)
	}
	specs, err := buildSpecs(cfg, m.deps(cfg, e.store))
	if err != nil {
		return fail(err)
	}
	// Restores a killed process left running are reported with their safety copies (their runs
	// marked) first; then the other runs it left "running" are failed runs, marked before the
	// scheduler seeds the metrics from job_runs, so opsd_job_last_run_success says 0 for them.
	restore.ReportInterrupted(ctx, e.state, e.reporting())
	if err := e.runner.RecoverInterrupted(ctx, specs); err != nil {
		return fail(err)
	}
	if err := m.sched.Apply(specs); err != nil {
		return fail(err)
	}
	e.runner.RetireRemovedJobs(ctx, jobNames(cfg))
	alertSpecs, err := m.alerts.Specs(cfg)
	if err != nil {
		return fail(err)
	}
	m.dispatch = alerts.NewDispatcher(alerts.Notifiers(cfg.Alerts.Notify, e.sentry), e.state, e.metrics, e.log)
	m.evaluator = alerts.NewEvaluator(e.state, e.metrics, e.log, m.dispatch, cfg.NodeID, cfg.Alerts.Interval.D())
	m.evaluator.SetRules(alertSpecs)
	m.evaluator.OnEvaluate = m.periodic
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
			list := jobs.WithRecordFailures(m.sched.Jobs(ctx), m.problems)
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
		Snapshots: m.snapshots,
		Alerts:    func() any { return m.evaluator.Statuses() },
		Health: func(ctx context.Context) any {
			cfg := m.cfg()
			return alerts.AdminHealth(ctx, time.Now(), cfg.Alerts, alerts.ActiveBots(m.fleet, cfg.HasContainerExports, m.docker), m.evaluator.Statuses(), m.log)
		},
		Restore:       m.startRestore,
		NodeRestore:   m.startNodeRestore,
		CancelRestore: m.cancelRestore,
	})
	if err := m.openCoordination(ctx, cfg); err != nil {
		e.close(ctx)
		return nil, err
	}
	if m.coord != nil {
		m.evaluator.SetRules(m.withNodeLost(alertSpecs))
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
		m.goBg(func() {
			config.WatchSince(bgCtx, cfg.File, cfg.Hash, cfg.Reload.Interval.D(), func() {
				if _, err := m.Reload(bgCtx); err != nil {
					m.log.Error().Err(err).Msg("config reload failed; the previous config keeps running")
				}
			})
		})
	}
	m.dispatch.Start(context.WithoutCancel(bgCtx)) // drains on Close, bounded there
	if stops := m.alerts.Stops; stops != nil {
		stops.Kick = m.evaluator.Kick
		stops.OnConnection = m.problems.Wake // the Docker dependency follows the stream
		m.goBg(func() { stops.Watch(bgCtx) })
	}
	m.goBg(func() { m.evaluator.Run(bgCtx) })
	m.heartbeats(bgCtx)
	m.startChecks(bgCtx)
	m.ready.Store(true)
	m.mem.Release() // start-up's garbage back to the OS (the runs' when the last one ends)
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
	fail := func(err error) (bool, error) {
		m.metrics.ConfigReloadSuccessful.Set(0)
		m.metrics.ConfigReloads.WithLabelValues("failure").Inc()
		// /health says it too: the file on disk is not what runs, and a restart would fail.
		msg, _, _ := strings.Cut(m.redactor.Redact(err.Error()), "\n")
		if len(msg) > 300 {
			msg = msg[:300] + "..."
		}
		m.problems.Set("config", "the edited config file cannot be applied; the previous config keeps running: "+msg)
		return false, fmt.Errorf("reload: %w", err)
	}
	cfg, err := config.Load(old.File)
	if err != nil {
		return fail(fmt.Errorf("does not load (a restart would fail): %w", err))
	}
	if cfg.Hash == old.Hash {
		// The file on disk is valid again (e.g. a bad edit reverted): it is what runs.
		m.metrics.ConfigReloadSuccessful.Set(1)
		m.problems.Clear("config")
		m.metrics.ConfigReloads.WithLabelValues("unchanged").Inc()
		return false, nil
	}
	store := m.objStore()
	if !reflect.DeepEqual(cfg.Storage, old.Storage) {
		s, err := openStore(ctx, cfg)
		if err != nil {
			return fail(err)
		}
		store = instrument(s, m.metrics, m.keyLocks)
	}
	specs, err := buildSpecs(cfg, m.deps(cfg, store))
	var alertSpecs []alerts.Spec
	if err == nil {
		alertSpecs, err = m.alerts.Specs(cfg)
	}
	if err == nil {
		err = m.sched.Apply(specs)
	}
	if err != nil {
		return fail(err)
	}
	for _, w := range config.RestartOnly(old, cfg) {
		m.log.Warn().Str("field", w).Msg("changed in the config but only takes effect after a restart")
	}
	m.storeMu.Lock()
	m.store = store
	m.storeMu.Unlock()
	m.evaluator.SetRules(m.withNodeLost(alertSpecs))
	m.runner.RetireRemovedJobs(ctx, jobNames(cfg))
	m.redactor.Set(append(old.Secrets(), cfg.Secrets()...))
	m.metrics.Backups.SetStaleAfter(cfg.State.StaleAfter.D())
	m.runner.SetKeepRuns(cfg.State.KeepRuns)
	m.cfgPtr.Store(cfg)
	m.metrics.ConfigReloadSuccessful.Set(1)
	m.problems.Clear("config")
	m.metrics.ConfigReloadTimestamp.SetToCurrentTime()
	m.metrics.ConfigReloads.WithLabelValues("success").Inc()
	m.problems.Wake() // the dependencies the new jobs need
	m.log.Info().Int("jobs", len(cfg.Jobs)).Msg("config reloaded")
	return true, nil
}

// jobNames returns the names of the config's jobs.
func jobNames(cfg *config.Config) []string {
	names := make([]string, 0, len(cfg.Jobs))
	for _, j := range cfg.Jobs {
		names = append(names, j.Name)
	}
	return names
}

// snapshots is GET /api/admin/snapshots/{target}.
func (m *Main) snapshots(ctx context.Context, target string) ([]httpapi.Snapshot, error) {
	keys, err := m.cfg().Layout()
	if err != nil {
		return nil, err
	}
	return httpapi.ListSnapshots(ctx, keys, m.objStore(), m.state, m.cfg().NodeID, target)
}

// startChecks checks the dependencies the configured jobs need: the Docker engine (when a job
// uses it), an object store that was unreachable at start, and CLI restores that died. Each
// unreachable one is a /health problem until it answers again. What has an event is checked on
// it, the rest every CheckInterval: the engine is up while the unexpected-stop alert's event
// stream is open (the stream ends when the engine goes away; it is pinged every interval only
// while the stream is lost, and Wake on reconnection clears the problem), the store is probed
// when periodic asks, and a restore is looked at when a liveness lock is created or closed.
func (m *Main) startChecks(ctx context.Context) {
	every := m.opts.CheckInterval
	if every <= 0 {
		every = 30 * time.Second
	}
	stops := m.alerts.Stops
	streamUp := func() bool { return stops != nil && stops.Connected() }
	deps := []health.Dependency{
		health.DockerDependency(func() []string { return m.cfg().DockerJobs() }, streamUp, m.docker.Ping),
		health.StoreDependency(m.lazy, m.objStore, m.redactor.Redact),
		restore.Dependency(ctx, m.state, m.reporting(), m.problems.Wake),
	}
	m.goBg(func() { m.problems.Watch(ctx, every, m.log, deps...) })
}

// periodic is the daemon's periodic work, done on the alert evaluation's wake-up (alerts.interval,
// every minute by default) so that an idle daemon wakes no more often: when the state database
// changed (a CLI command's run, in another process), the metrics seeded from it at start follow
// (Scheduler.SyncMetrics: one small query unless a run started or ended), and every
// StoreProbeInterval the dependency checks run, which probe the object store (an idle daemon
// whose store died says so in /health, not at the next backup).
func (m *Main) periodic(ctx context.Context, now time.Time, stateChanged bool) {
	if stateChanged {
		if err := m.sched.SyncMetrics(ctx); err != nil {
			m.log.Warn().Err(err).Msg("cannot bring the metrics up to date with the state database")
		}
	}
	if m.probes.Due(now) {
		m.problems.Wake()
	}
	// Uploads published while the store then went away before their manifest: their key's object
	// is rejected by every reader until the manifest is written. Retried at each evaluation, in
	// the background, one pass at a time.
	if artifact.PendingManifests() > 0 && !m.closing.Load() && m.finishing.CompareAndSwap(false, true) {
		m.goBg(func() {
			defer m.finishing.Store(false)
			fctx, cancel := context.WithTimeout(ctx, time.Minute)
			defer cancel()
			done, err := artifact.FinishPending(fctx, m.objStore())
			for _, d := range done {
				m.log.Warn().Str("key", d.Key).Msg("wrote the manifest of an upload whose store went away after publishing it")
			}
			if err != nil && fctx.Err() == nil {
				m.log.Warn().Err(err).Int("pending", artifact.PendingManifests()).Msg("manifests of published uploads still not written; retried at the next evaluation")
			}
		})
	}
}

// goBg runs f in the background; Close waits for it.
func (m *Main) goBg(f func()) {
	m.bg.Add(1)
	go func() {
		defer m.bg.Done()
		f()
	}()
}

// Close stops the daemon gracefully: no new runs start, runs in progress get until ctx ends (the
// shutdown timeout) to finish, then they are cancelled and given a short, bounded time to clean
// up; then the HTTP server stops, Sentry is flushed and the state database is closed.
func (m *Main) Close(ctx context.Context) error {
	if !m.closing.CompareAndSwap(false, true) {
		return nil
	}
	m.ready.Store(false)
	m.restores.StopAll() // a restore stops at its next step and rolls back; waited for below
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
