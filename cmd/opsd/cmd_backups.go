package main

import (
	"context"
	"fmt"
	"io"

	"github.com/wopr-network/opsd/internal/restore"
)

// cmdBackups lists what is in the store: key, size, date, and whether it has a manifest.
func cmdBackups(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || (args[0] != "list" && args[0] != "-h" && args[0] != "--help") {
		fmt.Fprintln(stderr, "Usage: opsd backups list -c FILE [--prefix P] [--target T] [-o json]")
		return 2
	}
	fs := newFlags("backups list", "opsd backups list -c FILE [--prefix P] [--target T] [-o json]", stdout, stderr)
	cfgPath := configFlag(fs)
	prefix := fs.String("prefix", "", "only keys under this prefix (platform/, nightly/, latest/, on-demand/, pre-restore/)")
	target := fs.String("target", "", "only backups of this target (database, container or instance)")
	out := outputFlag(fs, "table", "json")
	rest := args
	if args[0] == "list" {
		rest = args[1:]
	}
	cfg, code := loadConfig(fs, cfgPath, rest, stdout, stderr)
	if cfg == nil {
		return code
	}
	keys, err := cfg.Layout()
	if err != nil {
		fmt.Fprintf(stderr, "opsd: %v\n", err)
		return 1
	}
	ctx := context.Background()
	store, err := openStore(ctx, cfg)
	if err != nil {
		fmt.Fprintf(stderr, "opsd: %v\n", err)
		return 1
	}
	rows, err := restore.Backups(ctx, store, keys, *prefix, *target)
	if err != nil {
		fmt.Fprintf(stderr, "opsd: %v\n", err)
		return 1
	}
	if *out == "json" {
		writeJSON(stdout, map[string]any{"backups": rows, "count": len(rows)})
		return 0
	}
	restore.WriteBackups(stdout, rows)
	return 0
}
