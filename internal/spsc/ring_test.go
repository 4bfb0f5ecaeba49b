package spsc

import (
	"testing"
	"time"

	"github.com/marketfeed/feedhandler/internal/race"
)

type item struct {
	Seq  uint64
	Line uint8
	Data [40]byte
}

func TestNewRejectsBadCapacity(t *testing.T) {
	for _, c := range []int{-1, 0, 1, 3, 6, 1000} {
		if _, err := New[int](c); err == nil {
			t.Errorf("New(%d): want error", c)
		}
	}
	for _, c := range []int{2, 4, 1024} {
		r, err := New[int](c)
		if err != nil {
			t.Fatalf("New(%d): %v", c, err)
		}
		if r.Cap() != c {
			t.Errorf("Cap = %d, want %d", r.Cap(), c)
		}
	}
}

func TestSingleGoroutineFIFOAndFull(t *testing.T) {
	r, _ := New[int](8)
	for i := range 8 {
		if !r.TryPush(i) {
			t.Fatalf("push %d failed", i)
		}
	}
	if r.TryPush(99) {
		t.Fatal("push into full ring succeeded")
	}
	if w := r.Reserve(3); len(w) != 0 {
		t.Fatalf("Reserve on full ring = %d slots", len(w))
	}
	if st := r.Stats(); st.Full != 2 || st.Len != 8 || st.Pushed != 8 {
		t.Fatalf("stats %+v", st)
	}
	for i := range 5 {
		v, ok := r.TryPop()
		if !ok || v != i {
			t.Fatalf("pop = %d,%v want %d", v, ok, i)
		}
	}
	// 3 left at slots 5,6,7; free space wraps: Reserve gives slots 0..4.
	w := r.Reserve(10)
	if len(w) != 5 {
		t.Fatalf("Reserve(10) = %d slots, want 5", len(w))
	}
	for i := range w {
		w[i] = 100 + i
	}
	r.Commit(len(w))
	// Readable: 5,6,7 contiguous at the end, then 100..104 at the start.
	v := r.Peek(100)
	if len(v) != 3 || v[0] != 5 || v[2] != 7 {
		t.Fatalf("Peek = %v", v)
	}
	r.Release(2)
	v = r.Peek(100)
	if len(v) != 1 || v[0] != 7 {
		t.Fatalf("Peek after Release(2) = %v", v)
	}
	r.Release(1)
	v = r.Peek(2)
	if len(v) != 2 || v[0] != 100 || v[1] != 101 {
		t.Fatalf("Peek(2) = %v", v)
	}
	r.Release(2)
	v = r.Peek(100)
	if len(v) != 3 || v[2] != 104 {
		t.Fatalf("Peek = %v", v)
	}
	r.Release(3)
	if _, ok := r.TryPop(); ok {
		t.Fatal("pop from empty ring succeeded")
	}
	if r.Len() != 0 {
		t.Fatalf("Len = %d", r.Len())
	}
	if hw := r.Stats().HighWater; hw != 8 {
		t.Fatalf("HighWater = %d, want 8", hw)
	}
}

func TestPeekWaitTimeoutAndClose(t *testing.T) {
	r, _ := New[int](4)
	r.SetBackoff(Backoff{Spins: 1, Yields: 1, MinSleep: time.Microsecond, MaxSleep: 10 * time.Microsecond})
	if v := r.PeekWait(4, time.Millisecond); len(v) != 0 {
		t.Fatalf("PeekWait on empty ring = %v", v)
	}
	if r.Closed() {
		t.Fatal("Closed before Close")
	}
	r.TryPush(1)
	r.TryPush(2)
	r.Close()
	v := r.PeekWait(4, 0)
	if len(v) != 2 || v[0] != 1 || v[1] != 2 {
		t.Fatalf("PeekWait after Close = %v", v)
	}
	r.Release(2)
	if v := r.PeekWait(4, 0); len(v) != 0 || !r.Closed() {
		t.Fatalf("closed drained ring: %v closed=%v", v, r.Closed())
	}
}

func TestZeroAllocs(t *testing.T) {
	r, _ := New[item](64)
	var x item
	allocs, exact := race.AllocsPerRun(t, 1000, func() {
		x.Seq++
		if !r.TryPush(x) {
			t.Fatal("push failed")
		}
		w := r.Reserve(4)
		for i := range w {
			w[i].Seq = uint64(i)
		}
		r.Commit(len(w))
		if _, ok := r.TryPop(); !ok {
			t.Fatal("pop failed")
		}
		for {
			v := r.Peek(8)
			if len(v) == 0 {
				break
			}
			r.Release(len(v))
		}
		r.TryPush(x)
		if v := r.PeekWait(1, 0); len(v) != 1 {
			t.Fatal("PeekWait returned nothing")
		}
		r.Release(1)
	})
	if exact && allocs != 0 {
		t.Fatalf("allocs per push/pop round = %v, want 0", allocs)
	}
}

func TestReserveWait(t *testing.T) {
	r, _ := New[int](2)
	r.SetBackoff(Backoff{Spins: 1, Yields: 1, MinSleep: time.Microsecond, MaxSleep: 10 * time.Microsecond})
	w := r.ReserveWait(4, 0)
	if len(w) != 2 {
		t.Fatalf("ReserveWait on empty ring = %d slots", len(w))
	}
	r.Commit(2)
	if w := r.ReserveWait(1, time.Millisecond); len(w) != 0 {
		t.Fatal("ReserveWait on full ring returned slots")
	}
	if st := r.Stats(); st.Full != 1 {
		t.Fatalf("one timed-out wait counted %d full events", st.Full)
	}
	done := make(chan int)
	go func() {
		w := r.ReserveWait(1, 0) // blocks until the consumer releases
		r.Commit(len(w))
		done <- len(w)
	}()
	if v, ok := r.TryPop(); !ok || v != 0 {
		t.Fatalf("pop = %d, %v", v, ok)
	}
	if n := <-done; n != 1 {
		t.Fatalf("ReserveWait after release = %d slots", n)
	}
	go func() { done <- len(r.ReserveWait(1, 0)) }() // full again: only Close ends the wait
	r.Close()
	if n := <-done; n != 0 {
		t.Fatalf("ReserveWait after Close = %d slots", n)
	}
}

// TestDrainedAfterTimeout: PeekWait timing out on an empty ring, then the
// producer committing and closing, leaves a closed ring that is not
// drained: Closed alone would have the consumer stop with an element left.
func TestDrainedAfterTimeout(t *testing.T) {
	r, _ := New[int](4)
	if v := r.PeekWait(1, time.Millisecond); len(v) != 0 {
		t.Fatalf("PeekWait on an empty ring: %v", v)
	}
	if r.Drained() {
		t.Fatal("an open ring reads drained")
	}
	r.TryPush(7)
	r.Close()
	if !r.Closed() || r.Drained() {
		t.Fatalf("closed %v, drained %v with one element left; want closed, not drained", r.Closed(), r.Drained())
	}
	if v, ok := r.TryPop(); !ok || v != 7 {
		t.Fatalf("pop %d %v", v, ok)
	}
	if !r.Drained() {
		t.Fatal("closed and empty, not drained")
	}
}
