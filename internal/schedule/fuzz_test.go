package schedule

import (
	"testing"
	"time"
)

// FuzzParse: no expression panics the parser; one it accepts fires (Next is never zero) at a
// time after the one asked, and its interval is positive. Seeds: testdata/fuzz/FuzzParse.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"0 3 * * *", "*/15 * * * *", "@every 6h", "0 4 * * 5-7", "0 0 30 2 *", "@daily", "1-5/2 * * * 7/7"} {
		f.Add(s)
	}
	at := time.Date(2026, 11, 30, 16, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, spec string) {
		s, err := Parse(spec)
		if err != nil {
			return
		}
		next := s.Next(at)
		if next.IsZero() || !next.After(at) {
			t.Fatalf("%q accepted but next after %v is %v", spec, at, next)
		}
		if s.Interval(at) <= 0 {
			t.Fatalf("%q accepted with interval %v", spec, s.Interval(at))
		}
	})
}
