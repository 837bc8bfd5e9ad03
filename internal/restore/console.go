package restore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/wopr-network/opsd/internal/artifact"
	"github.com/wopr-network/opsd/internal/httpapi"
	"github.com/wopr-network/opsd/internal/state"
)

// Console is where a restore command prints its progress: timestamped step lines and, on a
// terminal, a download progress bar.
type Console struct {
	W      io.Writer
	Bar    bool                // W is a terminal: draw download progress bars
	Redact func(string) string // removes secrets from redacted lines (nil: none)
	Now    func() time.Time    // the clock of the step lines (nil: time.Now)
}

// Line prints a progress line.
func (c *Console) Line(s string) {
	if c.Bar {
		fmt.Fprint(c.W, "\r\033[K")
	}
	now := time.Now
	if c.Now != nil {
		now = c.Now
	}
	fmt.Fprintf(c.W, "  %s  %s\n", now().Format("15:04:05"), s)
}

// RedactedLine prints a progress line without secrets (dry runs and plans).
func (c *Console) RedactedLine(s string) {
	if c.Redact != nil {
		s = c.Redact(s)
	}
	c.Line(s)
}

// OnBytes draws a download progress bar on a terminal (nothing otherwise: the step lines say
// what happens), at most ten times a second.
func (c *Console) OnBytes() artifact.Progress {
	if !c.Bar {
		return nil
	}
	var last time.Time
	return func(done, total int64) {
		if time.Since(last) < 100*time.Millisecond && done != total {
			return
		}
		last = time.Now()
		pct := 0.0
		if total > 0 {
			pct = float64(done) / float64(total)
		}
		n := int(pct * 30)
		fmt.Fprintf(c.W, "\r  [%s%s] %3.0f%%  %s / %s", strings.Repeat("#", n), strings.Repeat(".", 30-n), pct*100, artifact.HumanBytes(done), artifact.HumanBytes(total))
	}
}

// WriteResult prints how a foreground restore ended: OK with its duration and downtime, or
// FAILED with the (redacted) error and, when it got that far, its outcome and record id.
func (r *Run) WriteResult(w io.Writer, err error, outcome string, took, downtime time.Duration, redact func(string) string) {
	if err != nil {
		fmt.Fprintf(w, "FAILED  %s\n", redact(err.Error()))
		if outcome != "" {
			fmt.Fprintf(w, "outcome %s; the restore is recorded as %d (opsd restores -c FILE)\n", outcome, r.ID())
		}
		return
	}
	fmt.Fprintf(w, "OK  %s %s restored from %s in %s (downtime %s)\n", r.Kind, r.Target, r.Key, took.Round(time.Millisecond), downtime.Round(time.Millisecond))
}

// WriteNodeReport prints a node restore's report: one row per container with its phases, the
// notes and failures, the totals and the RTO.
func WriteNodeReport(w io.Writer, rep NodeReport) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprint(tw, "CONTAINER\tOUTCOME\tKEY\tSIZE")
	for _, p := range RecreatePhases {
		fmt.Fprintf(tw, "\t%s", strings.ToUpper(p))
	}
	fmt.Fprintln(tw, "\tTOTAL")
	for _, c := range rep.Containers {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s", c.Name, c.Outcome, c.Key, artifact.HumanBytes(c.Bytes))
		for _, p := range RecreatePhases {
			fmt.Fprintf(tw, "\t%.1fs", c.Phases[p])
		}
		fmt.Fprintf(tw, "\t%.1fs\n", c.Seconds)
	}
	tw.Flush()
	planned := 0
	for _, c := range rep.Containers {
		for _, warn := range c.Warnings {
			fmt.Fprintf(w, "note: %s: %s\n", c.Name, warn)
		}
		if c.Error != "" {
			fmt.Fprintf(w, "FAIL  %s: %s\n", c.Name, c.Error)
		}
		if c.Outcome == "planned" {
			planned++
		}
	}
	verb := "restored"
	if rep.DryRun {
		verb = "planned (dry run: nothing was changed)"
	}
	fmt.Fprintf(w, "Result: %d %s, %d skipped (already restored), %d failed; %s\n", rep.Restored+planned, verb, rep.Skipped, rep.Failed, artifact.HumanBytes(rep.Bytes))
	fmt.Fprintf(w, "RTO (node %s): %.1fs\n", rep.FromNode, rep.RTOSeconds)
}

// WriteRestores prints recorded restores as a table, then the error of each that did not
// succeed (redacted).
func WriteRestores(w io.Writer, list []state.Restore, redact func(string) string) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tKIND\tTARGET\tOUTCOME\tSTARTED\tDURATION\tBY\tSAFETY COPIES")
	for _, r := range list {
		dur := "-"
		if r.FinishedAt != nil {
			dur = r.FinishedAt.Sub(r.StartedAt).Round(time.Millisecond).String()
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.ID, r.Kind, r.Target, r.Outcome, r.StartedAt.Format(time.RFC3339), dur, r.RequestedBy, r.Safety)
	}
	tw.Flush()
	for _, r := range list {
		if r.Error != "" && r.Outcome != state.OutcomeSuccess {
			fmt.Fprintf(w, "\n%s %d: %s\n", r.Outcome, r.ID, redact(r.Error))
		}
	}
}

// Cancel cancels the restore id when it runs in this daemon (DELETE /api/admin/restores/{id}):
// it stops at its next step and rolls back what it changed. Otherwise the error says why not:
// httpapi.ErrNotFound for no such restore, httpapi.ErrConflict when another process runs it or
// it ended.
func (s *Registry) Cancel(ctx context.Context, st *state.Store, id int64) error {
	if s.Stop(id) {
		return nil
	}
	r, err := st.GetRestore(ctx, id)
	if errors.Is(err, state.ErrNotFound) {
		return fmt.Errorf("%w: no restore %d", httpapi.ErrNotFound, id)
	}
	if err != nil {
		return err
	}
	if r.Outcome == state.OutcomeRunning {
		return fmt.Errorf("%w: restore %d is run by another process (a CLI command: interrupt it there)", httpapi.ErrConflict, id)
	}
	return fmt.Errorf("%w: restore %d is not running (%s)", httpapi.ErrConflict, id, r.Outcome)
}
