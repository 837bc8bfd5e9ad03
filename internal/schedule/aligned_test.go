package schedule

import (
	"testing"
	"time"
)

func TestUntilAlignedLandsOnTheNextMultiple(t *testing.T) {
	base := time.Date(2026, 12, 1, 5, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		now   time.Time
		every time.Duration
		want  time.Duration
	}{
		{base, time.Minute, time.Minute}, // on a boundary: a whole period
		{base.Add(time.Nanosecond), time.Minute, time.Minute - time.Nanosecond},
		{base.Add(59 * time.Second), time.Minute, time.Second},
		{base.Add(1500 * time.Millisecond), 2 * time.Second, 500 * time.Millisecond},
		{base.Add(7 * time.Second), 0, 0},
	} {
		if got := UntilAligned(c.now, c.every); got != c.want {
			t.Errorf("UntilAligned(%s, %s) = %s, want %s", c.now.Format(time.RFC3339Nano), c.every, got, c.want)
		}
	}
	// Two loops of a minute started at different moments wake on the same instants, as does one
	// of 30 s on every other round.
	a := base.Add(3 * time.Second)
	b := base.Add(41*time.Second + 7*time.Millisecond)
	if a.Add(UntilAligned(a, time.Minute)) != b.Add(UntilAligned(b, time.Minute)) {
		t.Fatal("minute loops started at different moments do not share their next wake-up")
	}
	c := base.Add(31 * time.Second)
	next := c.Add(UntilAligned(c, 30*time.Second))
	if next != a.Add(UntilAligned(a, time.Minute)) {
		t.Fatalf("30 s loop wakes at %s, the minute loop at %s", next, a.Add(UntilAligned(a, time.Minute)))
	}
}
