package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"

	"github.com/wopr-network/opsd/jobs"
)

// cmdAdopt verifies backups opsd did not write and writes manifests marked adopted for those
// that pass (jobs.Adopt).
func cmdAdopt(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("adopt", "opsd adopt -c FILE [--prefix P] [--tier T] [--dry-run] [-o text|json]", stdout, stderr)
	cfgPath := configFlag(fs)
	prefix := fs.String("prefix", "", "only objects under this prefix (e.g. platform/ or nightly/node-1/)")
	dry := fs.Bool("dry-run", false, "verify and report, write no manifest")
	tier := fs.String("tier", "", "tier recorded in adopted archives' manifests (retention keeps every backup of a target whose newest manifest has no tier)")
	out := outputFlag(fs, "text", "json")
	cfg, code := loadConfig(fs, cfgPath, args, stdout, stderr)
	if cfg == nil {
		return code
	}
	if _, ok := cfg.Tiers[*tier]; *tier != "" && !ok {
		fmt.Fprintf(stderr, "opsd adopt: --tier %q is not a tier of the job file (%s)\n", *tier, strings.Join(cfg.TierNames(), ", "))
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	store, err := openStore(ctx, cfg)
	if err != nil {
		fmt.Fprintf(stderr, "opsd: %v\n", err)
		return 1
	}
	rep, err := jobs.Adopt(ctx, store, jobs.AdoptConfig{Prefix: *prefix, DryRun: *dry, Tables: cfg.ExpectedTables(), Node: cfg.NodeID, Tier: *tier})
	if *out == "json" {
		b, _ := json.MarshalIndent(rep, "", "  ")
		fmt.Fprintln(stdout, string(b))
	} else {
		fmt.Fprint(stdout, rep.Text())
	}
	if err != nil {
		fmt.Fprintf(stderr, "opsd: %v\n", err)
		return 1
	}
	return 0
}
