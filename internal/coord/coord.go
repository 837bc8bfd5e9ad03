// Package coord coordinates opsd instances across the fleet through the platform's PostgreSQL
// database: durable claims of (job, scheduled time) so platform-wide jobs run once per tick
// across any number of nodes, session-level advisory locks held for the length of a run (a node
// that loses its session loses the lock, and its run is cancelled), and node heartbeats that
// give a fleet view. opsd creates and migrates its own tables in its own schema.
package coord

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"regexp"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// ErrHeld is returned when a lock is held by another opsd.
var ErrHeld = errors.New("held by another opsd")

// ErrUnavailable wraps errors reaching the coordination database.
var ErrUnavailable = errors.New("coordination database unavailable")

// Options configure a Postgres coordinator.
type Options struct {
	DSN    string
	Schema string // default "opsd"
	Node   string
	// CheckInterval is how often a held lease checks its session (default 2s).
	CheckInterval time.Duration
	// QueryTimeout bounds every statement (default 5s).
	QueryTimeout time.Duration
}

// Postgres is a coordinator backed by PostgreSQL.
type Postgres struct {
	o        Options
	pool     *pgxpool.Pool
	mu       sync.Mutex
	ok       bool // the last statement reached the database
	migrated bool
}

var schemaName = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// Open connects and migrates the schema. The DSN (it holds a password) never appears in errors.
func Open(ctx context.Context, o Options) (*Postgres, error) {
	if o.Schema == "" {
		o.Schema = "opsd"
	}
	if !schemaName.MatchString(o.Schema) {
		return nil, fmt.Errorf("coordination: schema %q: want lowercase letters, digits and _", o.Schema)
	}
	if o.CheckInterval == 0 {
		o.CheckInterval = 2 * time.Second
	}
	if o.QueryTimeout == 0 {
		o.QueryTimeout = 5 * time.Second
	}
	cfg, err := pgxpool.ParseConfig(o.DSN)
	if err != nil {
		return nil, errors.New("coordination: the dsn does not parse (it is not shown: it may hold a password)")
	}
	cfg.MaxConns = 8
	cfg.ConnConfig.ConnectTimeout = o.QueryTimeout
	if cfg.ConnConfig.RuntimeParams == nil {
		cfg.ConnConfig.RuntimeParams = map[string]string{}
	}
	cfg.ConnConfig.RuntimeParams["application_name"] = "opsd " + o.Node
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("coordination: %w", redact(err))
	}
	p := &Postgres{o: o, pool: pool}
	if err := p.ensure(ctx); err != nil {
		// Start anyway: coordination comes back when the database does (platform jobs wait).
		return p, fmt.Errorf("coordination: %w", err)
	}
	return p, nil
}

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

func (p *Postgres) migrate(ctx context.Context) error {
	s := p.o.Schema
	stmts := []string{
		`CREATE SCHEMA IF NOT EXISTS ` + s,
		`CREATE TABLE IF NOT EXISTS ` + s + `.claims (
			job text NOT NULL, scheduled_at timestamptz NOT NULL, node text NOT NULL,
			claimed_at timestamptz NOT NULL DEFAULT now(), finished_at timestamptz, outcome text,
			PRIMARY KEY (job, scheduled_at))`,
		`CREATE TABLE IF NOT EXISTS ` + s + `.nodes (
			node text PRIMARY KEY, version text NOT NULL DEFAULT '', last_seen timestamptz NOT NULL,
			info jsonb NOT NULL DEFAULT '{}')`,
	}
	for _, st := range stmts {
		if _, err := p.exec(ctx, st); err != nil {
			return err
		}
	}
	return nil
}

// Claim records that this node runs job for the tick scheduled at; false when another node
// claimed that tick already. The claim is durable: a node whose clock is late, or that fires
// after another finished the tick, finds it claimed and does not run it again.
func (p *Postgres) Claim(ctx context.Context, job string, scheduled time.Time) (bool, error) {
	if err := p.ensure(ctx); err != nil {
		return false, err
	}
	tag, err := p.exec(ctx, `INSERT INTO `+p.o.Schema+`.claims (job, scheduled_at, node) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`,
		job, scheduled.UTC(), p.o.Node)
	if err != nil {
		return false, err
	}
	return tag.RowsAffected() == 1, nil
}

// Finish records how a claimed tick ended.
func (p *Postgres) Finish(ctx context.Context, job string, scheduled time.Time, outcome string) error {
	_, err := p.exec(ctx, `UPDATE `+p.o.Schema+`.claims SET finished_at = now(), outcome = $3 WHERE job = $1 AND scheduled_at = $2`, job, scheduled.UTC(), outcome)
	return err
}

// Release gives a claimed tick back (its run never started), so another node may take it.
func (p *Postgres) Release(ctx context.Context, job string, scheduled time.Time) error {
	_, err := p.exec(ctx, `DELETE FROM `+p.o.Schema+`.claims WHERE job = $1 AND scheduled_at = $2 AND node = $3 AND finished_at IS NULL`, job, scheduled.UTC(), p.o.Node)
	return err
}

// Claim is one row of the claims table.
type Claim struct {
	Job         string
	ScheduledAt time.Time
	Node        string
	ClaimedAt   time.Time
	FinishedAt  *time.Time
	Outcome     string
}

// Claims returns the claims of a job, oldest first (tests and the fleet view).
func (p *Postgres) Claims(ctx context.Context, job string) ([]Claim, error) {
	ctx, cancel := context.WithTimeout(ctx, p.o.QueryTimeout)
	defer cancel()
	rows, err := p.pool.Query(ctx, `SELECT job, scheduled_at, node, claimed_at, finished_at, coalesce(outcome, '') FROM `+p.o.Schema+`.claims WHERE job = $1 ORDER BY scheduled_at`, job)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, redact(err))
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Claim, error) {
		var c Claim
		err := r.Scan(&c.Job, &c.ScheduledAt, &c.Node, &c.ClaimedAt, &c.FinishedAt, &c.Outcome)
		return c, err
	})
}

// Lease is a session-level advisory lock held on its own connection. Lost is closed when the
// session is gone (the database restarted, the network failed): the lock is gone with it, so
// the holder must stop what it protects.
type Lease struct {
	key  string
	conn *pgxpool.Conn
	lost chan struct{}
	stop chan struct{}
	once sync.Once
	wg   sync.WaitGroup
}

// Lost is closed when the lease's session is lost.
func (l *Lease) Lost() <-chan struct{} { return l.lost }

// lockID maps a lock name to an advisory lock key.
func lockID(key string) int64 {
	h := fnv.New64a()
	h.Write([]byte("opsd:" + key))
	return int64(h.Sum64())
}

// TryLock takes the named lock without waiting: ErrHeld when another session holds it.
func (p *Postgres) TryLock(ctx context.Context, key string) (*Lease, error) {
	qctx, cancel := context.WithTimeout(ctx, p.o.QueryTimeout)
	defer cancel()
	conn, err := p.pool.Acquire(qctx)
	if err != nil {
		p.setOK(false)
		return nil, fmt.Errorf("lock %s: %w: %w", key, ErrUnavailable, redact(err))
	}
	var got bool
	if err := conn.QueryRow(qctx, `SELECT pg_try_advisory_lock($1)`, lockID(key)).Scan(&got); err != nil {
		conn.Release()
		p.setOK(false)
		return nil, fmt.Errorf("lock %s: %w: %w", key, ErrUnavailable, redact(err))
	}
	p.setOK(true)
	if !got {
		conn.Release()
		return nil, fmt.Errorf("lock %s: %w", key, ErrHeld)
	}
	l := &Lease{key: key, conn: conn, lost: make(chan struct{}), stop: make(chan struct{})}
	l.wg.Add(1)
	go l.watch(p.o.CheckInterval, p.o.QueryTimeout)
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
			err := l.conn.Ping(ctx)
			cancel()
			if err != nil {
				close(l.lost)
				return
			}
		}
	}
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
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			if _, err := l.conn.Exec(ctx, `SELECT pg_advisory_unlock($1)`, lockID(l.key)); err != nil {
				l.conn.Conn().Close(ctx) // closing the session releases the lock too
			}
			cancel()
		}
		l.conn.Release()
	})
}

// NodeInfo is one node's heartbeat.
type NodeInfo struct {
	Node     string    `json:"node"`
	Version  string    `json:"version"`
	LastSeen time.Time `json:"lastSeen"`
	// Containers are the tenant containers the node backs up.
	Containers []string `json:"containers"`
	// LastSuccess is each job's last success.
	LastSuccess map[string]time.Time `json:"lastSuccess"`
	// BacksUpContainers: the node runs container exports (node-lost applies to it).
	BacksUpContainers bool `json:"backsUpContainers"`
	// ActiveBots is how many of its tenant containers run.
	ActiveBots int `json:"activeBots"`
}

// Heartbeat records this node as alive with what it backs up.
func (p *Postgres) Heartbeat(ctx context.Context, n NodeInfo) error {
	if err := p.ensure(ctx); err != nil {
		return err
	}
	info, err := json.Marshal(n)
	if err != nil {
		return err
	}
	_, err = p.exec(ctx, `INSERT INTO `+p.o.Schema+`.nodes (node, version, last_seen, info) VALUES ($1, $2, now(), $3)
		ON CONFLICT (node) DO UPDATE SET version = excluded.version, last_seen = excluded.last_seen, info = excluded.info`, p.o.Node, n.Version, info)
	return err
}

// Nodes returns every node's last heartbeat (LastSeen from the database's clock).
func (p *Postgres) Nodes(ctx context.Context) ([]NodeInfo, error) {
	if err := p.ensure(ctx); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, p.o.QueryTimeout)
	defer cancel()
	rows, err := p.pool.Query(ctx, `SELECT node, last_seen, info, now() FROM `+p.o.Schema+`.nodes ORDER BY node`)
	if err != nil {
		p.setOK(false)
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, redact(err))
	}
	var out []NodeInfo
	var dbNow time.Time
	for rows.Next() {
		var n NodeInfo
		var seen time.Time
		var info []byte
		if err := rows.Scan(&n.Node, &seen, &info, &dbNow); err != nil {
			rows.Close()
			return nil, err
		}
		json.Unmarshal(info, &n)
		// Ages are measured on the database's clock, so node clock skew does not matter.
		n.LastSeen = time.Now().Add(-dbNow.Sub(seen))
		out = append(out, n)
	}
	p.setOK(rows.Err() == nil)
	return out, rows.Err()
}

// Close closes the pool.
func (p *Postgres) Close() { p.pool.Close() }
