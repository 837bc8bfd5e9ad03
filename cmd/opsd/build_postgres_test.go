package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/wopr-network/opsd/config"
	"github.com/wopr-network/opsd/internal/postgres/pgtest"
)

// TestPostgresBackupVersionCheckAtBuild: a pg_dump older than a reachable server is a config
// error when the job is built; an unreachable server leaves the check to the first run and says
// so in the log.
func TestPostgresBackupVersionCheckAtBuild(t *testing.T) {
	server, tools := pgtest.Server(t)
	dir := t.TempDir()
	old := filepath.Join(dir, "oldbin")
	os.Mkdir(old, 0o755)
	os.WriteFile(filepath.Join(old, "pg_dump"), []byte("#!/bin/sh\necho 'pg_dump (PostgreSQL) 9.6.24'\n"), 0o755)
	os.Symlink(tools.Path("pg_restore"), filepath.Join(old, "pg_restore"))
	build := func(dsn, bin string) (string, error) {
		cfgPath := filepath.Join(dir, "opsd.yaml")
		os.WriteFile(cfgPath, []byte(fmt.Sprintf("node_id: n1\nstate: {path: %s/state.db}\nstorage: {backend: local, local: {path: %s/store}}\njobs:\n"+
			"  - {name: pg, kind: postgres_backup, schedule: \"@daily\", dsn: %q, pg_bin_dir: %s, connect_timeout: 2s}\n", dir, dir, dsn, bin)), 0o600)
		cfg, err := config.Load(cfgPath)
		if err != nil {
			t.Fatal(err)
		}
		var logs bytes.Buffer
		_, err = buildJob(cfg.Jobs[0], deps{cfg: cfg, log: zerolog.New(&logs)})
		return logs.String(), err
	}
	full := strings.Replace(server.String(), "@", ":"+server.Password()+"@", 1)
	if _, err := build(full, old); err == nil || !strings.Contains(err.Error(), "pg_dump 9 ") || !strings.Contains(err.Error(), "older than the server") {
		t.Fatalf("old pg_dump: %v", err)
	}
	if _, err := build(full, tools.BinDir); err != nil {
		t.Fatalf("current pg_dump: %v", err)
	}
	logs, err := build("postgresql://opsd:pw@127.0.0.1:1/wopr_platform", old)
	if err != nil || !strings.Contains(logs, "unreachable at config time") {
		t.Fatalf("unreachable server: %v, log %s", err, logs)
	}
}

// TestDisabledPostgresBackupIsNotCheckedAtBuild: a disabled postgres_backup job does not contact
// its server when built (an idle daemon never runs it; a manual run checks pg_dump's version
// first, and a config that enables it is built and checked again); an enabled one does.
func TestDisabledPostgresBackupIsNotCheckedAtBuild(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	os.Mkdir(bin, 0o755)
	for _, tool := range []string{"pg_dump", "pg_restore"} {
		os.WriteFile(filepath.Join(bin, tool), []byte("#!/bin/sh\necho '"+tool+" (PostgreSQL) 9.6.24'\n"), 0o755)
	}
	for _, enabled := range []bool{true, false} {
		cfgPath := filepath.Join(dir, "opsd.yaml")
		os.WriteFile(cfgPath, []byte(fmt.Sprintf("node_id: n1\nstate: {path: %s/state.db}\nstorage: {backend: local, local: {path: %s/store}}\njobs:\n"+
			"  - {name: pg, kind: postgres_backup, enabled: %v, schedule: \"@daily\", dsn: \"postgresql://opsd:pw@127.0.0.1:1/wopr_platform\", pg_bin_dir: %s, connect_timeout: 2s}\n",
			dir, dir, enabled, bin)), 0o600)
		cfg, err := config.Load(cfgPath)
		if err != nil {
			t.Fatal(err)
		}
		var logs bytes.Buffer
		if _, err := buildJob(cfg.Jobs[0], deps{cfg: cfg, log: zerolog.New(&logs)}); err != nil {
			t.Fatalf("enabled %v: %v", enabled, err)
		}
		if tried := strings.Contains(logs.String(), "unreachable at config time"); tried != enabled {
			t.Fatalf("enabled %v: server contacted at build = %v (log %s)", enabled, tried, logs.String())
		}
	}
}
