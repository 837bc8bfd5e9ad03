package membuf

import "testing"

func TestReleaserNeedsEnoughAllocatedSinceLastTime(t *testing.T) {
	var allocated uint64
	frees := 0
	r := &Releaser{min: 100, allocs: func() uint64 { return allocated }, free: func() { frees++; allocated += 3 }}
	allocated = 150 // start-up
	if !r.Release() || frees != 1 {
		t.Fatalf("after start-up: frees = %d, want 1", frees)
	}
	allocated += 60 // a small run
	if r.Release() || frees != 1 {
		t.Fatalf("after 60 bytes: frees = %d, want still 1", frees)
	}
	allocated += 60 // another: 120 since the last release, counted from after the GC's own
	if !r.Release() || frees != 2 {
		t.Fatalf("after 120 bytes: frees = %d, want 2", frees)
	}
	if r.Release() || frees != 2 {
		t.Fatalf("nothing allocated: frees = %d, want still 2", frees)
	}
}
