package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/wopr-network/opsd/checks"
	"github.com/wopr-network/opsd/internal/demo"
	"github.com/wopr-network/opsd/internal/layout"
	"github.com/wopr-network/opsd/jobs"
)

func (b *bench) drillScenario(ctx context.Context) error {
	for _, t := range []string{"sqlite3", "s3cmd"} {
		if err := need(t, t); err != nil {
			return err
		}
	}
	names := []string{"auth", "billing", "credits", "audit", "quotas", "tenant-keys", "snapshots"}
	store, bucket, err := b.store(ctx, "drill")
	if err != nil {
		return err
	}
	var dbs []jobs.SQLiteDatabase
	var drillDBs []checks.DrillDatabase
	for _, n := range names {
		p := filepath.Join(b.dir, "drill-"+n+".db")
		if err := demo.ItemsDB(p, b.sz.drillMB*950); err != nil {
			return err
		}
		dbs = append(dbs, jobs.SQLiteDatabase{Name: n, Path: p})
		drillDBs = append(drillDBs, checks.DrillDatabase{Name: n, Tables: []string{"items"}})
	}
	if _, err := jobs.NewSQLiteBackup("bench", jobs.SQLiteBackupConfig{Databases: dbs, KeyTemplate: layout.DefaultSQLite, TempDir: b.dir}, store).Run(ctx); err != nil {
		return err
	}
	date := layout.Date(time.Now())
	scriptPath := filepath.Join(b.dir, "drill.sh")
	var sh strings.Builder
	sh.WriteString("#!/usr/bin/env bash\nset -e\ncd \"$1\"\n")
	for _, n := range names {
		fmt.Fprintf(&sh, "s3cmd -c %s --no-progress get --force s3://%s/%s %s.db >/dev/null\n", b.s3.s3cfg, bucket, layout.MustParse(layout.DefaultSQLite).Key(layout.Fields{Target: n, Date: date}), n)
		fmt.Fprintf(&sh, "[ -s %s.db ]\n[ \"$(sqlite3 %s.db 'PRAGMA integrity_check')\" = ok ]\nsqlite3 %s.db .tables | grep -qw items\n", n, n, n)
	}
	os.WriteFile(scriptPath, []byte(sh.String()), 0o755)
	// The first row is the drill as configured by default; the others vary how many databases
	// it restores at once (the tuning behind the default).
	parallel := []int{checks.DefaultDrillParallel}
	for _, p := range []int{1, 2, 3, 4} {
		if p != checks.DefaultDrillParallel {
			parallel = append(parallel, p)
		}
	}
	rows := []row{{name: fmt.Sprintf("opsd sqlite_drill (default: %d at once, streamed, SHA-256 verified)", parallel[0])},
		{name: "the old script: sequential s3cmd get + sqlite3 integrity_check + .tables"}}
	for _, p := range parallel[1:] {
		rows = append(rows, row{name: fmt.Sprintf("opsd sqlite_drill, %d at once", p)})
	}
	size := int64(0)
	for _, db := range dbs {
		st, _ := os.Stat(db.Path)
		size += st.Size()
	}
	opsd := func(i int) {
		d := checks.NewPlatformDrill("bench", checks.PlatformDrillConfig{Databases: drillDBs, TempDir: b.dir, Parallel: parallel[min(i, len(parallel)-1)]}, store)
		if i > 0 {
			i++ // rows[1] is the script
		}
		rows[i].samples = append(rows[i].samples, timed(func() (int64, error) {
			_, err := d.Run(ctx)
			return size, err
		}))
	}
	for r := 0; r < b.rounds; r++ {
		script := func() {
			work := filepath.Join(b.dir, fmt.Sprintf("script-%d", r))
			os.MkdirAll(work, 0o755)
			rows[1].samples = append(rows[1].samples, timedCmd(ctx, b.sz.timeLimit, size, "bash", scriptPath, work))
			os.RemoveAll(work)
		}
		// opsd and the script alternate; odd rounds start with the script.
		if r%2 == 1 {
			script()
			opsd(0)
		} else {
			opsd(0)
			script()
		}
		for i := 1; i < len(parallel); i++ {
			opsd(i)
		}
	}
	table(fmt.Sprintf("drill: 7 databases of %d MB", b.sz.drillMB), "Goal: at most 0.6x the script's time (ratio ≥ 1.67). CPU of opsd rows is the bench process's; the script's includes s3cmd and sqlite3; the S3 engine's is in neither.", rows)
	return nil
}
