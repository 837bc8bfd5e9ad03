package checks

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/wopr-network/opsd/internal/demo"
	"github.com/wopr-network/opsd/internal/postgres/pgtest"
	"github.com/wopr-network/opsd/internal/storage/storagetest"
	"github.com/wopr-network/opsd/jobs"
)

// TestOffsiteVerifyFutureDatedBackups: one night the node's clock was a year ahead (a bad NTP
// source, a dead RTC), so the backup writers dated their keys a year on; the clock was fixed
// and then the backups stopped. Verification counted freshness from the newest key's date, the
// future one, so it kept passing "the newest set is fresh" while nothing was backed up, for a
// year. Freshness must count from the newest set (and dump) not dated after now.
func TestOffsiteVerifyFutureDatedBackups(t *testing.T) {
	ctx := context.Background()
	ahead := day2.Add(365 * 24 * time.Hour)
	t.Run("sqlite sets", func(t *testing.T) {
		store := storagetest.NewS3(t, storagetest.NewFakeS3(t).Config)
		dir := t.TempDir()
		backupSet(t, dir, store, day1, nil, nil)
		backupSet(t, dir, store, day2, nil, nil)
		backupSet(t, dir, store, ahead, nil, nil)
		verify := func(now time.Time) string {
			res, _ := NewOffsiteVerify("offsite", OffsiteVerifyConfig{Databases: demo.Names, Dates: 1, Now: func() time.Time { return now }}, store).Run(ctx)
			return res.Report
		}
		if r := verify(day2.Add(6 * time.Hour)); strings.Contains(r, "MISSING") || strings.Contains(r, "MISMATCHED") {
			t.Fatalf("fresh sets reported:\n%s", r)
		}
		r := verify(day2.Add(5 * 24 * time.Hour))
		if !strings.Contains(r, "the newest set is from 20261126, older than 26h0m0s (20271126, dated after now") {
			t.Fatalf("backups that stopped after a future-dated set are not reported:\n%s", r)
		}
	})
	t.Run("postgres dumps", func(t *testing.T) {
		store := storagetest.NewS3(t, storagetest.NewFakeS3(t).Config)
		server, tools := pgtest.Server(t)
		db := pgtest.NewDatabase(t, server, "opsd_clock")
		if err := pgtest.Fill(ctx, db, 50); err != nil {
			t.Fatal(err)
		}
		for _, at := range []time.Time{pgDay, pgDay.Add(365 * 24 * time.Hour)} {
			if _, err := jobs.NewPostgresBackup("pg", jobs.PostgresBackupConfig{DSN: db, Tools: tools, Now: func() time.Time { return at }}, store).Run(ctx); err != nil {
				t.Fatal(err)
			}
		}
		verify := func(now time.Time) string {
			res, _ := NewOffsiteVerify("offsite", OffsiteVerifyConfig{PostgresDatabases: []string{db.Database()}, Dates: 2, Now: func() time.Time { return now }}, store).Run(ctx)
			return res.Report
		}
		if r := verify(pgDay.Add(6 * time.Hour)); strings.Contains(r, "postgres/") && strings.Contains(r, "older than") {
			t.Fatalf("a fresh dump reported:\n%s", r)
		}
		r := verify(pgDay.Add(5 * 24 * time.Hour))
		if !strings.Contains(r, "the newest dump of "+db.Database()+" (postgres/") || !strings.Contains(r, "is older than") {
			t.Fatalf("dumps that stopped after a future-dated one are not reported:\n%s", r)
		}
	})
}
