package jobs

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/wopr-network/opsd/internal/artifact"
	"github.com/wopr-network/opsd/internal/state"
)

// AddHistory fills the job's last run, its outcome and error, and its last success from the
// state database (they stay nil when it never ran).
func (i *Info) AddHistory(ctx context.Context, st *state.Store) {
	if r, err := st.LastRun(ctx, i.Name); err == nil {
		t := r.StartedAt
		i.LastRun, i.LastOutcome, i.LastError = &t, r.Outcome, r.Error
	}
	if r, err := st.LastSuccess(ctx, i.Name); err == nil {
		t := r.StartedAt
		i.LastSuccess = &t
	}
}

// WriteInfoTable writes jobs as `opsd jobs list` shows them: name, kind, schedule, next run,
// last run and its outcome.
func WriteInfoTable(w io.Writer, infos []Info) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tKIND\tSCHEDULE\tNEXT RUN\tLAST RUN\tOUTCOME")
	for _, i := range infos {
		next, last, outcome := "disabled", "never", "-"
		if i.NextRun != nil {
			next = i.NextRun.Format(time.RFC3339)
		}
		if i.LastRun != nil {
			last, outcome = i.LastRun.Format(time.RFC3339), i.LastOutcome
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", i.Name, i.Kind, i.Schedule, next, last, outcome)
	}
	tw.Flush()
}

// WriteText writes the outcome as the CLI prints a run: one line per target (status, name,
// size, duration, key or error), the report, then the run's outcome, duration and summary.
func (o Outcome) WriteText(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, t := range o.Result.Targets {
		detail := t.Key
		if t.Err != nil {
			detail = t.Err.Error()
		} else if t.Note != "" {
			detail = strings.TrimSpace(detail + "  (" + t.Note + ")")
		}
		status := map[string]string{TargetOK: "OK", TargetSkipped: "SKIP"}[t.Status]
		if status == "" {
			status = "FAIL"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", status, t.Name, HumanBytes(t.Bytes), t.Duration.Round(time.Millisecond), detail)
	}
	tw.Flush()
	if o.Result.Report != "" {
		fmt.Fprint(w, o.Result.Report)
	}
	if o.Run.Outcome != "" {
		fmt.Fprintf(w, "%s: %s in %s", o.Run.Job, o.Run.Outcome, o.Run.FinishedAt.Sub(o.Run.StartedAt).Round(time.Millisecond))
		if o.Result.Summary != "" {
			fmt.Fprintf(w, " (%s)", o.Result.Summary)
		}
		fmt.Fprintln(w)
	}
}

// HumanBytes formats a size in B, KiB, MiB or GiB.
func HumanBytes(n int64) string { return artifact.HumanBytes(n) }
