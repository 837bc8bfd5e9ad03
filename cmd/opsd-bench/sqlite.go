package main

import (
	"bufio"
	"context"
	"database/sql"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wopr-network/opsd/internal/demo"
	"github.com/wopr-network/opsd/internal/layout"
	"github.com/wopr-network/opsd/internal/sqlite"
	"github.com/wopr-network/opsd/jobs"
)

// writer commits about perSecond transactions per second while running, in a child process
// (this binary re-executed): an application writes from its own process, and a writer inside
// the bench would lose its POSIX locks on the database whenever the bench's code opens and
// closes the file (CheckFile does), which lets another process delete the WAL under it.
type writer struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Reader
}

// writerEnv names the database (and rate) a re-executed bench writes to.
const writerEnv = "OPSD_BENCH_WRITER"

func init() {
	if v := os.Getenv(writerEnv); v != "" {
		os.Exit(writerChild(v))
	}
}

func startWriter(path string, perSecond int) (*writer, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%d:%s", writerEnv, perSecond, path))
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start writer: %w", err)
	}
	return &writer{cmd: cmd, in: in, out: bufio.NewReader(out)}, nil
}

// ask sends a command ("run", "pause", "count") and returns the child's answer.
func (w *writer) ask(c string) string {
	fmt.Fprintln(w.in, c)
	l, _ := w.out.ReadString('\n')
	return strings.TrimSpace(l)
}

// run starts or pauses the commits (a paused writer has finished its last commit).
func (w *writer) run(on bool) {
	if on {
		w.ask("run")
	} else {
		w.ask("pause")
	}
}

// committed is how many transactions the writer has committed.
func (w *writer) committed() int64 {
	n, _ := strconv.ParseInt(w.ask("count"), 10, 64)
	return n
}

func (w *writer) Close() { w.in.Close(); w.cmd.Wait() }

// writerChild is the writer process: "rate:path" in its environment, commands on stdin.
func writerChild(v string) int {
	rate, path, _ := strings.Cut(v, ":")
	perSecond, _ := strconv.Atoi(rate)
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(30000)")
	if err != nil {
		fmt.Fprintln(os.Stderr, "writer:", err)
		return 1
	}
	defer db.Close()
	var mu sync.Mutex // held while committing, so "pause" returns after the last commit
	var running atomic.Bool
	var committed atomic.Int64
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(time.Second / time.Duration(perSecond))
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				mu.Lock()
				if running.Load() {
					if _, err := db.Exec(`INSERT INTO items (payload) VALUES (randomblob(200))`); err == nil {
						committed.Add(1)
					}
				}
				mu.Unlock()
			}
		}
	}()
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		switch sc.Text() {
		case "run":
			running.Store(true)
			fmt.Println("ok")
		case "pause":
			running.Store(false)
			mu.Lock()
			mu.Unlock()
			fmt.Println("ok")
		case "count":
			fmt.Println(committed.Load())
		}
	}
	close(done)
	mu.Lock()
	return 0
}

func (b *bench) sqliteScenario(ctx context.Context) error {
	if err := need("sqlite3", "sqlite3"); err != nil {
		return err
	}
	path := filepath.Join(b.dir, "bench.db")
	fmt.Fprintf(os.Stderr, "sqlite: creating a %d MB database\n", b.sz.sqliteMB)
	if err := demo.ItemsDB(path, b.sz.sqliteMB*950); err != nil {
		return err
	}
	st, _ := os.Stat(path)
	size := st.Size()
	store, _, err := b.store(ctx, "sqlite")
	if err != nil {
		return err
	}
	// The writer aims at 250 tx/s so that, with ticks dropped under load, it stays above 200.
	w, err := startWriter(path, 250)
	if err != nil {
		return err
	}
	defer w.Close()
	rows := []row{
		{name: "opsd copy under writes (sqlite.Backup: durable, one fsync at the end)"},
		{name: "sqlite3 VACUUM INTO under writes (durable)"},
		{name: "opsd scratch copy under writes (sqlite.BackupScratch, the backup job's: no fsync)"},
		{name: "sqlite3 VACUUM INTO under writes, synchronous=OFF (no fsync)"},
		{name: "opsd backup under writes (scratch copy + integrity_check + upload)"},
		{name: "sqlite3 .backup under writes"},
		{name: "sqlite3 .backup, database idle"},
	}
	out := filepath.Join(b.dir, "copy.db")
	var rates []float64
	for r := 0; r < b.rounds; r++ {
		job := jobs.NewSQLiteBackup("bench", jobs.SQLiteBackupConfig{Databases: []jobs.SQLiteDatabase{{Name: "bench", Path: path}},
			KeyTemplate: strings.TrimSuffix(layout.DefaultSQLite, ".db") + fmt.Sprintf("-%d.db", r), TempDir: b.dir}, store)
		runs := []func(){
			func() {
				rows[0].samples = append(rows[0].samples, timed(func() (int64, error) { return size, sqlite.Backup(ctx, path, out) }))
			},
			func() {
				rows[1].samples = append(rows[1].samples, timedCmd(ctx, b.sz.timeLimit, size, "sqlite3", path, "VACUUM INTO '"+out+"'"))
			},
			func() {
				rows[2].samples = append(rows[2].samples, timed(func() (int64, error) { return size, sqlite.BackupScratch(ctx, path, out) }))
			},
			func() {
				rows[3].samples = append(rows[3].samples, timedCmd(ctx, b.sz.timeLimit, size, "sqlite3", path, "PRAGMA synchronous=OFF", "VACUUM INTO '"+out+"'"))
			},
			func() {
				c0, t0 := w.committed(), time.Now()
				rows[4].samples = append(rows[4].samples, timed(func() (int64, error) {
					_, err := job.Run(ctx)
					return size, err
				}))
				rates = append(rates, float64(w.committed()-c0)/time.Since(t0).Seconds())
			},
			func() {
				rows[5].samples = append(rows[5].samples, timedCmd(ctx, b.sz.timeLimit, size, "sqlite3", path, ".backup "+out))
			},
		}
		// opsd and its peer alternate; odd rounds start with the peer.
		w.run(true)
		for i := range runs {
			k := i
			if r%2 == 1 {
				k = i ^ 1
			}
			runs[k]()
			sqlite.RemoveDB(out)
		}
		w.run(false)
		time.Sleep(100 * time.Millisecond)
		rows[6].samples = append(rows[6].samples, timedCmd(ctx, b.sz.timeLimit, size, "sqlite3", path, ".backup "+out))
		sqlite.RemoveDB(out)
	}
	sort.Float64s(rates)
	defer func() {
		ratio := func(a, b row) string {
			if a.median() == 0 || b.median() == 0 {
				return "n/a"
			}
			return fmt.Sprintf("%.2fx", a.median().Seconds()/b.median().Seconds())
		}
		fmt.Printf("opsd copy / VACUUM INTO: %s durable, %s without fsync (goal: at most 1.0x)\n\n", ratio(rows[0], rows[1]), ratio(rows[2], rows[3]))
	}()
	table(fmt.Sprintf("sqlite: backup of a %d MB WAL database", size>>20),
		fmt.Sprintf("The writer committed a median %.0f tx/s during opsd's backup runs (it aims at 250). Rows alternate opsd and its peer. Goal: opsd's copy takes at most 1.0x VACUUM INTO's time, durable against durable and no-fsync against no-fsync (the ratios below the table). CPU of opsd rows is the bench process's (the writer runs in its own process); a sqlite3 row's is that process's. opsd's backup row includes the integrity check and the upload to the S3 engine. Goal: opsd finishes every run under writes.", rates[len(rates)/2]), rows)
	return nil
}
