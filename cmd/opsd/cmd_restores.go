package main

import (
	"context"
	"fmt"
	"io"

	"github.com/wopr-network/opsd/internal/restore"
	"github.com/wopr-network/opsd/internal/telemetry"
)

// cmdRestores lists the recorded restores, newest first; restores a process that is gone left
// running are reported as interrupted first.
func cmdRestores(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("restores", "opsd restores -c FILE [--limit N] [-o json]", stdout, stderr)
	cfgPath := configFlag(fs)
	limit := fs.Int("limit", 20, "how many restores to list")
	out := outputFlag(fs, "table", "json")
	ctx := context.Background()
	cfg, st, code := loadState(ctx, fs, cfgPath, args, stdout, stderr)
	if st == nil {
		return code
	}
	defer st.Close()
	red := telemetry.NewRedactor(cfg.Secrets()...)
	if rs, err := restore.Recover(ctx, st); err != nil {
		fmt.Fprintf(stderr, "opsd: %v\n", err)
	} else {
		for _, r := range rs {
			fmt.Fprintf(stderr, "warning: %s\n", red.Redact(r.Error))
		}
	}
	list, err := st.Restores(ctx, *limit)
	if err != nil {
		fmt.Fprintf(stderr, "opsd: %v\n", err)
		return 1
	}
	if *out == "json" {
		writeJSON(stdout, map[string]any{"restores": list})
		return 0
	}
	restore.WriteRestores(stdout, list, red.Redact)
	return 0
}
