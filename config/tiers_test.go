package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestTierSourceValid(t *testing.T) {
	db := filepath.Join(t.TempDir(), "platform.db")
	os.WriteFile(db, nil, 0o600)
	yaml := `node_id: n1
jobs:
  - name: nightly
    kind: container_export
    schedule: "@daily"
    tier_source:
      kind: query
      db: ` + db + `
      query: SELECT id, tier FROM tenant_customers
  - name: homes
    kind: dir_snapshot
    schedule: "@daily"
    tier_source:
      kind: map
      map: {abc: pro, def: starter}
      default: free
  - name: prune
    kind: prune
    schedule: "@daily"
    orphan_keep: 30d
  - name: labels
    kind: container_export
    schedule: "@daily"
    key: "x/{container}_{date}.tar.gz"
`
	cfg, err := parse([]byte(yaml), "opsd.yaml", envOf(map[string]string{}))
	if err != nil {
		t.Fatal(err)
	}
	ts := cfg.Jobs[0].ContainerExport.ResolvedTierSource()
	if ts.Kind != "query" || ts.TenantFrom != "tenant_{id}" || ts.Default != nil || ts.Timeout.D() <= 0 {
		t.Fatalf("query source: %+v", ts)
	}
	hs := cfg.Jobs[1].DirSnapshot.ResolvedTierSource()
	if hs.Kind != "map" || hs.TenantFrom != "{id}" || *hs.Default != "free" || hs.Map["abc"] != "pro" {
		t.Fatalf("map source: %+v", hs)
	}
	if o := cfg.Jobs[2].Prune.OrphanKeep; o == nil || o.D().Hours() != 720 {
		t.Fatalf("orphan_keep: %v", o)
	}
	ls := cfg.Jobs[3].ContainerExport.ResolvedTierSource()
	if ls.Kind != "label" || ls.Label != "wopr.tier" || *ls.Default != "free" {
		t.Fatalf("label source (the default): %+v", ls)
	}
	fixed := Job{DirSnapshot: &DirSnapshotSettings{Tier: "pro"}}
	if fs := fixed.DirSnapshot.ResolvedTierSource(); fs.Kind != "map" || *fs.Default != "pro" {
		t.Fatalf("fixed tier: %+v", fs)
	}
}

func TestTierSourceSecretRedacted(t *testing.T) {
	yaml := `node_id: n1
jobs:
  - name: nightly
    kind: container_export
    schedule: "@daily"
    tier_source:
      kind: query
      dsn: ${PG}
      query: SELECT id, tier FROM tenant_customers
`
	cfg, err := parse([]byte(yaml), "opsd.yaml", envOf(map[string]string{"PG": "postgresql://wopr:s3cret@db/wopr_platform"}))
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, s := range cfg.Secrets() {
		found = found || strings.Contains(s, "s3cret")
	}
	if !found {
		t.Fatal("the tier source's DSN is not among the secrets to redact")
	}
}

// TestTierSourceInvalid: each mistake is an error naming the job file, the YAML path and line.
func TestTierSourceInvalid(t *testing.T) {
	head := "node_id: n1\njobs:\n  - name: j\n    schedule: \"@daily\"\n"
	for _, tt := range []struct{ name, body, want string }{
		{"bad kind", "    kind: container_export\n    tier_source:\n      kind: ldap\n",
			`opsd.yaml: jobs[0].tier_source.kind (line 7): must be label, map or query, got "ldap"`},
		{"unknown tier in map", "    kind: container_export\n    tier_source:\n      kind: map\n      map:\n        abc: platinum\n",
			`opsd.yaml: jobs[0].tier_source.map.abc (line 9): unknown tier "platinum" (known: enterprise, free, pro, starter)`},
		{"query without a database", "    kind: container_export\n    tier_source:\n      kind: query\n      query: SELECT id, tier FROM t\n",
			`opsd.yaml: jobs[0].tier_source.db (line 6): kind query needs db (a SQLite path) or dsn (PostgreSQL)`},
		{"query that writes", "    kind: container_export\n    tier_source:\n      kind: query\n      dsn: postgresql://x@h/db\n      query: DELETE FROM t\n",
			`opsd.yaml: jobs[0].tier_source.query (line 9): must be a SELECT (or WITH ... SELECT) returning (tenant id, tier)`},
		{"missing sqlite file", "    kind: container_export\n    tier_source:\n      kind: query\n      db: /nonexistent/p.db\n      query: SELECT id, tier FROM t\n",
			`opsd.yaml: jobs[0].tier_source.db (line 8): cannot read /nonexistent/p.db: no such file or directory`},
		{"bad tenant_from", "    kind: container_export\n    tier_source:\n      kind: map\n      map: {a: pro}\n      tenant_from: tenant_\n",
			`opsd.yaml: jobs[0].tier_source.tenant_from (line 9): must contain {id} once, with letters, digits, '.', '_' or '-' around it, got "tenant_"`},
		{"label for instances", "    kind: dir_snapshot\n    tier_source:\n      kind: label\n",
			`opsd.yaml: jobs[0].tier_source.kind (line 7): instances have no labels: use map or query`},
		{"both label and source", "    kind: container_export\n    tier_label: x.tier\n    tier_source:\n      kind: map\n      map: {a: pro}\n",
			`opsd.yaml: jobs[0].tier_label (line 6): set either tier_label or tier_source, not both`},
		{"key of another kind", "    kind: container_export\n    tier_source:\n      kind: label\n      map: {a: pro}\n",
			`opsd.yaml: jobs[0].tier_source.map (line 8): is not used by kind label`},
		{"unknown default", "    kind: container_export\n    tier_source:\n      default: gold\n",
			`opsd.yaml: jobs[0].tier_source.default (line 7): unknown tier "gold" (known: enterprise, free, pro, starter)`},
		{"orphan_keep without tenants", "    kind: prune\n    orphan_keep: 30d\n",
			`opsd.yaml: jobs[0].orphan_keep (line 6): needs a container_export job whose tier_source (kind query, or map without a default) knows the platform's tenants`},
		{"unknown key", "    kind: container_export\n    tier_source:\n      kind: map\n      mapp: {a: pro}\n",
			`opsd.yaml: jobs[0].tier_source.mapp (line 8): unknown key "mapp" (did you mean "map"?)`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parse([]byte(head+tt.body), "opsd.yaml", noEnv)
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got:\n%v\nwant a line:\n%s", err, tt.want)
			}
		})
	}
}
