package spsc

import (
	"math"
	"testing"
)

// TestIndexWraparound: the indices are free-running uint64s; across their
// wrap past 2^64-1 the ring stays a FIFO and its occupancy (Len, Stats)
// stays right. The ring starts with every index 3 short of the wrap, as
// if 2^64-3 elements had gone through.
func TestIndexWraparound(t *testing.T) {
	r, err := New[int](4)
	if err != nil {
		t.Fatal(err)
	}
	const start = math.MaxUint64 - 2
	r.tail.Store(start)
	r.head.Store(start)
	r.headCache, r.tailCache = start, start
	next, want := 0, 0
	for round := range 6 {
		for r.TryPush(next) {
			next++
		}
		if n := r.Len(); n != 4 {
			t.Fatalf("round %d, tail %d head %d: Len %d of a full ring of 4", round, r.tail.Load(), r.head.Load(), n)
		}
		if st := r.Stats(); st.Len != 4 || st.HighWater > 4 {
			t.Fatalf("round %d: stats %+v", round, st)
		}
		for range 3 {
			v, ok := r.TryPop()
			if !ok || v != want {
				t.Fatalf("round %d: pop %d, %v; want %d", round, v, ok, want)
			}
			want++
		}
		if n := r.Len(); n != 1 {
			t.Fatalf("round %d, tail %d head %d: Len %d, want 1", round, r.tail.Load(), r.head.Load(), n)
		}
	}
	if r.tail.Load() >= start {
		t.Fatal("the tail did not wrap")
	}
}
