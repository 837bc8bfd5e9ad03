package schedule

import (
	"strings"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	ny, _ := time.LoadLocation("America/New_York")
	at := time.Date(2026, 11, 26, 13, 22, 0, 0, time.UTC)
	tests := []struct {
		spec     string
		next     time.Time
		interval time.Duration
	}{
		{"0 3 * * *", time.Date(2026, 11, 27, 3, 0, 0, 0, time.UTC), 24 * time.Hour},
		{"*/15 * * * *", time.Date(2026, 11, 26, 13, 30, 0, 0, time.UTC), 15 * time.Minute},
		{"@hourly", time.Date(2026, 11, 26, 14, 0, 0, 0, time.UTC), time.Hour},
		{"@daily", time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC), 24 * time.Hour},
		{"@weekly", time.Date(2026, 11, 29, 0, 0, 0, 0, time.UTC), 7 * 24 * time.Hour},
		{"@monthly", time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC), 31 * 24 * time.Hour},
		{"@quarterly", time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC), 92 * 24 * time.Hour},
		{"@every 6h", at.Add(6 * time.Hour), 6 * time.Hour},
		{"0 4 * * mon-fri", time.Date(2026, 11, 27, 4, 0, 0, 0, time.UTC), 72 * time.Hour},
	}
	for _, tt := range tests {
		s, err := Parse(tt.spec)
		if err != nil {
			t.Fatalf("%s: %v", tt.spec, err)
		}
		if got := s.Next(at); !got.Equal(tt.next) {
			t.Errorf("%s: next = %v, want %v", tt.spec, got, tt.next)
		}
		if got := s.Interval(at); got != tt.interval {
			t.Errorf("%s: interval = %v, want %v", tt.spec, got, tt.interval)
		}
	}
	s, _ := Parse("0 3 * * *")
	if got := s.Next(at.In(ny)); !got.Equal(time.Date(2026, 11, 27, 3, 0, 0, 0, ny)) {
		t.Errorf("time zone: next = %v", got)
	}
}

func TestParseErrors(t *testing.T) {
	for spec, want := range map[string]string{
		"61 * * * *":   `invalid cron expression "61 * * * *": minute out of range`,
		"0 0 32 * *":   "day of month out of range",
		"0 0 * 13 *":   "month out of range",
		"0 0 * * 8":    "day of week out of range",
		"5-1 * * * *":  "minute range 5-1 is backwards",
		"*/0 * * * *":  `minute step "0" is not a positive number`,
		"* * * *":      "expected 5 fields",
		"@every 10ms":  "interval must be at least 1s",
		"@sometimes":   `unknown schedule "@sometimes"`,
		"":             "empty schedule",
		"0 0 * * blah": `day of week "blah" is not a number`,
	} {
		_, err := Parse(spec)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Parse(%q) = %v, want an error containing %q", spec, err, want)
		}
	}
}

func TestMissed(t *testing.T) {
	s, _ := Parse("0 3 * * *")
	last := time.Date(2026, 11, 25, 3, 0, 5, 0, time.UTC)
	if s.Missed(last, time.Date(2026, 11, 26, 2, 59, 0, 0, time.UTC)) {
		t.Error("missed before the next firing")
	}
	if !s.Missed(last, time.Date(2026, 11, 26, 3, 0, 1, 0, time.UTC)) {
		t.Error("not missed after the next firing passed")
	}
	if s.Missed(time.Time{}, time.Now()) {
		t.Error("never-run job counted as missed")
	}
}

func TestParseDuration(t *testing.T) {
	for in, want := range map[string]time.Duration{"90s": 90 * time.Second, "7d": 7 * 24 * time.Hour, "2w": 14 * 24 * time.Hour, "1h30m": 90 * time.Minute} {
		if got, err := ParseDuration(in); err != nil || got != want {
			t.Errorf("ParseDuration(%q) = %v, %v", in, got, err)
		}
	}
	for _, in := range []string{"", "soon", "-3d", "5 minutes"} {
		if _, err := ParseDuration(in); err == nil {
			t.Errorf("ParseDuration(%q) succeeded", in)
		}
	}
}

// TestSundaySeven: day-of-week 7 is Sunday, as in Vixie cron, alone, in ranges and in lists.
func TestSundaySeven(t *testing.T) {
	at := time.Date(2026, 11, 26, 13, 22, 0, 0, time.UTC) // a Thursday
	sunday := time.Date(2026, 11, 29, 4, 0, 0, 0, time.UTC)
	for spec, want := range map[string]time.Time{
		"0 4 * * 7":     sunday,
		"0 4 * * 5-7":   time.Date(2026, 11, 27, 4, 0, 0, 0, time.UTC),
		"0 4 * * 6-7":   time.Date(2026, 11, 28, 4, 0, 0, 0, time.UTC),
		"0 4 * * 1,7":   sunday,
		"0 4 * * 0":     sunday,
		"0 4 * * sun":   sunday,
		"0 4 * * 7/7":   sunday,
		"0 4 * * mon-7": time.Date(2026, 11, 27, 4, 0, 0, 0, time.UTC),
	} {
		s, err := Parse(spec)
		if err != nil {
			t.Fatalf("%s: %v", spec, err)
		}
		if got := s.Next(at); !got.Equal(want) {
			t.Errorf("%s: next = %v, want %v", spec, got, want)
		}
		if s.Cron != spec {
			t.Errorf("%s: Cron = %q, want the expression as written", spec, s.Cron)
		}
	}
}

// TestNeverFires: a date that does not exist is refused at parse time; February 29 is not.
func TestNeverFires(t *testing.T) {
	for _, spec := range []string{"0 0 30 2 *", "0 0 31 4 *", "0 0 31 2,4,6,9,11 *"} {
		if _, err := Parse(spec); err == nil || !strings.Contains(err.Error(), "it never fires") {
			t.Errorf("Parse(%q) = %v, want never fires", spec, err)
		}
	}
	if _, err := Parse("0 0 29 2 *"); err != nil {
		t.Errorf("February 29: %v", err)
	}
}

// TestParseDurationRange: durations past 36500d are refused, never wrapped (213504d wraps
// int64 nanoseconds to ~25 minutes).
func TestParseDurationRange(t *testing.T) {
	for _, in := range []string{"213504d", "36501d", "5215w", "99999999999999999999d", "876001h", "2562047h"} {
		if d, err := ParseDuration(in); err == nil || !strings.Contains(err.Error(), "longer than the limit of 36500d") {
			t.Errorf("ParseDuration(%q) = %v, %v; want the limit error", in, d, err)
		}
	}
	if d, err := ParseDuration("36500d"); err != nil || d != MaxDuration {
		t.Errorf("36500d = %v, %v", d, err)
	}
	if _, err := Parse("@every 213504d"); err == nil || !strings.Contains(err.Error(), "longer than the limit") {
		t.Errorf("@every 213504d: %v", err)
	}
}
