package main

import (
	"fmt"
	"io"
)

func cmdConfig(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "check" {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help") {
			fmt.Fprintln(stdout, "Usage: opsd config check -c FILE")
			return 0
		}
		fmt.Fprintln(stderr, "Usage: opsd config check -c FILE")
		return 2
	}
	fs := newFlags("config check", "opsd config check -c FILE", stdout, stderr)
	cfgPath := configFlag(fs)
	cfg, code := loadConfig(fs, cfgPath, args[1:], stdout, stderr)
	if cfg == nil {
		return code
	}
	enabled := 0
	for _, j := range cfg.Jobs {
		if j.IsEnabled() {
			enabled++
		}
	}
	// The PostgreSQL client tools the enabled postgres jobs run: missing ones fail now, not later.
	if missing := cfg.MissingPostgresTools(); len(missing) > 0 {
		for _, m := range missing {
			fmt.Fprintf(stderr, "%s: %s\n", *cfgPath, m)
		}
		return 1
	}
	fmt.Fprintf(stdout, "%s: ok (%d jobs, %d enabled, %s store)\n", *cfgPath, len(cfg.Jobs), enabled, cfg.Storage.Backend)
	return 0
}
