// Package schedule parses opsd's schedule expressions: 5-field cron, the descriptors @hourly,
// @daily (@midnight), @weekly, @monthly, @quarterly, @yearly (@annually) and @every <duration>.
// Config validation and the scheduler share it, so a schedule that validates is one that runs.
package schedule

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
)

// Schedule is a parsed schedule expression.
type Schedule struct {
	// Spec is the expression as written.
	Spec string
	// Cron is the 5-field cron expression the descriptor stands for; empty for @every.
	Cron string
	// Every is the fixed interval of an @every schedule; zero for cron schedules.
	Every time.Duration

	sched cron.Schedule
}

var descriptors = map[string]string{
	"@yearly":    "0 0 1 1 *",
	"@annually":  "0 0 1 1 *",
	"@quarterly": "0 0 1 1,4,7,10 *",
	"@monthly":   "0 0 1 * *",
	"@weekly":    "0 0 * * 0",
	"@daily":     "0 0 * * *",
	"@midnight":  "0 0 * * *",
	"@hourly":    "0 * * * *",
}

var fields = []struct {
	name     string
	min, max int
	names    map[string]int
}{
	{name: "minute", min: 0, max: 59},
	{name: "hour", min: 0, max: 23},
	{name: "day of month", min: 1, max: 31},
	{name: "month", min: 1, max: 12, names: map[string]int{"jan": 1, "feb": 2, "mar": 3, "apr": 4, "may": 5, "jun": 6, "jul": 7, "aug": 8, "sep": 9, "oct": 10, "nov": 11, "dec": 12}},
	{name: "day of week", min: 0, max: 7, names: map[string]int{"sun": 0, "mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6}},
}

// Parse parses a schedule expression. Errors say which field is wrong and why, in words an
// operator can act on (`minute out of range`).
func Parse(spec string) (Schedule, error) {
	s := strings.TrimSpace(spec)
	if s == "" {
		return Schedule{}, fmt.Errorf("empty schedule")
	}
	if strings.HasPrefix(s, "@every") {
		rest := strings.TrimSpace(strings.TrimPrefix(s, "@every"))
		d, err := ParseDuration(rest)
		if err != nil {
			return Schedule{}, fmt.Errorf("invalid schedule %q: %w", spec, err)
		}
		if d < time.Second {
			return Schedule{}, fmt.Errorf("invalid schedule %q: interval must be at least 1s", spec)
		}
		return Schedule{Spec: spec, Every: d, sched: cron.ConstantDelaySchedule{Delay: d}}, nil
	}
	expr := s
	if strings.HasPrefix(s, "@") {
		e, ok := descriptors[strings.ToLower(s)]
		if !ok {
			return Schedule{}, fmt.Errorf("unknown schedule %q (use 5-field cron, @hourly, @daily, @weekly, @monthly, @quarterly, @yearly or @every <duration>)", spec)
		}
		expr = e
	}
	if err := checkFields(expr); err != nil {
		return Schedule{}, fmt.Errorf("invalid cron expression %q: %w", spec, err)
	}
	sched, err := cron.ParseStandard(sundaySeven(expr))
	if err != nil {
		return Schedule{}, fmt.Errorf("invalid cron expression %q: %w", spec, err)
	}
	// A day that does not exist (February 30, April 31) never fires: refuse it here, so
	// `opsd config check` names the line instead of the scheduler silently never running it.
	if sched.Next(neverFiresFrom).IsZero() {
		return Schedule{}, fmt.Errorf("invalid cron expression %q: it never fires (no such date, e.g. February 30 or April 31)", spec)
	}
	return Schedule{Spec: spec, Cron: expr, sched: sched}, nil
}

// neverFiresFrom is where the never-fires check starts: the library searches five years, which
// holds a February 29 from here.
var neverFiresFrom = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

// sundaySeven rewrites day-of-week 7 (Sunday, as Vixie cron accepts) to 0, which the cron
// library requires. Items without a 7 are kept as written.
func sundaySeven(expr string) string {
	parts := strings.Fields(expr)
	if len(parts) != 5 {
		return expr
	}
	items := strings.Split(parts[4], ",")
	changed := false
	for i, item := range items {
		rng, stepS, hasStep := strings.Cut(item, "/")
		if rng == "*" || rng == "?" {
			continue
		}
		lo, hi, isRange := strings.Cut(rng, "-")
		a, b := dowNumber(lo), dowNumber(lo)
		if isRange {
			b = dowNumber(hi)
		}
		if !isRange && hasStep {
			b = 7 // "n/step" runs from n to the end of the range, 7 included
		}
		if b != 7 || a < 0 {
			continue
		}
		step := 1
		if hasStep {
			step, _ = strconv.Atoi(stepS)
		}
		var vals []string
		for v := a; v <= b && step > 0; v += step {
			vals = append(vals, strconv.Itoa(v%7))
		}
		items[i] = strings.Join(vals, ",")
		changed = true
	}
	if !changed {
		return expr
	}
	parts[4] = strings.Join(items, ",")
	return strings.Join(parts, " ")
}

func dowNumber(s string) int {
	if n, err := strconv.Atoi(s); err == nil {
		return n
	}
	if n, ok := fields[4].names[strings.ToLower(s)]; ok {
		return n
	}
	return -1
}

func checkFields(expr string) error {
	parts := strings.Fields(expr)
	if len(parts) != 5 {
		return fmt.Errorf("expected 5 fields (minute hour day-of-month month day-of-week), got %d", len(parts))
	}
	for i, p := range parts {
		f := fields[i]
		for _, item := range strings.Split(p, ",") {
			rng, step, hasStep := strings.Cut(item, "/")
			if hasStep {
				n, err := strconv.Atoi(step)
				if err != nil || n <= 0 {
					return fmt.Errorf("%s step %q is not a positive number", f.name, step)
				}
			}
			if rng == "*" || rng == "?" {
				continue
			}
			lo, hi, isRange := strings.Cut(rng, "-")
			vals := []string{lo}
			if isRange {
				vals = append(vals, hi)
			}
			var nums []int
			for _, v := range vals {
				n, err := strconv.Atoi(v)
				if err != nil {
					named, ok := f.names[strings.ToLower(v)]
					if !ok {
						return fmt.Errorf("%s %q is not a number", f.name, v)
					}
					n = named
				}
				if n < f.min || n > f.max {
					return fmt.Errorf("%s out of range", f.name)
				}
				nums = append(nums, n)
			}
			if isRange && nums[0] > nums[1] {
				return fmt.Errorf("%s range %s is backwards", f.name, rng)
			}
		}
	}
	return nil
}

// Next returns the first scheduled time strictly after t, in t's location.
func (s Schedule) Next(t time.Time) time.Time { return s.sched.Next(t) }

// Interval is the longest expected time between two runs: the fixed interval of @every, or the
// largest gap among the next eight cron firings after t (a weekday schedule's is the weekend).
// Alert rules use it (`time() - last_success > k * interval`), so it must not be too short.
func (s Schedule) Interval(t time.Time) time.Duration {
	if s.Every > 0 {
		return s.Every
	}
	var longest time.Duration
	a := s.sched.Next(t)
	for i := 0; i < 8 && !a.IsZero(); i++ {
		b := s.sched.Next(a)
		if b.IsZero() {
			break
		}
		longest = max(longest, b.Sub(a))
		a = b
	}
	return longest
}

// Missed reports whether a firing fell strictly between last and now: the daemon was down (or
// the job was not running) over a scheduled time.
func (s Schedule) Missed(last, now time.Time) bool {
	if last.IsZero() {
		return false
	}
	next := s.sched.Next(last)
	return !next.IsZero() && next.Before(now)
}

// MaxDuration is the longest duration accepted: 100 years (36500d). Longer ones would be
// meaningless and, past ~292 years, wrap int64 nanoseconds.
const MaxDuration = 36500 * 24 * time.Hour

// ParseDuration parses a Go duration and also accepts a whole number of days ("7d") and weeks
// ("2w"), which retention settings use. Durations longer than MaxDuration are refused, never
// wrapped.
func ParseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, fmt.Errorf("empty duration")
	}
	tooLong := fmt.Errorf("duration %q is longer than the limit of 36500d (100 years)", s)
	for suffix, unit := range map[string]time.Duration{"d": 24 * time.Hour, "w": 7 * 24 * time.Hour} {
		if n, ok := strings.CutSuffix(s, suffix); ok {
			v, err := strconv.ParseInt(n, 10, 64)
			if errors.Is(err, strconv.ErrRange) || err == nil && v > int64(MaxDuration/unit) {
				return 0, tooLong
			}
			if err != nil || v < 0 {
				return 0, fmt.Errorf("invalid duration %q", s)
			}
			return time.Duration(v) * unit, nil
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		if strings.Contains(err.Error(), "overflow") {
			return 0, tooLong
		}
		return 0, fmt.Errorf("invalid duration %q (use e.g. 90s, 30m, 6h, 7d)", s)
	}
	if d > MaxDuration || d < -MaxDuration {
		return 0, tooLong
	}
	return d, nil
}

// UntilAligned returns how long after now the next multiple of every (counted from the Unix
// epoch) comes: in (0, every]. Periodic work that waits this long between its rounds wakes on the
// same instants as any other work doing the same with a period that divides its own (the alert
// interval and the config file's fallback look, both a minute by default), so an idle process is
// woken once for both instead of once each.
func UntilAligned(now time.Time, every time.Duration) time.Duration {
	if every <= 0 {
		return every
	}
	return every - time.Duration(now.UnixNano()%int64(every))
}
