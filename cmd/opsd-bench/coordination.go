package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/rs/zerolog"

	"github.com/wopr-network/opsd/internal/coord"
)

// coordDSN is OPSD_TEST_PG_DSN, or a throwaway cluster .ci/start-postgres.sh starts (stopped
// by the returned function).
func coordDSN(ctx context.Context) (string, func(), error) {
	if raw := os.Getenv("OPSD_TEST_PG_DSN"); raw != "" {
		return raw, func() {}, nil
	}
	fmt.Fprintln(os.Stderr, "opsd-bench: starting PostgreSQL (.ci/start-postgres.sh)")
	out, err := exec.CommandContext(ctx, "bash", ".ci/start-postgres.sh").Output()
	if err != nil {
		return "", func() {}, fmt.Errorf("start PostgreSQL (run from the repository root; apt-get install postgresql): %w", err)
	}
	env := os.Environ()
	raw := ""
	for _, f := range strings.Fields(strings.TrimPrefix(strings.TrimSpace(string(out)), "export ")) {
		env = append(env, f)
		if k, v, _ := strings.Cut(f, "="); k == "OPSD_TEST_PG_DSN" {
			raw = v
		}
	}
	return raw, func() {
		cmd := exec.Command("bash", ".ci/stop-postgres.sh")
		cmd.Env = env
		cmd.Run()
	}, nil
}

// coordinationScenario: the cost of fleet coordination on PostgreSQL. Latency of one platform
// tick's coordination (take the job lock, claim the tick, record the outcome, release the lock:
// everything but the run itself), for one node and for 10 nodes firing the same tick at once;
// and the idle load of 10 nodes (statements per node per minute), counted by the client and by
// the server (pg_stat_database.xact_commit). Goals (issue 17): p99 under 20 ms on loopback,
// under 10 statements per idle node per minute.
func (b *bench) coordinationScenario(ctx context.Context) error {
	dsn, stop, err := coordDSN(ctx)
	if err != nil {
		return err
	}
	defer stop()
	schema := fmt.Sprintf("opsd_bench%d", time.Now().UnixNano()%1e6)
	defer func() { // the benchmark's tables go with it
		if c, err := pgx.Connect(context.WithoutCancel(ctx), dsn); err == nil {
			c.Exec(ctx, `DROP SCHEMA IF EXISTS `+schema+` CASCADE`)
			c.Close(ctx)
		}
	}()
	const nodes = 10
	var ps []*coord.Postgres
	for i := 0; i < nodes; i++ {
		p, err := coord.Open(ctx, coord.Options{DSN: dsn, Schema: schema, Node: fmt.Sprintf("bench-%d", i)})
		if err != nil {
			return err
		}
		defer p.Close()
		ps = append(ps, p)
	}
	runs := 100 * b.rounds
	if b.sz.idle < 10*time.Second {
		runs = 20
	}
	tick := time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
	// One node: every tick is its own. CPU time, which a busy machine does not distort much, is
	// read for this process and for the node's server processes (loopback: /proc).
	var one []time.Duration
	if _, _, err := coordTick(ctx, ps[0], "bench-one", tick); err != nil { // connect
		return err
	}
	srv0, srvErr := serverCPU(ctx, dsn, "opsd bench-0")
	cpu0 := selfCPU()
	for i := 0; i < runs; i++ {
		tick = tick.Add(time.Minute)
		d, _, err := coordTick(ctx, ps[0], "bench-one", tick)
		if err != nil {
			return err
		}
		one = append(one, d)
	}
	cpuClient := (selfCPU() - cpu0) / time.Duration(runs)
	srv1, _ := serverCPU(ctx, dsn, "opsd bench-0")
	cpuServer := (srv1 - srv0) / time.Duration(runs)
	// Ten nodes fire the same tick together: one wins, the others see the lock or the claim.
	var mu sync.Mutex
	var winners, losers []time.Duration
	for i := 0; i < runs; i++ {
		tick = tick.Add(time.Minute)
		var wg sync.WaitGroup
		var ferr error
		won := 0
		for _, p := range ps {
			wg.Add(1)
			go func(p *coord.Postgres) {
				defer wg.Done()
				d, w, err := coordTick(ctx, p, "bench-fleet", tick)
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					ferr = err
				}
				if w {
					won++
					winners = append(winners, d)
				} else {
					losers = append(losers, d)
				}
			}(p)
		}
		wg.Wait()
		if ferr != nil {
			return ferr
		}
		if won != 1 {
			return fmt.Errorf("tick %s ran on %d nodes", tick.Format(time.TimeOnly), won)
		}
	}
	fmt.Printf("## coordination\n\n")
	fmt.Printf("Latency of one platform tick's coordination on loopback PostgreSQL (job lock, claim, outcome, unlock; not the run), %d ticks per row. Goal: p99 under 20 ms.\n\n", runs)
	fmt.Println("| variant | p50 | p99 | max |")
	fmt.Println("|---|---|---|---|")
	for _, r := range []struct {
		name string
		ds   []time.Duration
	}{{"1 node", one}, {"10 nodes, same tick: the winner", winners}, {"10 nodes, same tick: the 9 others (lock held or tick claimed)", losers}} {
		p50, p99, mx := pct(r.ds, 50), pct(r.ds, 99), pct(r.ds, 100)
		fmt.Printf("| %s | %s | %s | %s |\n", r.name, dur(p50), dur(p99), dur(mx))
	}
	fmt.Println()
	if srvErr == nil {
		fmt.Printf("CPU per tick, 1 node: %s in opsd, %s in PostgreSQL.\n\n", cpuStr(cpuClient), cpuStr(cpuServer))
	} else {
		fmt.Printf("CPU per tick, 1 node: %s in opsd (PostgreSQL's not read: %v).\n\n", cpuStr(cpuClient), srvErr)
	}
	return b.coordIdle(ctx, dsn, schema, ps)
}

// coordTick is one node's coordination of a platform tick; won: the node ran it.
func coordTick(ctx context.Context, p *coord.Postgres, job string, tick time.Time) (time.Duration, bool, error) {
	start := time.Now()
	lease, err := p.TryLock(ctx, coord.JobLock(job))
	if errors.Is(err, coord.ErrHeld) {
		return time.Since(start), false, nil
	}
	if err != nil {
		return 0, false, err
	}
	won, err := p.Claim(ctx, job, tick)
	if err == nil && won {
		err = p.Finish(ctx, job, tick, "success")
	}
	lease.Release()
	return time.Since(start), won, err
}

// coordIdle runs 10 nodes' heartbeats (all an idle daemon sends the coordination database:
// the node-lost alert and /admin/health read the last heartbeat) and counts statements.
func (b *bench) coordIdle(ctx context.Context, dsn, schema string, ps []*coord.Postgres) error {
	interval := time.Second // measured fast, reported at the default interval
	window := 20 * time.Second
	if b.sz.idle < 10*time.Second {
		window = 5 * time.Second
	}
	const defaultInterval = 30 * time.Second
	obs, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return fmt.Errorf("observer: %w", err)
	}
	defer obs.Close(ctx)
	xacts := func() (int64, error) {
		var n int64
		err := obs.QueryRow(ctx, `SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = current_database()`).Scan(&n)
		return n, err
	}
	// Fresh pools, so that the connections' statistics are flushed when they close.
	var fleets []*coord.Postgres
	for i := range ps {
		p, err := coord.Open(ctx, coord.Options{DSN: dsn, Schema: schema, Node: fmt.Sprintf("bench-%d", i)})
		if err != nil {
			return err
		}
		fleets = append(fleets, p)
	}
	for _, p := range fleets { // warm up: connections made, statements prepared
		if _, err := p.Heartbeat(ctx, coord.NodeInfo{}); err != nil {
			return err
		}
	}
	// Idle backends flush their statistics within 10s (PostgreSQL 15).
	time.Sleep(11 * time.Second)
	before, err := xacts()
	if err != nil {
		return err
	}
	var client0, pings0 int64
	for _, p := range fleets {
		client0 += p.Queries()
		pings0 += p.Pings()
	}
	rctx, cancel := context.WithTimeout(ctx, window)
	var wg sync.WaitGroup
	beats := 0
	var mu sync.Mutex
	for _, p := range fleets {
		f := &coord.Fleet{P: p, Log: zerolog.Nop(), Interval: func() time.Duration { return interval },
			LostAfter: func() time.Duration { return 3 * interval },
			Info: func(context.Context) coord.NodeInfo {
				mu.Lock()
				beats++
				mu.Unlock()
				return coord.NodeInfo{Version: "bench", BacksUpContainers: true}
			}}
		wg.Add(1)
		go func() { defer wg.Done(); f.Run(rctx) }()
	}
	wg.Wait()
	cancel()
	var client, pings int64
	for _, p := range fleets {
		client += p.Queries()
		pings += p.Pings()
		p.Close() // a closing backend flushes its statistics
	}
	client -= client0
	pings -= pings0
	time.Sleep(2 * time.Second)
	after, err := xacts()
	if err != nil {
		return err
	}
	server := after - before - 1 // the observer's own first read
	perBeatClient := float64(client) / float64(beats)
	perBeatPing := float64(pings) / float64(beats)
	perBeatServer := float64(server) / float64(beats)
	perMin := float64(time.Minute / defaultInterval)
	fmt.Printf("Idle load: %d nodes heartbeating every %s for %s (%d heartbeats), scaled to the default heartbeat_interval of %s. Goal: under 10 per node per minute.\n\n", len(fleets), interval, window, beats, defaultInterval)
	fmt.Println("| counted by | per heartbeat | per idle node per minute |")
	fmt.Println("|---|---|---|")
	fmt.Printf("| the client: statements | %.2f | %.1f |\n", perBeatClient, perBeatClient*perMin)
	fmt.Printf("| the client: pool liveness pings (a connection idle over 1s) | %.2f | %.1f |\n", perBeatPing, perBeatPing*perMin)
	fmt.Printf("| the server (pg_stat_database transactions) | %.2f | %.1f |\n", perBeatServer, perBeatServer*perMin)
	fmt.Println()
	return nil
}

// pct is the p-th percentile of ds (100: the maximum).
func pct(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := (len(s)*p + 99) / 100
	if i < 1 {
		i = 1
	}
	if i > len(s) {
		i = len(s)
	}
	return s[i-1]
}

func cpuStr(d time.Duration) string { return fmt.Sprintf("%.0f µs", float64(d.Nanoseconds())/1000) }

// selfCPU is this process's user and system CPU time.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// serverCPU is the CPU time of the PostgreSQL backends serving application_name (same host).
func serverCPU(ctx context.Context, dsn, app string) (time.Duration, error) {
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return 0, err
	}
	defer c.Close(ctx)
	rows, err := c.Query(ctx, `SELECT pid FROM pg_stat_activity WHERE application_name = $1`, app)
	if err != nil {
		return 0, err
	}
	pids, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		return 0, err
	}
	var total time.Duration
	for _, pid := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return 0, fmt.Errorf("read the backend's CPU time (is PostgreSQL on this host?): %w", err)
		}
		// Fields after the command's closing parenthesis: utime and stime are the 12th and 13th.
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
		var ut, st int64
		fmt.Sscan(f[11], &ut)
		fmt.Sscan(f[12], &st)
		total += time.Duration(ut+st) * time.Second / 100 // USER_HZ
	}
	return total, nil
}
