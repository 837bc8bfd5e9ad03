// Package coord coordinates opsd instances across the fleet through the platform's PostgreSQL
// database: durable claims of (job, scheduled time) so platform-wide jobs run once per tick
// across any number of nodes, session-level advisory locks held for the length of a run (a node
// that loses its session loses the lock, and its run is cancelled), prefix locks across hosts,
// and node heartbeats that give a fleet view. opsd creates and migrates its own tables in its
// own schema.
//
// The protocol of a platform tick: take the job's advisory lock, then claim the tick, run,
// record the outcome, and only then release the lock. So an unfinished claim whose job lock no
// session holds is a run its node lost (killed, or its session gone): another node may take
// it over once (Retake), while it is still the job's newest tick.
package coord

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"regexp"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// ErrHeld is returned when a lock is held by another opsd.
var ErrHeld = errors.New("held by another opsd")

// ErrUnavailable wraps errors reaching the coordination database.
var ErrUnavailable = errors.New("coordination database unavailable")

// Claim outcomes set by the coordination itself (the others are run outcomes).
const (
	// OutcomeInterrupted: the node's run was cancelled because it lost its session; the claim
	// stays open so another node can retry the tick.
	OutcomeInterrupted = "interrupted"
	// OutcomeLost: the node running the tick lost it (killed, or its session gone) and it was
	// not retried (retried once already, or a newer tick was claimed since).
	OutcomeLost = "lost"
)

// Options configure a Postgres coordinator.
type Options struct {
	DSN    string
	Schema string // default "opsd"
	Node   string
	// CheckInterval is how often a held lease checks its session (default 1s).
	CheckInterval time.Duration
	// LeaseTimeout bounds a lease's session check: a check that does not answer in time counts
	// as a lost session (default 2s).
	LeaseTimeout time.Duration
	// QueryTimeout bounds every statement (default 5s).
	QueryTimeout time.Duration
	// MaxConns bounds the pool (default 8); every held lock keeps one connection.
	MaxConns int32
	// NoMigrate skips creating the tables (a coordinator used only for locks).
	NoMigrate bool
}

// Postgres is a coordinator backed by PostgreSQL.
type Postgres struct {
	o        Options
	pool     *pgxpool.Pool
	mu       sync.Mutex
	ok       bool // the last statement reached the database
	migrated bool
	queries  atomic.Int64
	pings    atomic.Int64
	// instance tells this process's heartbeats from another's under the same node id.
	instance string
	host     string
	beaten   bool // a heartbeat of this process reached the database
}

var schemaName = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// counter counts the statements a coordinator sends (Queries), for the benchmark.
type counter struct{ n *atomic.Int64 }

func (c counter) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	c.n.Add(1)
	return ctx
}

func (c counter) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// Open connects and migrates the schema. The DSN (it holds a password) never appears in errors.
// An unreachable database returns the coordinator and an error: it is usable once the database
// answers (the tables are created then).
func Open(ctx context.Context, o Options) (*Postgres, error) {
	if o.Schema == "" {
		o.Schema = "opsd"
	}
	if !schemaName.MatchString(o.Schema) {
		return nil, fmt.Errorf("coordination: schema %q: want lowercase letters, digits and _", o.Schema)
	}
	if o.CheckInterval == 0 {
		o.CheckInterval = time.Second
	}
	if o.LeaseTimeout == 0 {
		o.LeaseTimeout = 2 * time.Second
	}
	if o.QueryTimeout == 0 {
		o.QueryTimeout = 5 * time.Second
	}
	if o.MaxConns == 0 {
		o.MaxConns = 8
	}
	cfg, err := pgxpool.ParseConfig(o.DSN)
	if err != nil {
		return nil, errors.New("coordination: the dsn does not parse (it is not shown: it may hold a password)")
	}
	cfg.MaxConns = o.MaxConns
	cfg.ConnConfig.ConnectTimeout = o.QueryTimeout
	if cfg.ConnConfig.RuntimeParams == nil {
		cfg.ConnConfig.RuntimeParams = map[string]string{}
	}
	cfg.ConnConfig.RuntimeParams["application_name"] = "opsd " + o.Node
	p := &Postgres{o: o, instance: newInstance()}
	p.host, _ = os.Hostname()
	cfg.ConnConfig.Tracer = counter{&p.queries}
	// pgxpool's default: a connection idle for over a second is pinged before use (a database
	// restart leaves dead connections in the pool); counted with the statements.
	cfg.ShouldPing = func(_ context.Context, sp pgxpool.ShouldPingParams) bool {
		if sp.IdleDuration > time.Second {
			p.pings.Add(1)
			return true
		}
		return false
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("coordination: %w", redact(err))
	}
	p.pool = pool
	if o.NoMigrate {
		return p, nil
	}
	if err := p.ensure(ctx); err != nil {
		// Start anyway: coordination comes back when the database does (platform jobs wait).
		return p, fmt.Errorf("coordination: %w", err)
	}
	return p, nil
}

// newInstance is a random id of this process, carried by its heartbeats.
func newInstance() string {
	b := make([]byte, 8)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// Node is this coordinator's node id.
func (p *Postgres) Node() string { return p.o.Node }

// Queries is how many statements this coordinator sent.
func (p *Postgres) Queries() int64 { return p.queries.Load() }

// Pings is how many liveness checks this coordinator sent: leases' session checks and the
// pool's pings of connections idle for over a second.
func (p *Postgres) Pings() int64 { return p.pings.Load() }

// ensure creates opsd's tables once the database answers.
func (p *Postgres) ensure(ctx context.Context) error {
	p.mu.Lock()
	done := p.migrated
	p.mu.Unlock()
	if done {
		return nil
	}
	if err := p.migrate(ctx); err != nil {
		return err
	}
	p.mu.Lock()
	p.migrated = true
	p.mu.Unlock()
	return nil
}

// redact keeps a connection error's meaning without its connection string.
func redact(err error) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s (%s)", pe.Message, pe.Code)
	}
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) {
		return errors.New("cannot connect to the coordination database")
	}
	return err
}

func (p *Postgres) setOK(ok bool) {
	p.mu.Lock()
	p.ok = ok
	p.mu.Unlock()
}

// Healthy reports whether the last statement reached the database.
func (p *Postgres) Healthy() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.ok
}

func (p *Postgres) exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	ctx, cancel := context.WithTimeout(ctx, p.o.QueryTimeout)
	defer cancel()
	tag, err := p.pool.Exec(ctx, sql, args...)
	p.setOK(err == nil || isPgError(err))
	if err != nil {
		return tag, fmt.Errorf("%w: %w", ErrUnavailable, redact(err))
	}
	return tag, nil
}

func isPgError(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe)
}

// migrate creates and upgrades opsd's tables, in one transaction under an advisory lock so
// that nodes starting together do not race. A schema that is up to date is only read from the
// catalog: DDL on an existing table (ALTER TABLE ... IF NOT EXISTS included) waits for an
// exclusive lock, and while it waits every other node's claims and heartbeats queue behind it
// (an operator's idle psql transaction that read the claims table would stall the fleet). A
// real upgrade gives up on a table lock after a second and is retried at the next use.
func (p *Postgres) migrate(ctx context.Context) error {
	s := p.o.Schema
	ctx, cancel := context.WithTimeout(ctx, 2*p.o.QueryTimeout)
	defer cancel()
	var current bool
	err := p.pool.QueryRow(ctx, `SELECT to_regclass($1 || '.nodes') IS NOT NULL AND to_regclass($1 || '.claims_open') IS NOT NULL
		AND (SELECT count(*) FROM pg_attribute WHERE attrelid = to_regclass($1 || '.claims')
			AND attname IN ('attempt', 'lost_node', 'lock_key') AND NOT attisdropped) = 3`, s).Scan(&current)
	if err == nil && current {
		p.setOK(true)
		return nil
	}
	err = pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		for _, st := range []string{
			`SELECT pg_advisory_xact_lock(` + fmt.Sprint(p.lockKey("migrate")) + `)`,
			`SET LOCAL lock_timeout = '1s'`,
			`CREATE SCHEMA IF NOT EXISTS ` + s,
			`CREATE TABLE IF NOT EXISTS ` + s + `.claims (
				job text NOT NULL, scheduled_at timestamptz NOT NULL, node text NOT NULL,
				claimed_at timestamptz NOT NULL DEFAULT now(), finished_at timestamptz, outcome text,
				PRIMARY KEY (job, scheduled_at))`,
			`ALTER TABLE ` + s + `.claims ADD COLUMN IF NOT EXISTS attempt int NOT NULL DEFAULT 1,
				ADD COLUMN IF NOT EXISTS lost_node text, ADD COLUMN IF NOT EXISTS lock_key bigint`,
			`CREATE INDEX IF NOT EXISTS claims_open ON ` + s + `.claims (job) WHERE finished_at IS NULL`,
			`CREATE TABLE IF NOT EXISTS ` + s + `.nodes (
				node text PRIMARY KEY, version text NOT NULL DEFAULT '', last_seen timestamptz NOT NULL,
				info jsonb NOT NULL DEFAULT '{}')`,
		} {
			if _, err := tx.Exec(ctx, st); err != nil {
				return err
			}
		}
		return nil
	})
	p.setOK(err == nil || isPgError(err))
	if err != nil {
		return fmt.Errorf("migrate schema %s: %w: %w", s, ErrUnavailable, redact(err))
	}
	return nil
}

// keepClaims is how long finished claims are kept (the table grows by one row per tick).
const keepClaims = "30 days"

// JobLock is the advisory lock a platform job's runs hold.
func JobLock(job string) string { return "job:" + job }

// Claim records that this node runs job's tick scheduled at; false when that tick was claimed
// already. The caller holds the job's lock (JobLock): claims are made under it, so an open
// claim whose lock nobody holds is a lost run. The claim is durable: a node whose clock is late,
// or that fires after another finished the tick, finds it claimed and does not run it again.
// Older ticks of the job still open (lost runs: the lock is ours) are closed as lost, and
// finished claims older than keepClaims are deleted.
func (p *Postgres) Claim(ctx context.Context, job string, scheduled time.Time) (bool, error) {
	if err := p.ensure(ctx); err != nil {
		return false, err
	}
	ctx, cancel := context.WithTimeout(ctx, p.o.QueryTimeout)
	defer cancel()
	s := p.o.Schema
	var won bool
	err := p.pool.QueryRow(ctx, `WITH closed AS (
			UPDATE `+s+`.claims SET finished_at = now(), outcome = '`+OutcomeLost+`', lost_node = node
			WHERE job = $1 AND finished_at IS NULL AND scheduled_at < $2 RETURNING 1),
		old AS (DELETE FROM `+s+`.claims WHERE job = $1 AND scheduled_at < $2 - interval '`+keepClaims+`' AND finished_at IS NOT NULL),
		ins AS (INSERT INTO `+s+`.claims (job, scheduled_at, node, lock_key) VALUES ($1, $2, $3, $4)
			ON CONFLICT DO NOTHING RETURNING 1)
		SELECT EXISTS (SELECT 1 FROM ins)`, job, scheduled.UTC(), p.o.Node, p.lockKey(JobLock(job))).Scan(&won)
	p.setOK(err == nil || isPgError(err))
	if err != nil {
		return false, fmt.Errorf("claim %s: %w: %w", job, ErrUnavailable, redact(err))
	}
	return won, nil
}

// Finish records how a claimed tick ended (before its lock is released).
func (p *Postgres) Finish(ctx context.Context, job string, scheduled time.Time, outcome string) error {
	_, err := p.exec(ctx, `UPDATE `+p.o.Schema+`.claims SET finished_at = now(), outcome = $3 WHERE job = $1 AND scheduled_at = $2 AND node = $4`,
		job, scheduled.UTC(), outcome, p.o.Node)
	return err
}

// Interrupted records that this node's run of a claimed tick was cancelled because it lost its
// session. The claim stays open: another node retries the tick once (Retake).
func (p *Postgres) Interrupted(ctx context.Context, job string, scheduled time.Time) error {
	_, err := p.exec(ctx, `UPDATE `+p.o.Schema+`.claims SET outcome = '`+OutcomeInterrupted+`' WHERE job = $1 AND scheduled_at = $2 AND node = $3 AND finished_at IS NULL`,
		job, scheduled.UTC(), p.o.Node)
	return err
}

// Release gives a claimed tick back (its run never started), so another node may take it.
func (p *Postgres) Release(ctx context.Context, job string, scheduled time.Time) error {
	_, err := p.exec(ctx, `DELETE FROM `+p.o.Schema+`.claims WHERE job = $1 AND scheduled_at = $2 AND node = $3 AND finished_at IS NULL`, job, scheduled.UTC(), p.o.Node)
	return err
}

// Retake takes over a lost run's tick (an open claim of another node; the caller holds the
// job's lock, so nobody runs it): true when this node now owns the claim and runs the tick
// (attempt 2, lost_node the node that lost it). A tick is retried at most once, and only while
// no newer tick of the job was claimed (a newer run supersedes it); otherwise it is closed as
// lost and false is returned.
func (p *Postgres) Retake(ctx context.Context, job string, scheduled time.Time) (bool, error) {
	s := p.o.Schema
	tag, err := p.exec(ctx, `UPDATE `+s+`.claims c SET lost_node = c.node, node = $3, attempt = c.attempt + 1, claimed_at = now(), outcome = NULL
		WHERE c.job = $1 AND c.scheduled_at = $2 AND c.finished_at IS NULL AND c.node <> $3 AND c.attempt < 2
		AND NOT EXISTS (SELECT 1 FROM `+s+`.claims l WHERE l.job = $1 AND l.scheduled_at > $2)`, job, scheduled.UTC(), p.o.Node)
	if err != nil {
		return false, err
	}
	if tag.RowsAffected() == 1 {
		return true, nil
	}
	_, err = p.exec(ctx, `UPDATE `+s+`.claims SET finished_at = now(), outcome = '`+OutcomeLost+`', lost_node = node
		WHERE job = $1 AND scheduled_at = $2 AND finished_at IS NULL AND node <> $3`, job, scheduled.UTC(), p.o.Node)
	return false, err
}

// Claim is one row of the claims table.
type Claim struct {
	Job         string
	ScheduledAt time.Time
	Node        string
	ClaimedAt   time.Time
	FinishedAt  *time.Time
	Outcome     string
	// Attempt is 2 for a tick retried after its first node lost the run (LostNode).
	Attempt  int
	LostNode string
}

// Claims returns the claims of a job, oldest first (tests and the fleet view).
func (p *Postgres) Claims(ctx context.Context, job string) ([]Claim, error) {
	ctx, cancel := context.WithTimeout(ctx, p.o.QueryTimeout)
	defer cancel()
	rows, err := p.pool.Query(ctx, `SELECT job, scheduled_at, node, claimed_at, finished_at, coalesce(outcome, ''), attempt, coalesce(lost_node, '')
		FROM `+p.o.Schema+`.claims WHERE job = $1 ORDER BY scheduled_at`, job)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, redact(err))
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Claim, error) {
		var c Claim
		err := r.Scan(&c.Job, &c.ScheduledAt, &c.Node, &c.ClaimedAt, &c.FinishedAt, &c.Outcome, &c.Attempt, &c.LostNode)
		return c, err
	})
}

// Lease is a session-level advisory lock held on its own connection. Lost is closed when the
// session is gone (the database restarted, the network failed): the lock is gone with it, so
// the holder must stop what it protects.
type Lease struct {
	keys   []int64
	shared []bool
	conn   *pgxpool.Conn
	lost   chan struct{}
	stop   chan struct{}
	once   sync.Once
	wg     sync.WaitGroup
	p      *Postgres
}

// Lost is closed when the lease's session is lost.
func (l *Lease) Lost() <-chan struct{} { return l.lost }

// lockID maps a lock name to an advisory lock key.
func lockID(key string) int64 {
	h := fnv.New64a()
	h.Write([]byte("opsd:" + key))
	return int64(h.Sum64())
}

// lockKey is the advisory lock key of a lock name in this coordinator's schema. Advisory locks
// are database-wide, so in a schema other than the default the name is qualified by it: fleets
// sharing one database in different schemas do not hold each other's job and prefix locks. The
// default schema keeps its keys (nodes of an earlier version still exclude these).
func (p *Postgres) lockKey(key string) int64 {
	if p.o.Schema != "opsd" {
		key = p.o.Schema + "/" + key
	}
	return lockID(key)
}

// lockReq is one advisory lock of a lease.
type lockReq struct {
	key    string
	shared bool
}

// TryLock takes the named lock without waiting: ErrHeld when another session holds it.
func (p *Postgres) TryLock(ctx context.Context, key string) (*Lease, error) {
	return p.tryLocks(ctx, []lockReq{{key: key}})
}

// tryLocks takes every lock on one connection, or none: ErrHeld when one is held elsewhere.
func (p *Postgres) tryLocks(ctx context.Context, reqs []lockReq) (*Lease, error) {
	name := reqs[len(reqs)-1].key
	qctx, cancel := context.WithTimeout(ctx, p.o.QueryTimeout)
	defer cancel()
	conn, err := p.pool.Acquire(qctx)
	if err != nil {
		p.setOK(false)
		return nil, fmt.Errorf("lock %s: %w: %w", name, ErrUnavailable, redact(err))
	}
	l := &Lease{conn: conn, lost: make(chan struct{}), stop: make(chan struct{}), p: p}
	for _, r := range reqs {
		fn := "pg_try_advisory_lock"
		if r.shared {
			fn = "pg_try_advisory_lock_shared"
		}
		var got bool
		if err := conn.QueryRow(qctx, `SELECT `+fn+`($1)`, p.lockKey(r.key)).Scan(&got); err != nil {
			p.setOK(false)
			conn.Conn().Close(context.Background()) // the session's locks go with it
			conn.Release()
			return nil, fmt.Errorf("lock %s: %w: %w", name, ErrUnavailable, redact(err))
		}
		if !got {
			p.setOK(true)
			l.unlock()
			conn.Release()
			return nil, fmt.Errorf("lock %s: %w", name, ErrHeld)
		}
		l.keys, l.shared = append(l.keys, p.lockKey(r.key)), append(l.shared, r.shared)
	}
	p.setOK(true)
	l.wg.Add(1)
	go l.watch(p.o.CheckInterval, p.o.LeaseTimeout)
	return l, nil
}

// Lock waits for the named lock until ctx ends, polling every interval.
func (p *Postgres) Lock(ctx context.Context, key string, interval time.Duration) (*Lease, error) {
	for {
		l, err := p.TryLock(ctx, key)
		if err == nil || !errors.Is(err, ErrHeld) {
			return l, err
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("lock %s: %w", key, ctx.Err())
		case <-time.After(interval):
		}
	}
}

func (l *Lease) watch(every, timeout time.Duration) {
	defer l.wg.Done()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			l.p.pings.Add(1)
			err := l.conn.Ping(ctx)
			cancel()
			if err != nil {
				close(l.lost)
				return
			}
		}
	}
}

// unlock releases the lease's locks on its session (closing the session when that fails: the
// locks go with it).
func (l *Lease) unlock() {
	if len(l.keys) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var err error
	if len(l.keys) == 1 && !l.shared[0] {
		_, err = l.conn.Exec(ctx, `SELECT pg_advisory_unlock($1)`, l.keys[0])
	} else {
		_, err = l.conn.Exec(ctx, `SELECT pg_advisory_unlock_all()`)
	}
	if err != nil {
		l.conn.Conn().Close(ctx)
	}
	l.keys, l.shared = nil, nil
}

// Release unlocks and returns the connection (a connection whose session is lost is closed).
func (l *Lease) Release() {
	l.once.Do(func() {
		close(l.stop)
		l.wg.Wait()
		select {
		case <-l.lost:
			l.conn.Conn().Close(context.Background())
		default:
			l.unlock()
		}
		l.conn.Release()
	})
}

// Close closes the pool.
func (p *Postgres) Close() { p.pool.Close() }
