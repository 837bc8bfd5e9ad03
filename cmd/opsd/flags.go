package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/wopr-network/opsd/config"
	"github.com/wopr-network/opsd/internal/layout"
	"github.com/wopr-network/opsd/internal/state"
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
	// The flag package prints the usage itself (to the flag set's output) on --help and on a bad
	// flag: catch it, and print it once, to stdout for --help and to stderr after an error.
	var help bytes.Buffer
	usage, stderr := fs.Usage, fs.Output()
	fs.Usage = func() {
		fs.SetOutput(&help)
		usage()
		fs.SetOutput(stderr)
	}
	defer func() { fs.Usage = usage }()
	var pos []string
	for {
		help.Reset()
		err := fs.Parse(args)
		if errors.Is(err, flag.ErrHelp) {
			stdout.Write(help.Bytes())
			return 0, false
		}
		if err != nil {
			stderr.Write(help.Bytes())
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

// loadConfig parses the flags (as parseFlags) and loads the job file cfgPath names; it returns a
// nil config and the exit code when the command should stop.
func loadConfig(fs *flag.FlagSet, cfgPath *string, args []string, stdout, stderr io.Writer) (*config.Config, int) {
	if code, ok := parseFlags(fs, args, stdout); !ok {
		return nil, code
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return nil, 1
	}
	return cfg, 0
}

// loadState parses the flags and loads the job file (as loadConfig), then opens its state
// database; it returns a nil store and the exit code when the command should stop.
func loadState(ctx context.Context, fs *flag.FlagSet, cfgPath *string, args []string, stdout, stderr io.Writer) (*config.Config, *state.Store, int) {
	cfg, code := loadConfig(fs, cfgPath, args, stdout, stderr)
	if cfg == nil {
		return nil, nil, code
	}
	st, err := state.Open(ctx, cfg.State.Path)
	if err != nil {
		fmt.Fprintf(stderr, "opsd: %v\n", err)
		return nil, nil, 1
	}
	return cfg, st, 0
}

// writeJSON writes v to w as indented JSON (a command's -o json).
func writeJSON(w io.Writer, v any) {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
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

// choiceFlag is a flag whose value must be one of a fixed set (-o table|json): anything else is
// refused when the flags are parsed, naming the flag and the accepted values.
type choiceFlag struct {
	value   string
	choices []string
}

func (c *choiceFlag) String() string { return c.value }

func (c *choiceFlag) Set(v string) error {
	for _, ok := range c.choices {
		if v == ok {
			c.value = v
			return nil
		}
	}
	return fmt.Errorf("must be one of %s", strings.Join(c.choices, ", "))
}

// outputFlag adds -o with the given accepted values; the first is the default.
func outputFlag(fs *flag.FlagSet, choices ...string) *string {
	c := &choiceFlag{value: choices[0], choices: choices}
	fs.Var(c, "o", "output `format`: "+strings.Join(choices, " or "))
	return &c.value
}

// validDate says whether a --date value is empty or YYYYMMDD; when not, it says so on w.
func validDate(w io.Writer, date string) bool {
	if date != "" && !layout.IsDate(date) {
		fmt.Fprintf(w, "opsd: --date %q is not YYYYMMDD\n", date)
		return false
	}
	return true
}
