package alerts

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/wopr-network/opsd/internal/state"
)

// openReadOnly opens a SQLite database read-only (query_only), never creating it.
func openReadOnly(path string) (*sql.DB, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	q := url.Values{}
	q.Set("mode", "ro")
	q.Add("_pragma", "query_only(1)")
	q.Add("_pragma", "busy_timeout(5000)")
	return sql.Open("sqlite", "file:"+path+"?"+q.Encode())
}

// SQLRule fires when a number computed by read-only queries crosses a threshold. With Denom set
// the value is Query / Denom, and the rule never fires while the denominator is 0.
type SQLRule struct {
	RuleName  string
	DB        string
	Query     string // one number; :now is the evaluation time in ms
	Denom     string
	Op        string
	Threshold float64
	// Describe formats the message; nil uses a generic one.
	Describe func(value, num, den float64) string
}

// Name returns the rule's name.
func (r *SQLRule) Name() string { return r.RuleName }

func queryNumber(ctx context.Context, db *sql.DB, q string, now time.Time) (float64, error) {
	var v sql.NullFloat64
	if err := db.QueryRowContext(ctx, q, sql.Named("now", now.UnixMilli())).Scan(&v); err != nil {
		return 0, err
	}
	return v.Float64, nil
}

// Evaluate runs the queries.
func (r *SQLRule) Evaluate(ctx context.Context, now time.Time) (Eval, error) {
	db, err := openNumbers(ctx, r.DB)
	if err != nil {
		return Eval{}, err
	}
	defer db.close()
	num, err := db.number(ctx, r.Query, now)
	if err != nil {
		return Eval{}, fmt.Errorf("%s: query: %w", r.RuleName, err)
	}
	v, den := num, 0.0
	if r.Denom != "" {
		if den, err = db.number(ctx, r.Denom, now); err != nil {
			return Eval{}, fmt.Errorf("%s: query: %w", r.RuleName, err)
		}
		if den == 0 {
			return Eval{Value: 0, Threshold: r.Threshold, Message: "no requests in the window"}, nil
		}
		v = num / den
	}
	ev := Eval{Value: v, Threshold: r.Threshold, Firing: compare(r.Op, v, r.Threshold)}
	if r.Describe != nil {
		ev.Message = r.Describe(v, num, den)
	} else {
		ev.Message = fmt.Sprintf("%s is %g (threshold %s %g)", r.RuleName, v, r.Op, r.Threshold)
	}
	return ev, nil
}

const (
	window5  = `minute_key > :now - 300000`
	window1  = `minute_key > :now - 60000`
	notCF    = `capability != '__credit_failures__'`
	sumReqs  = `SELECT COALESCE(SUM(requests), 0) FROM gateway_metrics WHERE `
	sumErrs  = `SELECT COALESCE(SUM(errors), 0) FROM gateway_metrics WHERE `
	sumCredF = `SELECT COALESCE(SUM(credit_failures), 0) FROM gateway_metrics WHERE capability = '__credit_failures__' AND ` + window5
)

// Presets are the platform's gateway_metrics rules (REFERENCE.md), by name.
var Presets = []string{"gateway-error-rate", "credit-deduction-spike", "sev1-billing-pipeline", "sev1-payment-processing", "sev1-inference-gateway-down"}

// Preset returns a platform rule reading gateway_metrics in db (a SQLite file, or the platform's
// PostgreSQL database when db is a postgresql:// URL).
func Preset(name, db string) (Rule, error) {
	errorRate := func(threshold float64) Rule {
		return &SQLRule{RuleName: name, DB: db, Query: sumErrs + notCF + " AND " + window5, Denom: sumReqs + notCF + " AND " + window5, Op: ">", Threshold: threshold,
			Describe: func(v, num, den float64) string {
				return fmt.Sprintf("gateway error rate %s over the last 5 minutes (%.0f errors in %.0f requests; threshold %s)", pct(v), num, den, pct(threshold))
			}}
	}
	creditFailures := func(threshold float64) Rule {
		return &SQLRule{RuleName: name, DB: db, Query: sumCredF, Op: ">", Threshold: threshold,
			Describe: func(v, _, _ float64) string {
				return fmt.Sprintf("%.0f credit deduction failures in the last 5 minutes (threshold %.0f)", v, threshold)
			}}
	}
	switch name {
	case "gateway-error-rate":
		return errorRate(0.05), nil
	case "sev1-payment-processing":
		return errorRate(0.1), nil
	case "credit-deduction-spike":
		return creditFailures(10), nil
	case "sev1-billing-pipeline":
		return creditFailures(20), nil
	case "sev1-inference-gateway-down":
		return &gatewayDown{db: db}, nil
	}
	return nil, fmt.Errorf("unknown preset %q (one of %s)", name, strings.Join(Presets, ", "))
}

// gatewayDown fires when there were requests in the last 5 minutes but none in the last minute.
type gatewayDown struct{ db string }

func (g *gatewayDown) Name() string { return "sev1-inference-gateway-down" }

func (g *gatewayDown) Evaluate(ctx context.Context, now time.Time) (Eval, error) {
	db, err := openNumbers(ctx, g.db)
	if err != nil {
		return Eval{}, err
	}
	defer db.close()
	r5, err := db.number(ctx, sumReqs+notCF+" AND "+window5, now)
	if err != nil {
		return Eval{}, err
	}
	r1, err := db.number(ctx, sumReqs+notCF+" AND "+window1, now)
	if err != nil {
		return Eval{}, err
	}
	ev := Eval{Value: r1, Threshold: 0, Firing: r5 > 0 && r1 == 0}
	ev.Message = fmt.Sprintf("%.0f requests in the last 5 minutes, %.0f in the last minute", r5, r1)
	if ev.Firing {
		ev.Message = fmt.Sprintf("the inference gateway served no request in the last minute (%.0f in the last 5 minutes)", r5)
	}
	return ev, nil
}

// HTTPJSONRule reads a number at a path in a JSON document (e.g. "gateway.last5m.errorRate",
// "items.0.value").
type HTTPJSONRule struct {
	RuleName  string
	URL       string
	Token     string
	Path      string
	Op        string
	Threshold float64
	Client    *http.Client
}

// Name returns the rule's name.
func (r *HTTPJSONRule) Name() string { return r.RuleName }

// Evaluate fetches and reads the value.
func (r *HTTPJSONRule) Evaluate(ctx context.Context, now time.Time) (Eval, error) {
	c := r.Client
	if c == nil {
		c = &http.Client{Timeout: 15 * time.Second}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.URL, nil)
	if err != nil {
		return Eval{}, errors.New("invalid URL")
	}
	if r.Token != "" {
		req.Header.Set("Authorization", "Bearer "+r.Token)
	}
	resp, err := c.Do(req)
	if err != nil {
		var ue interface{ Unwrap() error }
		if errors.As(err, &ue) {
			err = ue.Unwrap()
		}
		return Eval{}, fmt.Errorf("%s: request: %w", r.RuleName, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return Eval{}, fmt.Errorf("%s: status %d", r.RuleName, resp.StatusCode)
	}
	var doc any
	if err := json.NewDecoder(io.LimitReader(resp.Body, 4<<20)).Decode(&doc); err != nil {
		return Eval{}, fmt.Errorf("%s: decode: %w", r.RuleName, err)
	}
	v, err := jsonPath(doc, r.Path)
	if err != nil {
		return Eval{}, fmt.Errorf("%s: %w", r.RuleName, err)
	}
	return Eval{Value: v, Threshold: r.Threshold, Firing: compare(r.Op, v, r.Threshold),
		Message: fmt.Sprintf("%s is %g (threshold %s %g)", r.Path, v, r.Op, r.Threshold)}, nil
}

func jsonPath(doc any, path string) (float64, error) {
	cur := doc
	for _, part := range strings.Split(path, ".") {
		switch c := cur.(type) {
		case map[string]any:
			v, ok := c[part]
			if !ok {
				return 0, fmt.Errorf("path %s: no key %q", path, part)
			}
			cur = v
		case []any:
			i, err := strconv.Atoi(part)
			if err != nil || i < 0 || i >= len(c) {
				return 0, fmt.Errorf("path %s: no index %q", path, part)
			}
			cur = c[i]
		default:
			return 0, fmt.Errorf("path %s: %q is not inside an object or list", path, part)
		}
	}
	switch v := cur.(type) {
	case float64:
		return v, nil
	case bool:
		if v {
			return 1, nil
		}
		return 0, nil
	}
	return 0, fmt.Errorf("path %s: not a number", path)
}

// StateRule is a built-in rule over opsd's own state.
type StateRule struct {
	RuleName string
	Kind     string // stale_backups, job_failing, drill_failed, offsite_missing
	State    *state.Store
	// StaleAfter is the stale threshold (stale_backups).
	StaleAfter func() time.Duration
	// Failures is how many failed runs in a row fire (job_failing; default 3).
	Failures int
	// Jobs returns the names of the jobs in the running config: history of removed jobs neither
	// fires nor keeps an alert firing (job_failing, drill_failed, offsite_missing). Nil: every
	// job in the history counts.
	Jobs func() []string
}

// DrillKinds are the job kinds whose reports drill_failed reads.
var DrillKinds = []string{"sqlite_drill", "container_drill", "postgres_drill", "node_drill"}

// configured reports whether job is in the running config.
func (r *StateRule) configured() func(string) bool {
	if r.Jobs == nil {
		return func(string) bool { return true }
	}
	set := map[string]bool{}
	for _, j := range r.Jobs() {
		set[j] = true
	}
	return func(j string) bool { return set[j] }
}

// Name returns the rule's name.
func (r *StateRule) Name() string { return r.RuleName }

// Evaluate reads the state database.
func (r *StateRule) Evaluate(ctx context.Context, now time.Time) (Eval, error) {
	switch r.Kind {
	case "stale_backups":
		stale, err := r.State.ListStale(ctx, now, r.StaleAfter())
		if err != nil {
			return Eval{}, err
		}
		var names []string
		count := map[string]int{}
		for _, s := range stale {
			count[s.ContainerID]++
		}
		for _, s := range stale {
			if count[s.ContainerID] > 1 { // stale for more than one job: say which
				names = append(names, s.ContainerID+" ("+s.Job+")")
			} else {
				names = append(names, s.ContainerID)
			}
		}
		msg := "no stale backups"
		if len(names) > 0 {
			msg = fmt.Sprintf("%d stale backup targets: %s", len(names), strings.Join(names, ", "))
		}
		return Eval{Value: float64(len(names)), Firing: len(names) > 0, Message: msg}, nil
	case "job_failing":
		n := r.Failures
		if n <= 0 {
			n = 3
		}
		jobs, err := r.State.JobNames(ctx)
		if err != nil {
			return Eval{}, err
		}
		worst, failing := 0, []string{}
		known := r.configured()
		for _, j := range jobs {
			if !known(j) {
				continue
			}
			f, err := r.State.ConsecutiveFailures(ctx, j)
			if err != nil {
				return Eval{}, err
			}
			worst = max(worst, f)
			if f >= n {
				failing = append(failing, fmt.Sprintf("%s (%d)", j, f))
			}
		}
		msg := "no job is failing repeatedly"
		if len(failing) > 0 {
			msg = fmt.Sprintf("jobs failing %d or more runs in a row: %s", n, strings.Join(failing, ", "))
		}
		return Eval{Value: float64(worst), Threshold: float64(n), Firing: len(failing) > 0, Message: msg}, nil
	case "drill_failed":
		reps, err := r.State.LatestReportsByJob(ctx, DrillKinds...)
		if err != nil {
			return Eval{}, err
		}
		var bad []string
		known := r.configured()
		seen := false
		for _, rep := range reps {
			if !known(rep.Job) {
				continue
			}
			seen = true
			var body struct {
				Passed           bool    `json:"passed"`
				RTOSeconds       float64 `json:"rtoSeconds"`
				RTOTargetSeconds float64 `json:"rtoTargetSeconds"`
			}
			if err := json.Unmarshal([]byte(rep.Body), &body); err != nil {
				return Eval{}, fmt.Errorf("report %d of %s is unreadable: %w", rep.ID, rep.Job, err)
			}
			switch {
			case !rep.Passed || !body.Passed:
				bad = append(bad, rep.Job+" failed")
			case body.RTOTargetSeconds > 0 && body.RTOSeconds > body.RTOTargetSeconds:
				bad = append(bad, fmt.Sprintf("%s missed its RTO (%.0fs > %.0fs)", rep.Job, body.RTOSeconds, body.RTOTargetSeconds))
			}
		}
		if !seen {
			return Eval{Message: "no drill yet"}, nil // never "passed" without a drill
		}
		msg := "the last drills passed"
		if len(bad) > 0 {
			msg = strings.Join(bad, "; ")
		}
		return Eval{Value: float64(len(bad)), Firing: len(bad) > 0, Message: msg}, nil
	case "offsite_missing":
		reps, err := r.State.LatestReportsByJob(ctx, "offsite_verify")
		if err != nil {
			return Eval{}, err
		}
		known := r.configured()
		var problems int
		var msgs []string
		seen := false
		for _, rep := range reps {
			if !known(rep.Job) {
				continue
			}
			seen = true
			var body struct {
				Problems *[]struct{ Kind, Key string } `json:"problems"`
			}
			if err := json.Unmarshal([]byte(rep.Body), &body); err != nil {
				return Eval{}, fmt.Errorf("report %d of %s is unreadable: %w", rep.ID, rep.Job, err)
			}
			if body.Problems == nil {
				// Not a verification report: "clean" must be said, never assumed.
				return Eval{}, fmt.Errorf("report %d of %s has no problems list", rep.ID, rep.Job)
			}
			if n := len(*body.Problems); n == 0 && !rep.Passed {
				problems++
				msgs = append(msgs, rep.Job+" did not pass")
			} else if n > 0 {
				problems += n
				msgs = append(msgs, fmt.Sprintf("%s found %d problems, first: %s", rep.Job, n, (*body.Problems)[0].Key))
			}
		}
		if !seen {
			return Eval{Message: "no verification yet"}, nil
		}
		msg := "the offsite copy verified clean"
		if problems > 0 {
			msg = "offsite verification: " + strings.Join(msgs, "; ")
		}
		// A verification that failed before it wrote a report (the store unreachable, say) did
		// not verify anything: the reports above are older than it, and the message says so.
		var unverified []string
		for _, rep := range reps {
			if !known(rep.Job) {
				continue
			}
			if last, err := r.State.LastRun(ctx, rep.Job); err == nil && last.ID > rep.RunID && last.FinishedAt != nil && last.Outcome != state.OutcomeSuccess {
				unverified = append(unverified, fmt.Sprintf("%s's newest run (%s) did not verify: %s", rep.Job, last.StartedAt.UTC().Format(time.RFC3339), last.Outcome))
			}
		}
		if len(unverified) > 0 {
			msg = fmt.Sprintf("as of the last reports, %s; but %s", msg, strings.Join(unverified, "; "))
		}
		return Eval{Value: float64(problems), Firing: problems > 0, Message: msg}, nil
	}
	return Eval{}, fmt.Errorf("unknown built-in rule %q", r.Kind)
}

// SystemRule watches the host: cpu (load1 / cores), memory (used fraction), disk (used fraction
// of Path). REFERENCE.md thresholds: 0.9, 0.9, 0.85.
type SystemRule struct {
	RuleName  string
	Kind      string // cpu, memory, disk
	Path      string
	Threshold float64
	// ProcDir is /proc (tests point it elsewhere).
	ProcDir string
}

// Name returns the rule's name.
func (r *SystemRule) Name() string { return r.RuleName }

// Evaluate reads the host's figures.
func (r *SystemRule) Evaluate(ctx context.Context, now time.Time) (Eval, error) {
	proc := r.ProcDir
	if proc == "" {
		proc = "/proc"
	}
	var v float64
	var what string
	switch r.Kind {
	case "cpu":
		b, err := readSmall(proc+"/loadavg", 4096)
		if err != nil {
			return Eval{}, err
		}
		load, err := strconv.ParseFloat(strings.Fields(string(b))[0], 64)
		if err != nil {
			return Eval{}, err
		}
		v, what = load/float64(runtime.NumCPU()), fmt.Sprintf("load %.2f on %d cores", load, runtime.NumCPU())
	case "memory":
		b, err := readSmall(proc+"/meminfo", 64<<10)
		if err != nil {
			return Eval{}, err
		}
		vals := map[string]float64{}
		for _, line := range strings.Split(string(b), "\n") {
			f := strings.Fields(line)
			if len(f) >= 2 {
				n, _ := strconv.ParseFloat(f[1], 64)
				vals[strings.TrimSuffix(f[0], ":")] = n
			}
		}
		if vals["MemTotal"] == 0 {
			return Eval{}, errors.New("meminfo: no MemTotal")
		}
		v, what = 1-vals["MemAvailable"]/vals["MemTotal"], "memory used"
	case "disk":
		var st syscall.Statfs_t
		if err := syscall.Statfs(r.Path, &st); err != nil {
			return Eval{}, fmt.Errorf("statfs %s: %w", r.Path, err)
		}
		total := float64(st.Blocks) * float64(st.Bsize)
		if total == 0 {
			return Eval{}, fmt.Errorf("statfs %s: no size", r.Path)
		}
		v, what = 1-float64(st.Bavail)*float64(st.Bsize)/total, "disk used on "+r.Path
	default:
		return Eval{}, fmt.Errorf("unknown system rule %q", r.Kind)
	}
	return Eval{Value: v, Threshold: r.Threshold, Firing: v > r.Threshold, Message: fmt.Sprintf("%s: %s (threshold %s)", what, pct(v), pct(r.Threshold))}, nil
}

// readSmall reads at most limit bytes of a small file (a /proc file, the WAL index header) with
// plain system calls: os.Open registers a /proc file with the network poller, whose thread is
// then woken (and the file unregistered) for a read that never blocks, which costs an idle
// process more than the read itself.
func readSmall(path string, limit int) ([]byte, error) {
	fd, err := syscall.Open(path, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	defer syscall.Close(fd)
	buf := make([]byte, 0, min(limit, 4096))
	for len(buf) < limit {
		if len(buf) == cap(buf) {
			buf = slices.Grow(buf, min(cap(buf), limit-len(buf)))
		}
		n, err := syscall.Read(fd, buf[len(buf):min(cap(buf), limit)])
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return nil, &os.PathError{Op: "read", Path: path, Err: err}
		}
		if n == 0 {
			break
		}
		buf = buf[:len(buf)+n]
	}
	return buf, nil
}
