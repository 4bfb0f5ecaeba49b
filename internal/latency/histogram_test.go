package latency

import (
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"

	"github.com/marketfeed/feedhandler/internal/race"
)

func TestBucketIndexBounds(t *testing.T) {
	prev := -1
	check := func(v int64) {
		i := BucketIndex(v)
		if i < prev {
			t.Fatalf("BucketIndex(%d) = %d < previous %d: not monotonic", v, i, prev)
		}
		prev = i
		lo, hi := BucketBounds(i)
		if v < lo || v > hi {
			t.Fatalf("BucketIndex(%d) = %d with bounds [%d,%d]", v, i, lo, hi)
		}
		if w := hi - lo + 1; w > 1 && w*subSize > lo {
			t.Fatalf("bucket %d [%d,%d] wider than 1/%d of its lower bound", i, lo, hi, subSize)
		}
		if i > 0 {
			_, phi := BucketBounds(i - 1)
			if phi+1 != lo {
				t.Fatalf("bucket %d starts at %d, previous ends at %d", i, lo, phi)
			}
		}
	}
	for v := range int64(100_000) {
		check(v)
	}
	for v := int64(100_000); v <= MaxTrackable; v += v/1000 + 1 {
		check(v)
	}
	check(MaxTrackable)
	if BucketIndex(MaxTrackable) != NumBuckets-1 || BucketIndex(math.MaxInt64) != NumBuckets-1 {
		t.Fatal("top values not in the last bucket")
	}
	if BucketIndex(-5) != 0 {
		t.Fatal("negative value not in bucket 0")
	}
}

// exactQuantile is the nearest-rank quantile of sorted values.
func exactQuantile(sorted []int64, q float64) int64 {
	if q <= 0 {
		return sorted[0]
	}
	r := int(math.Ceil(q * float64(len(sorted))))
	return sorted[max(r, 1)-1]
}

func TestQuantileAccuracy(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	dists := map[string]func() int64{
		"uniform-0-200ns": func() int64 { return rng.Int64N(200) },
		"uniform-1us-1ms": func() int64 { return 1000 + rng.Int64N(999_000) },
		"lognormal-2us": func() int64 {
			return int64(math.Exp(math.Log(2000) + rng.NormFloat64()))
		},
		"log-uniform-1ns-10s": func() int64 {
			return int64(math.Exp(rng.Float64() * math.Log(1e10)))
		},
		"bimodal-with-tail": func() int64 {
			switch x := rng.Float64(); {
			case x < 0.7:
				return 800 + rng.Int64N(400)
			case x < 0.999:
				return 20_000 + rng.Int64N(5000)
			default:
				return 5_000_000 + rng.Int64N(50_000_000)
			}
		},
	}
	qs := []float64{0, 0.001, 0.1, 0.5, 0.9, 0.99, 0.999, 0.9999, 1}
	for name, gen := range dists {
		t.Run(name, func(t *testing.T) {
			var h Histogram
			vals := make([]int64, 200_000)
			var sum uint64
			for i := range vals {
				vals[i] = gen()
				sum += uint64(vals[i])
				h.Record(vals[i])
			}
			slices.Sort(vals)
			if h.Count() != uint64(len(vals)) || h.Max() != vals[len(vals)-1] || h.Min() != vals[0] {
				t.Fatalf("count %d max %d min %d, want %d %d %d", h.Count(), h.Max(), h.Min(), len(vals), vals[len(vals)-1], vals[0])
			}
			var s Snapshot
			h.Snapshot(&s)
			if s.Sum != sum {
				t.Fatalf("sum %d want %d", s.Sum, sum)
			}
			for _, q := range qs {
				got, want := h.Quantile(q), exactQuantile(vals, q)
				// Documented precision: within half a bucket, i.e. 1/128 of the value.
				if d := math.Abs(float64(got - want)); d > float64(want)/128 {
					t.Errorf("q%v = %d, exact %d (error %.3f%%)", q, got, want, 100*d/float64(want))
				}
			}
		})
	}
}

func TestMergeEqualsCombined(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	var a, b, all Histogram
	for i := range 50_000 {
		v := rng.Int64N(1 << uint(rng.IntN(34)+1))
		all.Record(v)
		if i%3 == 0 {
			a.Record(v)
		} else {
			b.Record(v)
		}
	}
	var sa, sb, sall Snapshot
	a.Snapshot(&sa)
	b.Snapshot(&sb)
	all.Snapshot(&sall)
	merged := sa
	merged.Merge(&sb)
	if merged != sall {
		t.Fatal("Snapshot.Merge differs from recording everything into one histogram")
	}
	var added Snapshot
	var empty Histogram
	empty.AddTo(&added)
	b.AddTo(&added) // the larger first: a's Min and Max must still merge in
	empty.AddTo(&added)
	a.AddTo(&added)
	if added != sall {
		t.Fatal("Histogram.AddTo differs from recording everything into one histogram")
	}
	if n, exact := race.AllocsPerRun(t, 20, func() { a.AddTo(&added) }); exact && n != 0 {
		t.Fatalf("AddTo allocates %.1f times", n)
	}
	a.Merge(&b)
	var sm Snapshot
	a.Snapshot(&sm)
	if sm != sall {
		t.Fatal("Histogram.Merge differs from recording everything into one histogram")
	}
	for _, q := range []float64{0.5, 0.99, 0.999} {
		if a.Quantile(q) != all.Quantile(q) {
			t.Fatalf("q%v differs after merge", q)
		}
	}
}

func TestEmpty(t *testing.T) {
	var h Histogram
	if h.Count() != 0 || h.Max() != 0 || h.Min() != 0 || h.Quantile(0.99) != 0 {
		t.Fatal("empty histogram reports values")
	}
	h.Record(-7)
	h.Record(0)
	if h.Count() != 2 || h.Max() != 0 || h.Quantile(1) != 0 {
		t.Fatal("negative values must count as 0")
	}
}

func TestZeroAllocs(t *testing.T) {
	var h Histogram
	var s Snapshot
	var v int64 = 1
	allocs, exact := race.AllocsPerRun(t, 1000, func() {
		v = v*7 + 13
		h.Record(v % 10_000_000)
	})
	if exact && allocs != 0 {
		t.Fatalf("Record allocates %v per call", allocs)
	}
	allocs, exact = race.AllocsPerRun(t, 100, func() {
		h.Snapshot(&s)
		_ = s.Quantile(0.99)
		_ = h.Quantile(0.5)
	})
	if exact && allocs != 0 {
		t.Fatalf("Snapshot/Quantile allocate %v per call", allocs)
	}
}

// TestConcurrentSnapshot has one writer record while a reader takes
// snapshots; under -race this proves the reader path is safe, and the
// counts must never go backwards and end exact.
func TestConcurrentSnapshot(t *testing.T) {
	const n = 200_000
	var h Histogram
	var wg sync.WaitGroup
	wg.Add(1)
	done := make(chan struct{})
	go func() {
		defer wg.Done()
		defer close(done)
		for i := range n {
			h.Record(int64(i%5000) * 100)
		}
	}()
	var s Snapshot
	var last uint64
	var lastMax int64
	for reading := true; reading; {
		select {
		case <-done:
			reading = false
		default:
		}
		h.Snapshot(&s)
		if s.Count < last || s.Max < lastMax {
			t.Fatalf("snapshot went backwards: count %d after %d, max %d after %d", s.Count, last, s.Max, lastMax)
		}
		if s.Count > 0 && (s.Max > 4999*100 || s.Quantile(1) > 4999*100) {
			t.Fatalf("impossible max %d", s.Max)
		}
		last, lastMax = s.Count, s.Max
	}
	wg.Wait()
	h.Snapshot(&s)
	if s.Count != n || s.Max != 4999*100 || s.Min != 0 {
		t.Fatalf("final snapshot count %d max %d min %d", s.Count, s.Max, s.Min)
	}
}

func BenchmarkRecord(b *testing.B) {
	var h Histogram
	var v int64 = 1
	b.ReportAllocs()
	for b.Loop() {
		v = v*6364136223846793005 + 1442695040888963407
		h.Record(v & (1<<24 - 1))
	}
}

func BenchmarkQuantile(b *testing.B) {
	var h Histogram
	for i := range int64(100_000) {
		h.Record(i * 37 % 1_000_000)
	}
	b.ReportAllocs()
	for b.Loop() {
		_ = h.Quantile(0.99)
	}
}

func TestSince(t *testing.T) {
	var h Histogram
	for i := range int64(1000) {
		h.Record(1_000_000 + i) // an earlier, slower interval
	}
	var prev, cur Snapshot
	h.Snapshot(&prev)
	var interval Histogram
	for i := range int64(5000) {
		v := 100 + i*3
		h.Record(v)
		interval.Record(v)
	}
	h.Snapshot(&cur)
	cur.Since(&prev)
	var want Snapshot
	interval.Snapshot(&want)
	if cur.Counts != want.Counts || cur.Count != want.Count || cur.Sum != want.Sum {
		t.Fatal("Since differs from the interval recorded alone")
	}
	if lo, _ := BucketBounds(BucketIndex(want.Min)); cur.Min != lo {
		t.Fatalf("interval min %d want %d", cur.Min, lo)
	}
	if _, hi := BucketBounds(BucketIndex(want.Max)); cur.Max != hi {
		t.Fatalf("interval max %d want %d", cur.Max, hi)
	}
	for _, q := range []float64{0.5, 0.99, 0.999} {
		got, exact := cur.Quantile(q), interval.Quantile(q)
		if d := math.Abs(float64(got - exact)); d > float64(exact)/64 {
			t.Errorf("interval q%v = %d, want about %d", q, got, exact)
		}
	}
}

func TestRecordNMatchesRecord(t *testing.T) {
	var a, b Histogram
	for _, v := range []int64{0, 5, 127, 128, 1000, 123456, 1 << 40} {
		a.RecordN(v, 7)
		for i := 0; i < 7; i++ {
			b.Record(v)
		}
	}
	a.RecordN(99, 0)
	var sa, sb Snapshot
	a.Snapshot(&sa)
	b.Snapshot(&sb)
	if sa != sb {
		t.Fatalf("RecordN snapshot differs from repeated Record")
	}
	if n, exact := race.AllocsPerRun(t, 100, func() { a.RecordN(1000, 3) }); exact && n != 0 {
		t.Fatalf("RecordN allocates %.1f", n)
	}
}
