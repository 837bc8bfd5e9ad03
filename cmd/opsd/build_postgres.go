package main

import (
	"context"
	"errors"

	"github.com/wopr-network/opsd/checks"
	"github.com/wopr-network/opsd/config"
	"github.com/wopr-network/opsd/internal/artifact"
	"github.com/wopr-network/opsd/internal/postgres"
	"github.com/wopr-network/opsd/jobs"
)

// postgresBackupJob builds a postgres_backup job and checks, when the server answers within
// connect_timeout, that pg_dump is at least the server's major version (a config error
// otherwise). When the server cannot be reached now, the same check runs at the start of every
// run, so the first run fails with the reason instead. A disabled job is not checked (nor is its
// server contacted) until a config that enables it is loaded: a manual run of it still checks first.
func postgresBackupJob(jc config.Job, d deps) (*jobs.PostgresBackup, error) {
	s := jc.PostgresBackup
	dsn, tools, err := postgres.ResolveServer(s.DSN.Value(), s.PgBinDir)
	if err != nil {
		return nil, err
	}
	recipients, err := artifact.ParseRecipients(s.Encryption.Recipients)
	if err != nil {
		return nil, err
	}
	j := jobs.NewPostgresBackup(jc.Name, jobs.PostgresBackupConfig{DSN: dsn, Tools: tools, KeyTemplate: s.Key, Compression: s.Compression,
		Recipients: recipients, Node: d.cfg.NodeID}, d.store) // key dates are UTC, like every key
	if !jc.IsEnabled() {
		return j, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.ConnectTimeout.D())
	defer cancel()
	if err := j.CheckVersion(ctx); errors.Is(err, jobs.ErrServerUnreachable) {
		d.log.Warn().Str("job", jc.Name).Str("target", dsn.String()).Err(err).Msg("postgres server unreachable at config time: pg_dump's version is checked at the first run")
	} else if err != nil {
		return nil, err
	}
	return j, nil
}

func postgresDrillJob(jc config.Job, d deps) (*checks.PostgresDrill, error) {
	s := jc.PostgresDrill
	dsn, tools, err := postgres.ResolveServer(s.DSN.Value(), s.PgBinDir)
	if err != nil {
		return nil, err
	}
	ids, err := readIdentities(s.IdentityFile)
	if err != nil {
		return nil, err
	}
	return checks.NewPostgresDrill(jc.Name, checks.PostgresDrillConfig{Server: dsn, Tools: tools, Database: s.Database, Prefix: s.Prefix,
		Tables: s.Tables, Critical: s.Critical, Jobs: s.Jobs, MaintenanceWorkMemMB: s.MaintenanceWorkMemMB, Identities: ids, RTOTarget: s.RTOTarget.D(), FailOnRTOBreach: s.RTOBreach == "fail",
		TempDir: s.TempDir, ReportKey: reportKey(s.ReportKey), Lookback: s.Lookback, Node: d.cfg.NodeID, Locks: d.locks}, d.store), nil
}
