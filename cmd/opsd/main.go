// Command opsd is the WOPR platform's backup-and-drill daemon and the operator's CLI for one-off
// backups, drills, verification and restores. See README.md.
//
// The runtime's periodic GOMAXPROCS update (Go 1.25) wakes an idle daemon every second to read
// the cgroup's CPU limit: 0.008% CPU of the 0.01% idle budget (measured). The limit is read at
// start; a changed limit takes effect at the next restart.
//
//go:debug updatemaxprocs=0
package main

import (
	"fmt"
	"io"
	"os"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

const usage = `opsd keeps the WOPR platform recoverable: scheduled backups, restore drills,
pruning, offsite verification, and the truth about them as metrics, Sentry events and HTTP.

Usage:
  opsd run -c FILE                 run the daemon
  opsd demo [--dir DIR]            run every job on sample data with a local store
  opsd config check -c FILE        validate a job file (every error, with line numbers)
  opsd jobs list -c FILE           list configured jobs, their schedules and last runs
  opsd jobs run -c FILE NAME       run one job now, in the foreground
  opsd backup db -c FILE [--db N]  back up the platform databases now
  opsd backup containers|hot|snapshots -c FILE [NAME...]
                                   export tenant containers (nightly or changed-only), snapshot WOPR_HOME
  opsd drill db -c FILE [--date D] restore the newest platform set into scratch files and prove it
  opsd drill containers -c FILE [TENANT]  import and start the newest nightly archive(s), then clean up
  opsd verify -c FILE [--deep]     check the object store holds every expected backup
  opsd prune -c FILE [--dry-run]   apply retention; --dry-run prints the plan with each rule
  opsd forget -c FILE --tenant ID [--dry-run] [--yes]
                                   delete every backup of one tenant (asks on a terminal)
  opsd restore db -c FILE [--date D] [--db N]... [--dry-run] [--stop-container C] [--health-url U]
  opsd restore container -c FILE NAME [--key K | --date D | --latest]
  opsd restore snapshot -c FILE INSTANCE [--key K]
  opsd restores -c FILE [-o json]   list restores (outcome, safety copies); reports interrupted ones
  opsd backups list -c FILE [--prefix P] [--target T] [-o json]
  opsd adopt -c FILE [--prefix P] [--dry-run]  verify backups opsd did not write; manifest those that pass
  opsd healthcheck [--url URL]     exit 0 when opsd answers ready (Docker HEALTHCHECK)
  opsd version                     print the version

Run 'opsd COMMAND --help' for a command's flags.
`

// run dispatches a command line and returns the exit code.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "run":
		return cmdRun(rest, stdout, stderr)
	case "demo":
		return cmdDemo(rest, stdout, stderr)
	case "config":
		return cmdConfig(rest, stdout, stderr)
	case "jobs":
		return cmdJobs(rest, stdout, stderr)
	case "backup":
		return cmdBackup(rest, stdout, stderr)
	case "drill":
		return cmdDrill(rest, stdout, stderr)
	case "prune":
		return cmdPrune(rest, stdout, stderr)
	case "forget":
		return cmdForget(rest, stdout, stderr)
	case "verify":
		return cmdVerify(rest, stdout, stderr)
	case "restore":
		return cmdRestore(rest, stdout, stderr)
	case "restores":
		return cmdRestores(rest, stdout, stderr)
	case "backups":
		return cmdBackups(rest, stdout, stderr)
	case "adopt":
		return cmdAdopt(rest, stdout, stderr)
	case "healthcheck":
		return cmdHealthcheck(rest, stdout, stderr)
	case "version", "--version":
		fmt.Fprintf(stdout, "opsd %s\n", version)
		return 0
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "opsd: unknown command %q\n\n%s", cmd, usage)
		return 2
	}
}
