// Package demo makes the platform's seven SQLite databases with the tables REFERENCE.md names and
// realistic rows, and a writer that keeps committing to them: `opsd demo` and the tests use them.
package demo

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"net/url"
	"os"
	"path/filepath"
	"time"

	_ "modernc.org/sqlite" // driver
)

// schemas are the platform databases' tables (the columns are representative).
var schemas = map[string][]string{
	"auth": {
		`CREATE TABLE user (id TEXT PRIMARY KEY, email TEXT NOT NULL UNIQUE, name TEXT, created_at INTEGER NOT NULL)`,
		`CREATE TABLE session (id TEXT PRIMARY KEY, user_id TEXT NOT NULL REFERENCES user(id), expires_at INTEGER NOT NULL, token TEXT NOT NULL)`,
		`CREATE TABLE account (id TEXT PRIMARY KEY, user_id TEXT NOT NULL REFERENCES user(id), provider TEXT NOT NULL)`,
	},
	"billing":     {`CREATE TABLE meter_events (id INTEGER PRIMARY KEY, tenant TEXT NOT NULL, capability TEXT NOT NULL, units INTEGER NOT NULL, at INTEGER NOT NULL)`},
	"credits":     {`CREATE TABLE credit_transactions (id INTEGER PRIMARY KEY, tenant TEXT NOT NULL, amount INTEGER NOT NULL, reason TEXT, at INTEGER NOT NULL)`},
	"audit":       {`CREATE TABLE audit_log (id INTEGER PRIMARY KEY, actor TEXT NOT NULL, action TEXT NOT NULL, detail TEXT, at INTEGER NOT NULL)`},
	"quotas":      {`CREATE TABLE quota_limits (tenant TEXT PRIMARY KEY, max_bots INTEGER NOT NULL, max_tokens INTEGER NOT NULL)`},
	"tenant-keys": {`CREATE TABLE tenant_keys (tenant TEXT PRIMARY KEY, key_id TEXT NOT NULL, wrapped_key BLOB NOT NULL)`},
	"snapshots": {
		`CREATE TABLE snapshots (id TEXT PRIMARY KEY, tenant TEXT NOT NULL, name TEXT, size_bytes INTEGER, created_at INTEGER NOT NULL)`,
		`CREATE TABLE restore_log (id INTEGER PRIMARY KEY, snapshot_id TEXT NOT NULL, restored_by TEXT, at INTEGER NOT NULL)`,
	},
}

// Names are the platform databases in REFERENCE.md order.
var Names = []string{"auth", "billing", "credits", "audit", "quotas", "tenant-keys", "snapshots"}

// Path returns where a demo database lives under dir (snapshots.db beside platform/, like
// /data/snapshots.db next to /data/platform/).
func Path(dir, name string) string {
	if name == "snapshots" {
		return filepath.Join(dir, "snapshots.db")
	}
	return filepath.Join(dir, "platform", name+".db")
}

// Open opens a database for writing in WAL mode, as the platform does.
func Open(path string) (*sql.DB, error) {
	q := url.Values{}
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "busy_timeout(30000)")
	return sql.Open("sqlite", "file:"+path+"?"+q.Encode())
}

// Create makes the seven databases under dir with rows rows in each main table (existing files
// are left as they are) and returns name → path.
func Create(ctx context.Context, dir string, rows int) (map[string]string, error) {
	out := map[string]string{}
	for _, name := range Names {
		p := Path(dir, name)
		out[name] = p
		if _, err := os.Stat(p); err == nil {
			continue
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return nil, fmt.Errorf("create %s: %w", name, err)
		}
		if err := create(ctx, name, p, rows); err != nil {
			os.Remove(p)
			return nil, fmt.Errorf("create %s: %w", name, err)
		}
	}
	return out, nil
}

func create(ctx context.Context, name, path string, rows int) error {
	db, err := Open(path)
	if err != nil {
		return err
	}
	defer db.Close()
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	for _, s := range schemas[name] {
		if _, err := tx.ExecContext(ctx, s); err != nil {
			return err
		}
	}
	r := rand.New(rand.NewPCG(uint64(len(name)), 7))
	now := time.Now().Unix()
	tenant := func(i int) string { return fmt.Sprintf("tenant_%04d", i%500) }
	for i := 0; i < rows; i++ {
		var err error
		switch name {
		case "auth":
			id := fmt.Sprintf("u%06d", i)
			if _, err = tx.ExecContext(ctx, `INSERT INTO user VALUES (?, ?, ?, ?)`, id, id+"@example.com", "User "+id, now-int64(r.IntN(1e7))); err == nil {
				_, err = tx.ExecContext(ctx, `INSERT INTO session VALUES (?, ?, ?, hex(randomblob(16)))`, "s"+id, id, now+86400)
			}
			if err == nil && i%2 == 0 {
				_, err = tx.ExecContext(ctx, `INSERT INTO account VALUES (?, ?, ?)`, "a"+id, id, []string{"github", "google", "email"}[i%3])
			}
		case "billing":
			_, err = tx.ExecContext(ctx, `INSERT INTO meter_events (tenant, capability, units, at) VALUES (?, ?, ?, ?)`, tenant(i), []string{"chat", "image", "tts", "embed"}[i%4], 1+r.IntN(2000), now-int64(i))
		case "credits":
			_, err = tx.ExecContext(ctx, `INSERT INTO credit_transactions (tenant, amount, reason, at) VALUES (?, ?, ?, ?)`, tenant(i), -r.IntN(500), "usage", now-int64(i))
		case "audit":
			_, err = tx.ExecContext(ctx, `INSERT INTO audit_log (actor, action, detail, at) VALUES (?, ?, ?, ?)`, "admin", []string{"login", "bot.create", "bot.stop", "key.rotate"}[i%4], fmt.Sprintf(`{"seq":%d}`, i), now-int64(i))
		case "quotas":
			if i < 500 {
				_, err = tx.ExecContext(ctx, `INSERT INTO quota_limits VALUES (?, ?, ?)`, tenant(i), 1+i%20, 100000*(1+i%10))
			}
		case "tenant-keys":
			if i < 500 {
				_, err = tx.ExecContext(ctx, `INSERT INTO tenant_keys VALUES (?, ?, randomblob(48))`, tenant(i), fmt.Sprintf("k%04d", i))
			}
		case "snapshots":
			id := fmt.Sprintf("snap%06d", i)
			_, err = tx.ExecContext(ctx, `INSERT INTO snapshots VALUES (?, ?, ?, ?, ?)`, id, tenant(i), "nightly", r.IntN(1<<30), now-int64(i))
			if err == nil && i%10 == 0 {
				_, err = tx.ExecContext(ctx, `INSERT INTO restore_log (snapshot_id, restored_by, at) VALUES (?, ?, ?)`, id, "ops", now)
			}
		}
		if err != nil {
			return err
		}
	}
	return tx.Commit()
}

// Write keeps committing rows to the busy databases (billing, credits, audit) at about perSecond
// transactions per second each until ctx ends. It returns the number of committed transactions.
func Write(ctx context.Context, paths map[string]string, perSecond int) (int64, error) {
	type target struct {
		db   *sql.DB
		stmt string
	}
	var ts []target
	for name, stmt := range map[string]string{
		"billing": `INSERT INTO meter_events (tenant, capability, units, at) VALUES ('tenant_demo', 'chat', 1, unixepoch())`,
		"credits": `INSERT INTO credit_transactions (tenant, amount, reason, at) VALUES ('tenant_demo', -1, 'usage', unixepoch())`,
		"audit":   `INSERT INTO audit_log (actor, action, detail, at) VALUES ('demo', 'bot.message', '{}', unixepoch())`,
	} {
		db, err := Open(paths[name])
		if err != nil {
			return 0, err
		}
		defer db.Close()
		ts = append(ts, target{db, stmt})
	}
	var n int64
	tk := time.NewTicker(time.Second / time.Duration(max(perSecond, 1)))
	defer tk.Stop()
	for {
		select {
		case <-ctx.Done():
			return n, nil
		case <-tk.C:
			for _, t := range ts {
				if _, err := t.db.ExecContext(ctx, t.stmt); err != nil {
					if ctx.Err() != nil {
						return n, nil
					}
					return n, err
				}
				n++
			}
		}
	}
}

// ItemsDB creates a WAL database holding a table items of rows random 1 KiB payloads (about
// rows KiB): the large databases the tests and the benchmark harness back up under load.
func ItemsDB(path string, rows int) error {
	db, err := Open(path)
	if err != nil {
		return err
	}
	defer db.Close()
	if _, err := db.Exec(`CREATE TABLE items (id INTEGER PRIMARY KEY, payload BLOB)`); err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	tx, err := db.Begin()
	if err != nil {
		return err
	}
	defer tx.Rollback()
	stmt, err := tx.Prepare(`INSERT INTO items (payload) VALUES (randomblob(1000))`)
	if err != nil {
		return err
	}
	defer stmt.Close()
	for i := 0; i < rows; i++ {
		if _, err := stmt.Exec(); err != nil {
			return fmt.Errorf("fill %s: %w", path, err)
		}
	}
	return tx.Commit()
}
