package checks

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/wopr-network/opsd/internal/layout"
	"github.com/wopr-network/opsd/internal/storage"
	"github.com/wopr-network/opsd/jobs"
)

// dbDrillReport is what the database drills (sqlite_drill, postgres_drill) share: the JSON
// report and its text form, the recovery time objectives and the verdict.
type dbDrillReport struct {
	DrillReport
	text   strings.Builder
	breach bool // an objective was missed
}

// newDBDrillReport starts the report of a drill that started at started, with the objective of
// the whole drill.
func newDBDrillReport(drill, node string, started time.Time, rtoTarget time.Duration) *dbDrillReport {
	return &dbDrillReport{DrillReport: DrillReport{Drill: drill, Node: node, StartedAt: started.UTC(),
		RTOTargetSeconds: rtoTarget.Seconds(), Notes: []string{}}}
}

// writeResults writes the text report: the title, set, prefix and notes, one line per database (passText
// after a PASS), a warning for every database slower than perDB (0: no per-database objective)
// and for a drill slower than total, then the counts and the drill's RTO.
func (r *dbDrillReport) writeResults(title, prefix string, detail []DrillTarget, passText string, perDB, total, rto time.Duration) {
	fmt.Fprintf(&r.text, "%s: set %s (%s)\n", title, r.Set, prefix)
	for _, n := range r.Notes {
		fmt.Fprintf(&r.text, "NOTE  %s\n", n)
	}
	for i, t := range detail {
		switch t.Status {
		case "PASS":
			r.PassedCount++
			fmt.Fprintf(&r.text, "PASS  %s — %s\n", t.Name, passText)
		case "FAIL":
			r.FailedCount++
			fmt.Fprintf(&r.text, "FAIL  %s — %s\n", t.Name, t.Reason)
		default:
			r.SkippedCount++
			fmt.Fprintf(&r.text, "SKIP  %s\n", t.Name)
		}
		if took := time.Duration(t.Seconds * float64(time.Second)); perDB > 0 && t.Status != "SKIP" && took > perDB {
			r.breach = true
			detail[i].Warnings = append(detail[i].Warnings, fmt.Sprintf("restore took %s, objective %s", seconds(took), seconds(perDB)))
		}
		for _, w := range detail[i].Warnings {
			fmt.Fprintf(&r.text, "WARN  %s — %s\n", t.Name, w)
		}
	}
	if rto > total {
		r.breach = true
		w := fmt.Sprintf("RTO %s missed the objective of %s", seconds(rto), seconds(total))
		r.Notes = append(r.Notes, w)
		fmt.Fprintf(&r.text, "WARN  %s\n", w)
	}
	fmt.Fprintf(&r.text, "Result: %d passed, %d failed, %d skipped\n", r.PassedCount, r.FailedCount, r.SkippedCount)
	fmt.Fprintf(&r.text, "RTO (drill time): %s\n", seconds(rto))
}

// result decides the verdict (no database failed and, with failOnBreach, every objective met)
// and returns the drill's Result with the text and JSON reports and its drill stats.
func (r *dbDrillReport) result(targets []jobs.TargetResult, detail []DrillTarget, rto, rtoTarget time.Duration, failOnBreach bool) jobs.Result {
	r.Passed = r.FailedCount == 0 && !(r.breach && failOnBreach)
	r.RTOSeconds, r.Databases = rto.Seconds(), detail
	body, _ := json.MarshalIndent(r.DrillReport, "", "  ")
	return jobs.Result{Targets: targets, Report: r.text.String(), ReportJSON: body,
		Drill: &jobs.DrillStats{RTO: rto, RTOTarget: rtoTarget, Passed: r.Passed}}
}

// missedObjective is the error of a drill that passed but missed an objective it must meet.
func (r *dbDrillReport) missedObjective(failOnBreach bool) error {
	if r.breach && failOnBreach {
		return fmt.Errorf("drill %s: recovery time objective missed", r.Drill)
	}
	return nil
}

// uploadReport uploads res's JSON report to keyTemplate ({date}: the date of now; empty: not
// uploaded), adds the key to res's artifacts and returns runErr joined with an upload error.
func uploadReport(ctx context.Context, store storage.Store, keyTemplate string, now time.Time, res *jobs.Result, runErr error) error {
	if keyTemplate == "" {
		return runErr
	}
	key := strings.ReplaceAll(keyTemplate, "{date}", layout.Date(now))
	body := res.ReportJSON
	if _, err := store.Put(ctx, key, bytes.NewReader(body), storage.PutOptions{Size: int64(len(body)), ContentType: "application/json"}); err != nil {
		return errors.Join(runErr, fmt.Errorf("upload drill report: %w", err))
	}
	res.Artifacts = append(res.Artifacts, key)
	return runErr
}
