package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

// newFlags returns a flag set whose --help prints the synopsis and flags to stdout.
func newFlags(name, synopsis string, stdout, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: %s\n\nFlags:\n", synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses args; it returns (exit code, false) when the command should stop (help or a
// bad flag). Flags and positional arguments may be mixed.
func parseFlags(fs *flag.FlagSet, args []string, stdout io.Writer) (int, bool) {
	var pos []string
	for {
		err := fs.Parse(args)
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(stdout)
			fs.Usage()
			return 0, false
		}
		if err != nil {
			return 2, false
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	_ = fs.Parse(append([]string{"--"}, pos...))
	return 0, true
}

// configFlag adds -c/--config with the OPSD_CONFIG default.
func configFlag(fs *flag.FlagSet) *string {
	def := os.Getenv("OPSD_CONFIG")
	if def == "" {
		def = "/etc/opsd/opsd.yaml"
	}
	p := fs.String("config", def, "job file (env OPSD_CONFIG)")
	fs.StringVar(p, "c", def, "job file (shorthand)")
	return p
}

// multiFlag collects a repeatable flag.
type multiFlag []string

func (m *multiFlag) String() string { return strings.Join(*m, ",") }

func (m *multiFlag) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*m = append(*m, s)
		}
	}
	return nil
}
