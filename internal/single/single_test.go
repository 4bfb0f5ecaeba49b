package single

import (
	"sync"
	"sync/atomic"
	"testing"

	"github.com/marketfeed/feedhandler/internal/race"
)

func TestAddStore(t *testing.T) {
	var c atomic.Uint64
	Add(&c, 3)
	Add(&c, 1<<40)
	if got := c.Load(); got != 3+1<<40 {
		t.Fatalf("after Add 3 and 2^40: %d", got)
	}
	Store(&c, 7)
	Add(&c, 1)
	if got := c.Load(); got != 8 {
		t.Fatalf("after Store 7 and Add 1: %d", got)
	}
	// The word next to the counter is not touched.
	var two [2]atomic.Uint64
	Add(&two[0], 5)
	Store(&two[0], ^uint64(0))
	if two[1].Load() != 0 || two[0].Load() != ^uint64(0) {
		t.Fatalf("counters %d, %d; want 2^64-1, 0", two[0].Load(), two[1].Load())
	}
}

// TestReaderWhileWriting reads a counter while its writer adds to it and
// stores it: every value read is one written, in the order written. Under
// the race detector it also proves that Add and Store are atomic there (a
// plain store against the reader's Load is reported as a race).
func TestReaderWhileWriting(t *testing.T) {
	const n = 200_000
	var c atomic.Uint64
	var done atomic.Bool
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer done.Store(true)
		for i := uint64(1); i <= n; i++ {
			if i%1000 == 0 {
				Store(&c, i<<32|i) // both halves: a torn value shows
				continue
			}
			Add(&c, 1<<32|1)
		}
	}()
	var last uint64
	for reads := 0; !done.Load() || reads == 0; reads++ {
		v := c.Load()
		if v>>32 != v&(1<<32-1) {
			t.Fatalf("read %#x: halves differ (a torn value)", v)
		}
		if v < last || v>>32 > n {
			t.Fatalf("read %d after %d (at most %d)", v>>32, last>>32, n)
		}
		last = v
	}
	wg.Wait()
	if got := c.Load(); got != n<<32|n {
		t.Fatalf("final %d, want %d", got>>32, n)
	}
}

func TestAllocs(t *testing.T) {
	var c atomic.Uint64
	if a, exact := race.AllocsPerRun(t, 100, func() { Add(&c, 1); Store(&c, 2) }); exact && a != 0 {
		t.Fatalf("%v allocations", a)
	}
}

// BenchmarkAdd and BenchmarkAtomicAdd compare a writer's two adds (as a
// histogram's bucket and sum) done here with atomic.Uint64's.
func BenchmarkAdd(b *testing.B) {
	var c [64]atomic.Uint64
	var sum atomic.Uint64
	i := 0
	for b.Loop() {
		Add(&c[i&63], 1)
		Add(&sum, uint64(i))
		i++
	}
}

func BenchmarkAtomicAdd(b *testing.B) {
	var c [64]atomic.Uint64
	var sum atomic.Uint64
	i := 0
	for b.Loop() {
		c[i&63].Add(1)
		sum.Add(uint64(i))
		i++
	}
}
