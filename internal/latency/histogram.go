package latency

import (
	"math"
	"math/bits"
	"sync/atomic"

	"github.com/marketfeed/feedhandler/internal/single"
)

const (
	subBits = 6            // log2 of buckets per power of two
	subSize = 1 << subBits // 64
	maxExp  = 36           // values >= 2^maxExp land in the last bucket

	// NumBuckets is the number of buckets of a Histogram.
	NumBuckets = (maxExp - subBits + 1) * subSize // 1984

	// MaxTrackable is the largest value (ns) with full precision.
	MaxTrackable = int64(1)<<maxExp - 1
)

// BucketIndex returns the bucket that counts v (ns).
func BucketIndex(v int64) int {
	if v < 2*subSize {
		if v < 0 {
			return 0
		}
		return int(v)
	}
	if v > MaxTrackable {
		return NumBuckets - 1
	}
	e := bits.Len64(uint64(v)) - 1 // 7..35
	shift := e - subBits
	return (shift+1)*subSize + int(uint64(v)>>shift) - subSize
}

// BucketBounds returns the smallest and largest value counted in bucket i.
func BucketBounds(i int) (lo, hi int64) {
	if i < 2*subSize {
		return int64(i), int64(i)
	}
	shift := i/subSize - 1
	m := int64(i%subSize + subSize)
	lo = m << shift
	return lo, lo + int64(1)<<shift - 1
}

// Histogram is a log-linear latency histogram in nanoseconds. Its zero
// value is ready to use. It must not be copied after first use. It has one
// writer, which adds to its counters without atomic read-modify-writes
// (package single); any goroutine may read it.
type Histogram struct {
	counts [NumBuckets]atomic.Uint64
	sum    atomic.Uint64 // sum of recorded values (clamped at 0), ns
	max    atomic.Int64
	min    atomic.Int64 // stored as value+1 so that 0 means "none yet"
}

// Record counts one value, in nanoseconds. Only the writer may call it.
func (h *Histogram) Record(ns int64) {
	if ns < 0 {
		ns = 0
	} else if ns == math.MaxInt64 {
		ns-- // keep min's +1 encoding from overflowing
	}
	single.Add(&h.counts[BucketIndex(ns)], 1)
	single.Add(&h.sum, uint64(ns))
	if ns > h.max.Load() {
		h.max.Store(ns)
	}
	if m := h.min.Load(); m == 0 || ns+1 < m {
		h.min.Store(ns + 1)
	}
}

// RecordN records n observations of the same value ns: the cost of one
// Record for a run of messages that share a timestamp (the messages of one
// packet). n <= 0 records nothing.
func (h *Histogram) RecordN(ns int64, n int) {
	if n <= 0 {
		return
	}
	if ns < 0 {
		ns = 0
	} else if ns == math.MaxInt64 {
		ns--
	}
	single.Add(&h.counts[BucketIndex(ns)], uint64(n))
	single.Add(&h.sum, uint64(ns)*uint64(n))
	if ns > h.max.Load() {
		h.max.Store(ns)
	}
	if m := h.min.Load(); m == 0 || ns+1 < m {
		h.min.Store(ns + 1)
	}
}

// Merge adds every count of o into h. Only h's writer may call it; o may be
// recorded into concurrently.
func (h *Histogram) Merge(o *Histogram) {
	for i := range h.counts {
		if c := o.counts[i].Load(); c != 0 {
			single.Add(&h.counts[i], c)
		}
	}
	single.Add(&h.sum, o.sum.Load())
	if m := o.max.Load(); m > h.max.Load() {
		h.max.Store(m)
	}
	if m := o.min.Load(); m != 0 {
		if hm := h.min.Load(); hm == 0 || m < hm {
			h.min.Store(m)
		}
	}
}

// Snapshot copies the histogram into dst (caller-owned, so that taking one
// allocates nothing). Safe while the writer records.
func (h *Histogram) Snapshot(dst *Snapshot) {
	var n uint64
	for i := range h.counts {
		c := h.counts[i].Load()
		dst.Counts[i] = c
		n += c
	}
	dst.Count = n
	dst.Sum = h.sum.Load()
	dst.Max = h.max.Load()
	dst.Min = h.min.Load() - 1
	if n == 0 {
		dst.Min, dst.Max = 0, 0
	}
}

// AddTo adds the histogram's counts into dst, as Snapshot into a scratch
// snapshot then dst.Merge would, without the scratch: the merge of several
// histograms into one caller-owned snapshot, allocating nothing. Safe while
// the writer records.
func (h *Histogram) AddTo(dst *Snapshot) {
	var n uint64
	for i := range h.counts {
		c := h.counts[i].Load()
		dst.Counts[i] += c
		n += c
	}
	if n == 0 {
		return
	}
	mn, mx := h.min.Load()-1, h.max.Load()
	if dst.Count == 0 || mn < dst.Min {
		dst.Min = mn
	}
	if dst.Count == 0 || mx > dst.Max {
		dst.Max = mx
	}
	dst.Count += n
	dst.Sum += h.sum.Load()
}

// Count returns the number of recorded values. It sums the buckets (about
// 2000 atomic loads); a reader needing several figures should Snapshot once.
func (h *Histogram) Count() uint64 {
	var n uint64
	for i := range h.counts {
		n += h.counts[i].Load()
	}
	return n
}

// Max returns the largest recorded value, 0 when empty.
func (h *Histogram) Max() int64 { return h.max.Load() }

// Min returns the smallest recorded value, 0 when empty.
func (h *Histogram) Min() int64 {
	if m := h.min.Load(); m != 0 {
		return m - 1
	}
	return 0
}

// Quantile returns the value at quantile q (0..1), e.g. 0.5, 0.99, 0.999,
// within the precision stated in the package documentation; 0 when empty.
func (h *Histogram) Quantile(q float64) int64 {
	var s Snapshot
	h.Snapshot(&s)
	return s.Quantile(q)
}

// Snapshot is a plain copy of a Histogram, for a reader to compute from and
// merge. The zero value is an empty snapshot.
type Snapshot struct {
	Counts [NumBuckets]uint64
	Count  uint64 // sum of Counts
	Sum    uint64 // sum of values, ns
	Min    int64
	Max    int64
}

// Merge adds o into s.
func (s *Snapshot) Merge(o *Snapshot) {
	if o.Count == 0 {
		return
	}
	if s.Count == 0 || o.Min < s.Min {
		s.Min = o.Min
	}
	if o.Max > s.Max {
		s.Max = o.Max
	}
	for i, c := range o.Counts {
		s.Counts[i] += c
	}
	s.Count += o.Count
	s.Sum += o.Sum
}

// Mean returns the average value in ns, 0 when empty.
func (s *Snapshot) Mean() float64 {
	if s.Count == 0 {
		return 0
	}
	return float64(s.Sum) / float64(s.Count)
}

// Quantile returns the value at quantile q (clamped to 0..1) using the
// nearest-rank definition: the smallest recorded value v such that at least
// q*Count values are <= v, approximated by the middle of its bucket.
func (s *Snapshot) Quantile(q float64) int64 {
	if s.Count == 0 {
		return 0
	}
	if !(q > 0) { // also NaN
		return s.Min
	}
	if q >= 1 {
		return s.Max
	}
	rank := uint64(math.Ceil(q * float64(s.Count)))
	if rank == 0 {
		rank = 1
	}
	var cum uint64
	for i, c := range s.Counts {
		cum += c
		if cum >= rank {
			lo, hi := BucketBounds(i)
			v := lo + (hi-lo+1)/2
			if hi == lo {
				v = lo
			}
			return min(max(v, s.Min), s.Max)
		}
	}
	return s.Max
}

// CountAtOrBelow returns how many recorded values are <= v, counting a
// bucket only when its upper bound is <= v (exact below 128 ns, within one
// bucket width above).
func (s *Snapshot) CountAtOrBelow(v int64) uint64 {
	if v < 0 {
		return 0
	}
	last := BucketIndex(v)
	if _, hi := BucketBounds(last); hi > v {
		last--
	}
	var n uint64
	for i := 0; i <= last && i < NumBuckets; i++ {
		n += s.Counts[i]
	}
	return n
}

// Since turns s into the difference s - prev, where prev is an earlier
// snapshot of the same histogram: the values recorded in between, e.g. for
// a per-interval stats line. Min and Max become the bounds of the lowest and
// highest non-empty bucket of the interval (exact below 128 ns, within one
// bucket width above), since exact extremes are only known cumulatively.
func (s *Snapshot) Since(prev *Snapshot) {
	s.Count -= prev.Count
	s.Sum -= prev.Sum
	s.Min, s.Max = 0, 0
	first := true
	for i := range s.Counts {
		s.Counts[i] -= prev.Counts[i]
		if s.Counts[i] == 0 {
			continue
		}
		lo, hi := BucketBounds(i)
		if first {
			s.Min, first = lo, false
		}
		s.Max = hi
	}
}
