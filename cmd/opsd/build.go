package main

import (
	"bytes"
	"context"
	"fmt"

	"filippo.io/age"

	"github.com/rs/zerolog"

	"github.com/wopr-network/opsd/checks"
	"github.com/wopr-network/opsd/config"
	"github.com/wopr-network/opsd/internal/artifact"
	"github.com/wopr-network/opsd/internal/docker"
	"github.com/wopr-network/opsd/internal/layout"
	"github.com/wopr-network/opsd/internal/metrics"
	"github.com/wopr-network/opsd/internal/prefixlock"
	"github.com/wopr-network/opsd/internal/state"
	"github.com/wopr-network/opsd/internal/storage"
	"github.com/wopr-network/opsd/internal/storage/local"
	s3store "github.com/wopr-network/opsd/internal/storage/s3"
	"github.com/wopr-network/opsd/jobs"
)

// deps are what job constructors get.
type deps struct {
	cfg   *config.Config
	store storage.Store
	log   zerolog.Logger
	// locks keep prune away from prefixes drills, verification and restores read.
	locks *prefixlock.Locks
	// docker is the engine client (connects on first use).
	docker *docker.Client
	state  *state.Store
}

// buildJob is the one switch that turns a config job entry into a job.
func buildJob(jc config.Job, d deps) (jobs.Job, error) {
	keys, err := d.cfg.Layout()
	if err != nil {
		return nil, err
	}
	switch jc.Kind {
	case "noop":
		return &jobs.Noop{JobName: jc.Name, Sleep: jc.Noop.Sleep.D(), Fail: jc.Noop.Fail}, nil
	case "http_ping":
		return &jobs.HTTPPing{JobName: jc.Name, URL: jc.HTTPPing.URL.Value(), Method: jc.HTTPPing.Method, ExpectedStatus: jc.HTTPPing.ExpectedStatus}, nil
	case "sqlite_backup":
		return sqliteBackupJob(jc, d)
	case "container_export":
		s := jc.ContainerExport
		recipients, tiers, err := encryptionAndTiers(s.Encryption, s.ResolvedTierSource(), d.cfg)
		if err != nil {
			return nil, err
		}
		return jobs.NewContainerExport(jc.Name, jobs.ContainerExportConfig{NamePrefix: s.NamePrefix, Labels: s.Labels, KeyTemplate: s.Key,
			Compression: s.Compression, Recipients: recipients, ChangedOnly: s.ChangedOnly, TierLabel: s.TierLabel, Tiers: tiers, Parallel: s.Parallel,
			Pause: s.Pause, Node: d.cfg.NodeID}, d.docker, d.state, d.store), nil
	case "dir_snapshot":
		s := jc.DirSnapshot
		recipients, tiers, err := encryptionAndTiers(s.Encryption, s.ResolvedTierSource(), d.cfg)
		if err != nil {
			return nil, err
		}
		return jobs.NewDirSnapshot(jc.Name, jobs.DirSnapshotConfig{BaseDir: s.BaseDir, KeyTemplate: s.Key, Compression: s.Compression,
			Recipients: recipients, Tier: s.Tier, Tiers: tiers, Parallel: s.Parallel, Node: d.cfg.NodeID}, d.store), nil
	case "container_drill":
		s := jc.ContainerDrill
		ids, err := readIdentities(s.IdentityFile)
		if err != nil {
			return nil, err
		}
		return checks.NewContainerDrill(jc.Name, checks.ContainerDrillConfig{Layout: keys, Prefix: s.Prefix, Tenant: s.Tenant, Sample: s.Sample, ProbeCmd: s.ProbeCmd,
			ProbeTimeout: s.ProbeTimeout.D(), ProbeStaysUp: s.ProbeStaysUp, Identities: ids, RTOTarget: s.RTOTarget.D(),
			FailOnRTOBreach: s.RTOBreach == "fail", TempDir: s.TempDir, Locks: d.locks}, d.docker, d.store), nil
	case "node_drill":
		s := jc.NodeDrill
		ids, err := readIdentities(s.IdentityFile)
		if err != nil {
			return nil, err
		}
		return checks.NewNodeDrill(jc.Name, checks.NodeDrillConfig{FromNode: s.FromNode, Sample: s.Sample, Parallel: s.Parallel, Probe: s.Probe.D(),
			Identities: ids, RTOTarget: s.RTOTarget.D(), FailOnRTOBreach: s.RTOBreach == "fail", TempDir: s.TempDir, Locks: d.locks, Layout: keys}, d.docker, d.store), nil
	case "prune":
		return pruneJob(jc, d)
	case "sqlite_drill":
		return platformDrillJob(jc, d, keys)
	case "postgres_backup":
		return postgresBackupJob(jc, d)
	case "postgres_drill":
		return postgresDrillJob(jc, d)
	case "offsite_verify":
		v := jc.OffsiteVerify
		vc := checks.OffsiteVerifyConfig{Layout: keys, Prefix: v.Prefix, Databases: v.Databases, Dates: v.Dates, MaxAge: v.MaxAge.D(), Deep: v.Deep, Locks: d.locks, Node: d.cfg.NodeID}
		vc.PostgresDatabases = d.cfg.PostgresDatabases() // every postgres_backup job's database
		nightly, hot := d.cfg.ContainerExports()
		if (v.Containers == nil && nightly != nil) || (v.Containers != nil && *v.Containers) {
			vc.Containers, vc.NamePrefix, vc.NightlyMaxAge = d.docker, "tenant_", v.NightlyMaxAge.D()
			if nightly != nil {
				vc.NamePrefix = nightly.NamePrefix
			}
			if hot != nil {
				vc.HotMaxAge = v.HotMaxAge.D()
			}
		}
		return checks.NewOffsiteVerify(jc.Name, vc, d.store), nil
	default:
		return nil, fmt.Errorf("unknown job kind %q", jc.Kind)
	}
}

// encryptionAndTiers parses a backup job's age recipients and builds its tier source.
func encryptionAndTiers(enc config.Encryption, ts config.TierSource, cfg *config.Config) ([]age.Recipient, *jobs.TierSource, error) {
	recipients, err := artifact.ParseRecipients(enc.Recipients)
	if err != nil {
		return nil, nil, err
	}
	tiers, err := tierSource(ts, cfg)
	return recipients, tiers, err
}

func sqliteBackupJob(jc config.Job, d deps) (*jobs.SQLiteBackup, error) {
	s := jc.SQLiteBackup
	recipients, err := artifact.ParseRecipients(s.Encryption.Recipients)
	if err != nil {
		return nil, err
	}
	dbs := make([]jobs.SQLiteDatabase, len(s.Databases))
	for i, db := range s.Databases {
		dbs[i] = jobs.SQLiteDatabase{Name: db.Name, Path: db.Path, Optional: db.Optional, Tables: db.Tables}
	}
	return jobs.NewSQLiteBackup(jc.Name, jobs.SQLiteBackupConfig{
		Databases:   dbs,
		KeyTemplate: s.Key,
		Compression: s.Compression,
		Recipients:  recipients,
		CopyTimeout: s.CopyTimeout.D(),
		TempDir:     s.TempDir,
		Parallel:    s.Parallel,
		Node:        d.cfg.NodeID,
	}, d.store), nil
}

func platformDrillJob(jc config.Job, d deps, keys *layout.Layout) (*checks.PlatformDrill, error) {
	s := jc.SQLiteDrill
	ids, err := readIdentities(s.IdentityFile)
	if err != nil {
		return nil, err
	}
	dbs := make([]checks.DrillDatabase, len(s.Databases))
	for i, db := range s.Databases {
		dbs[i] = checks.DrillDatabase{Name: db.Name, Tables: db.Tables, Critical: db.Critical, Optional: db.Optional}
	}
	return checks.NewPlatformDrill(jc.Name, checks.PlatformDrillConfig{
		Layout: keys, Prefix: s.Prefix, Databases: dbs, Identities: ids, Parallel: s.Parallel,
		RTOTargetDB: s.RTOTargetDB.D(), RTOTargetTotal: s.RTOTargetTotal.D(), FailOnRTOBreach: s.RTOBreach == "fail",
		TempDir: s.TempDir, ReportKey: reportKey(s.ReportKey), Lookback: s.Lookback, Node: d.cfg.NodeID, Locks: d.locks,
	}, d.store), nil
}

func pruneJob(jc config.Job, d deps) (*jobs.Prune, error) {
	s := jc.Prune
	tiers := map[string]jobs.Tier{}
	for name, t := range d.cfg.Tiers {
		tiers[name] = jobs.Tier{KeepDaily: t.KeepDaily, KeepWeekly: t.KeepWeekly, OnDemandMax: t.OnDemandMax, RetentionDays: t.RetentionDays}
	}
	rules := make([]jobs.PruneRule, len(s.Rules))
	for i, r := range s.Rules {
		minKeep := 1
		if r.MinKeep != nil {
			minKeep = *r.MinKeep
		}
		rules[i] = jobs.PruneRule{Prefix: r.Prefix, Sets: r.Sets, Depth: r.Depth, TierPolicy: r.TierPolicy, DeleteForeign: r.DeleteForeign, Policy: jobs.Policy{
			KeepLast: r.KeepLast, KeepDaily: r.KeepDaily, KeepWeekly: r.KeepWeekly, KeepMonthly: r.KeepMonthly, KeepWithin: r.KeepWithin.D(), MinKeep: minKeep}}
	}
	pc := jobs.PruneConfig{Rules: rules, Tiers: tiers, Grace: s.Grace.D(), AbortUploadsAfter: s.AbortUploadsAfter.D(),
		DeletesPerSecond: d.cfg.Storage.DeletesPerSecond(), DryRun: s.DryRun, LockWait: s.LockWait.D(), Locks: d.locks}
	if s.OrphanKeep != nil {
		pc.OrphanKeep = s.OrphanKeep.D()
		if ts, ok := d.cfg.TenantTierSource(); ok {
			tenants, err := tierSource(ts, d.cfg)
			if err != nil {
				return nil, err
			}
			pc.Tenants = tenants
		}
	}
	return jobs.NewPrune(jc.Name, pc, d.store), nil
}

// tierSource turns a job's resolved tier_source into the jobs' resolver, with the tier table's
// names as the known tiers.
func tierSource(ts config.TierSource, cfg *config.Config) (*jobs.TierSource, error) {
	s := &jobs.TierSource{Kind: ts.Kind, Label: ts.Label, Map: ts.Map, Query: ts.Query, TenantFrom: ts.TenantFrom,
		Tiers: cfg.TierNames(), Timeout: ts.Timeout.D()}
	if ts.Default != nil {
		s.Default = *ts.Default
	}
	var err error
	s.Driver, s.DSN, err = ts.QueryDatabase()
	return s, err
}

// reportKey is a drill's report_key ("none": no report).
func reportKey(k string) string {
	if k == "none" {
		return ""
	}
	return k
}

// readIdentities reads an age identity file ("" means none).
func readIdentities(path string) ([]age.Identity, error) {
	if path == "" {
		return nil, nil
	}
	b, err := config.ReadSecretFile(path)
	if err != nil {
		return nil, fmt.Errorf("read identity file: %w", err)
	}
	return artifact.ReadIdentities(bytes.NewReader(b))
}

// buildSpecs builds every job of the config with its scheduling settings.
func buildSpecs(cfg *config.Config, d deps) ([]jobs.Spec, error) {
	specs := make([]jobs.Spec, 0, len(cfg.Jobs))
	for i, jc := range cfg.Jobs {
		j, err := buildJob(jc, d)
		if err != nil {
			return nil, fmt.Errorf("jobs[%d] %s: %w", i, jc.Name, err)
		}
		sched, err := jc.ParsedSchedule()
		if err != nil {
			return nil, fmt.Errorf("jobs[%d] %s: %w", i, jc.Name, err)
		}
		specs = append(specs, jobs.Spec{
			Job:         j,
			Schedule:    sched,
			Location:    cfg.Location(),
			Timeout:     jc.Timeout.D(),
			Enabled:     jc.IsEnabled(),
			CatchUp:     jc.CatchUp,
			RunAtStart:  jc.RunAtStart,
			Scope:       cfg.Scope(jc),
			Fingerprint: fmt.Sprintf("%s|%s|%s|%v|%s", jc.Kind, jc.Schedule, cfg.Timezone, jc.IsEnabled(), cfg.Scope(jc)),
		})
	}
	return specs, nil
}

// openStore opens the configured object store. A local store is remembered beside the state
// database (STATE_PATH.local-store), so a directory that is not the store opsd used there (a
// backup disk that did not mount) is refused instead of becoming a new, empty one.
func openStore(ctx context.Context, cfg *config.Config) (storage.Store, error) {
	c := cfg.Storage
	switch c.Backend {
	case "s3":
		return s3store.New(ctx, s3store.Config{
			Endpoint:     c.S3.Endpoint,
			Region:       c.S3.Region,
			Bucket:       c.S3.Bucket,
			AccessKey:    c.S3.AccessKey.Value(),
			SecretKey:    c.S3.SecretKey.Value(),
			Secure:       c.S3.UseTLS(),
			CAFile:       c.S3.CAFile,
			PartSize:     int64(c.S3.PartSize),
			Parallel:     c.S3.Parallel,
			UploadMemory: int64(c.S3.UploadMemory),
			// A reload that changes it reopens the store, so it applies to the next runs.
			RequestTimeout: c.S3.RequestTimeout.D(),
		})
	default:
		return local.Open(c.Local.Path, cfg.State.Path+".local-store")
	}
}

// instrument wraps an opened store the way every command and the daemon use it: its operations
// counted, and its artifact writers holding the key locks (the CLI and the daemon on one host
// take turns writing one key).
func instrument(s storage.Store, m *metrics.Metrics, keys *artifact.KeyLocks) storage.Store {
	return artifact.Locking(storage.Instrument(s, m.StorageOps), keys)
}
