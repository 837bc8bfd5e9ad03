package checks

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/wopr-network/opsd/internal/postgres/pgtest"
	"github.com/wopr-network/opsd/internal/storage"
	"github.com/wopr-network/opsd/internal/storage/storagetest"
	"github.com/wopr-network/opsd/jobs"
)

// TestOffsiteVerifyPostgresDumps: offsite verification checks the postgres_backup dumps like the
// sets, with real pg_dump output: clean after two nightly dumps; then a truncated older dump
// (size), a flipped byte in the newest (deep: SHA-256), a database with no dump, and dumps that
// stopped (the newest too old) are each reported.
func TestOffsiteVerifyPostgresDumps(t *testing.T) {
	store := storagetest.NewS3(t, storagetest.NewFakeS3(t).Config)
	server, tools := pgtest.Server(t)
	ctx := context.Background()
	db := pgtest.NewDatabase(t, server, "opsd_ov")
	if err := pgtest.Fill(ctx, db, 200); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, at := range []time.Time{pgDay, pgDay.Add(24 * time.Hour)} {
		res, err := jobs.NewPostgresBackup("pg", jobs.PostgresBackupConfig{DSN: db, Tools: tools, Compression: "zstd", Now: func() time.Time { return at }}, store).Run(ctx)
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, res.Targets[0].Key)
	}
	name := db.Database()
	verify := func(now time.Time, dbs ...string) *OffsiteVerify {
		return NewOffsiteVerify("offsite", OffsiteVerifyConfig{PostgresDatabases: dbs, Dates: 2, Now: func() time.Time { return now }}, store)
	}
	fresh := pgDay.Add(30 * time.Hour)
	// No SQLite sets in this store: only the postgres lines are of interest here.
	onlyPG := func(report string) string {
		var out []string
		for _, l := range strings.Split(report, "\n") {
			if strings.Contains(l, "postgres/") {
				out = append(out, l)
			}
		}
		return strings.Join(out, "\n")
	}
	res, _ := verify(fresh, name).WithDeep(true).Run(ctx)
	if got := onlyPG(res.Report); got != "" {
		t.Fatalf("clean dumps reported:\n%s", res.Report)
	}
	if tr := res.Targets[len(res.Targets)-1]; tr.Name != "postgres "+name || tr.Status != jobs.TargetOK || tr.Note != "2 dumps" {
		t.Fatalf("target %+v", tr)
	}

	b := mustRead(t, store, keys[0])
	store.Put(ctx, keys[0], bytes.NewReader(b[:len(b)-10]), storage.PutOptions{Size: int64(len(b) - 10)})
	flip(t, store, keys[1])
	res, err := verify(fresh, name, "billing_pg").WithDeep(true).Run(ctx)
	if err == nil {
		t.Fatal("verification passed")
	}
	for _, want := range []string{
		"MISMATCHED  " + keys[0] + " — the object has ",
		"MISMATCHED  " + keys[1] + " — sha256 ",
		"MISSING     postgres/ — billing_pg has no dump with a manifest",
	} {
		if !strings.Contains(res.Report, want) {
			t.Fatalf("report lacks %q:\n%s", want, res.Report)
		}
	}
	// Not deep: the flipped byte keeps its size, so only the truncated dump shows.
	res, _ = verify(fresh, name).Run(ctx)
	if got := onlyPG(res.Report); strings.Contains(got, keys[1]) || !strings.Contains(got, keys[0]) {
		t.Fatalf("shallow run:\n%s", res.Report)
	}
	// The dumps stopped: the newest is four days old.
	res, _ = verify(pgDay.Add(5*24*time.Hour), name).Run(ctx)
	if !strings.Contains(res.Report, "MISSING     postgres/ — the newest dump of "+name+" ("+keys[1]+") is older than 26h0m0s") {
		t.Fatalf("stale dumps not reported:\n%s", res.Report)
	}
}
