package spsc

import (
	"fmt"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/marketfeed/feedhandler/internal/mem"
)

// cacheLine is the padding unit. 128 bytes covers the adjacent-line
// prefetcher of x86 parts and the 128-byte lines of some arm64 parts.
const cacheLine = 128

// Backoff tunes PeekWait and ReserveWait: Spins empty polls, then Yields
// polls each after a yield, then sleeps starting at MinSleep and doubling
// up to MaxSleep between polls. Zero fields take the defaults of
// DefaultBackoff.
//
// Thread says that the waiting goroutines are locked to their OS threads
// (runtime.LockOSThread), as the feed handler's hot threads are. They then
// yield and sleep in the kernel (sched_yield(2), nanosleep(2) on Linux),
// keeping their thread, and usually the runtime's P: a sleep long enough
// for sysmon to retake the P while other goroutines are runnable takes the
// hand-off below on waking, far less often than a wait through the Go
// scheduler, which takes it every time. Through the Go scheduler
// (runtime.Gosched, time.Sleep) a locked goroutine that stops running is
// handed back to its thread by another thread: a park and two thread
// wake-ups per yield or sleep, about 17 µs each on a quiet 2-CPU VM and
// milliseconds when the other CPU is busy.
type Backoff struct {
	Spins    int
	Yields   int
	MinSleep time.Duration
	MaxSleep time.Duration
	Thread   bool
}

// DefaultBackoff is what a Ring uses unless SetBackoff says otherwise.
var DefaultBackoff = Backoff{Spins: 256, Yields: 64, MinSleep: 2 * time.Microsecond, MaxSleep: 200 * time.Microsecond}

// Stats are cumulative ring counters.
type Stats struct {
	Capacity  int    // slots in the ring
	Len       int    // occupancy at the time of the call (approximate under concurrency)
	Pushed    uint64 // elements committed by the producer
	Full      uint64 // push/reserve attempts that found no free slot (back-pressure)
	HighWater uint64 // largest occupancy the consumer observed when loading the producer index
}

// Ring is a bounded single-producer single-consumer FIFO of T. Create it
// with New. See the package documentation for the threading contract.
//
// Each group of fields below is followed by a whole cacheLine of padding,
// not by what would fill its own line: the allocator aligns a Ring to 8
// bytes, not to 128, so a group may start anywhere in a line, and only a
// gap of cacheLine bytes keeps the next group out of every 128-byte block
// it touches (TestIndicesApart).
type Ring[T any] struct {
	// Read by both sides; closed is written once.
	buf     []T
	mask    uint64
	backoff Backoff
	closed  atomic.Bool
	_       [cacheLine]byte

	// Producer-owned.
	tail      atomic.Uint64 // next slot to write; published by Commit
	headCache uint64        // producer's copy of head
	full      atomic.Uint64 // written only by the producer
	_         [cacheLine]byte

	// Consumer-owned.
	head      atomic.Uint64 // next slot to read; published by Release
	tailCache uint64        // consumer's copy of tail
	highWater atomic.Uint64 // written only by the consumer
	_         [cacheLine]byte
}

// New returns a ring of capacity slots. capacity must be a power of two, at
// least 2. Every page of the slots is touched here (mem.Touch): a large
// ring's pages come fresh from the OS, and the producer's first lap would
// otherwise take a page fault per page.
func New[T any](capacity int) (*Ring[T], error) {
	if capacity < 2 || capacity&(capacity-1) != 0 {
		return nil, fmt.Errorf("new spsc ring: capacity %d is not a power of two >= 2", capacity)
	}
	buf := make([]T, capacity)
	mem.Touch(mem.Bytes(buf))
	return &Ring[T]{buf: buf, mask: uint64(capacity - 1), backoff: DefaultBackoff}, nil
}

// SetBackoff changes how PeekWait waits. Call it before the consumer starts.
func (r *Ring[T]) SetBackoff(b Backoff) {
	d := DefaultBackoff
	if b.Spins > 0 {
		d.Spins = b.Spins
	}
	if b.Yields > 0 {
		d.Yields = b.Yields
	}
	if b.MinSleep > 0 {
		d.MinSleep = b.MinSleep
	}
	if b.MaxSleep > 0 {
		d.MaxSleep = b.MaxSleep
	}
	if d.MaxSleep < d.MinSleep {
		d.MaxSleep = d.MinSleep
	}
	d.Thread = b.Thread
	r.backoff = d
}

// Backoff returns how the ring waits, as SetBackoff (or New) set it.
func (r *Ring[T]) Backoff() Backoff { return r.backoff }

// waiting is one wait of ReserveWait or PeekWait: Spins polls, then
// Yields, then sleeps from MinSleep doubling to MaxSleep, until the
// deadline (none for a timeout <= 0).
type waiting struct {
	b        *Backoff
	timeout  time.Duration
	deadline time.Time
	sleep    time.Duration
	i        int // polls so far
}

func (b *Backoff) wait(timeout time.Duration) waiting {
	w := waiting{b: b, timeout: timeout, sleep: b.MinSleep}
	if timeout > 0 {
		w.deadline = time.Now().Add(timeout)
	}
	return w
}

// pause waits before the next poll: not at all while spinning, a yield,
// or a sleep cut to the time left. It reports false, without sleeping,
// when the deadline has passed.
func (w *waiting) pause() bool {
	b := w.b
	switch {
	case w.i < b.Spins:
		// busy poll
	case w.i < b.Spins+b.Yields:
		b.yield()
	default:
		if w.timeout > 0 {
			left := time.Until(w.deadline)
			if left <= 0 {
				return false
			}
			w.sleep = min(w.sleep, left)
		}
		b.sleep(w.sleep)
		w.sleep = min(w.sleep*2, b.MaxSleep)
	}
	return true
}

// expired ends a poll that found nothing: past the spins, every 16th poll
// reads the clock and reports whether the deadline has passed.
func (w *waiting) expired() bool {
	i := w.i
	w.i++
	return w.timeout > 0 && i >= w.b.Spins && (i-w.b.Spins)%16 == 0 && time.Now().After(w.deadline)
}

// yield lets other work run before the next poll.
func (b *Backoff) yield() {
	if b.Thread && osYield() {
		return
	}
	runtime.Gosched()
}

// sleep waits d before the next poll.
func (b *Backoff) sleep(d time.Duration) {
	if b.Thread && osSleep(d) {
		return
	}
	time.Sleep(d)
}

// Cap returns the number of slots.
func (r *Ring[T]) Cap() int { return len(r.buf) }

// Len returns the current occupancy. It is exact only when called by the
// producer or consumer while the other side is idle.
func (r *Ring[T]) Len() int {
	h := r.head.Load()
	t := r.tail.Load() // loaded after head: at least h, mod 2^64
	// The indices run free and wrap past 2^64-1: their difference is
	// the occupancy, not their order. Pushes and releases between the
	// two loads can make it exceed the capacity.
	return int(min(t-h, uint64(len(r.buf))))
}

// --- producer side ---

// TryPush appends v. It returns false, and counts a full event, when the
// ring has no free slot.
func (r *Ring[T]) TryPush(v T) bool {
	t := r.tail.Load() // own index: no contention
	if t-r.headCache >= uint64(len(r.buf)) {
		r.headCache = r.head.Load()
		if t-r.headCache >= uint64(len(r.buf)) {
			r.full.Store(r.full.Load() + 1)
			return false
		}
	}
	r.buf[t&r.mask] = v
	r.tail.Store(t + 1)
	return true
}

// Reserve returns up to n contiguous free slots to fill in place. The view
// is shorter than n when the ring is nearly full or the free space wraps
// around the end of the slice; it is empty, and a full event is counted,
// when no slot is free. Nothing is visible to the consumer until Commit.
func (r *Ring[T]) Reserve(n int) []T {
	if n <= 0 {
		return nil
	}
	w := r.reserve(n)
	if len(w) == 0 {
		r.full.Store(r.full.Load() + 1)
	}
	return w
}

// reserve is Reserve without counting full events; n > 0.
func (r *Ring[T]) reserve(n int) []T {
	t := r.tail.Load()
	size := uint64(len(r.buf))
	free := size - (t - r.headCache)
	if free < uint64(n) {
		r.headCache = r.head.Load()
		free = size - (t - r.headCache)
		if free == 0 {
			return nil
		}
	}
	i := t & r.mask
	end := min(i+free, size, i+uint64(n))
	return r.buf[i:end:end]
}

// ReserveWait is Reserve that waits, with the ring's Backoff, until at
// least one slot is free, the ring is closed, or timeout has passed
// (timeout <= 0 waits without limit). A wait counts as one full event
// however long it lasts. It returns an empty view on timeout or when the
// ring is closed; that is how another goroutine's Close stops a blocked
// producer.
func (r *Ring[T]) ReserveWait(n int, timeout time.Duration) []T {
	if n <= 0 {
		return nil
	}
	if w := r.reserve(n); len(w) > 0 {
		return w
	}
	r.full.Store(r.full.Load() + 1)
	for w := r.backoff.wait(timeout); ; {
		if r.closed.Load() || !w.pause() {
			return nil
		}
		if v := r.reserve(n); len(v) > 0 {
			return v
		}
		if w.expired() {
			return nil
		}
	}
}

// Commit publishes the first n slots of the last Reserve. n must not exceed
// the length of that view.
func (r *Ring[T]) Commit(n int) {
	if n <= 0 {
		return
	}
	r.tail.Store(r.tail.Load() + uint64(n))
}

// Close marks the ring closed. Normally the producer calls it after its
// last Commit; elements committed before Close stay readable and PeekWait
// returns them before reporting the ring drained. Any goroutine may call it
// to stop a producer blocked in ReserveWait or a consumer in PeekWait.
func (r *Ring[T]) Close() { r.closed.Store(true) }

// Closed reports whether Close was called.
func (r *Ring[T]) Closed() bool { return r.closed.Load() }

// --- consumer side ---

// TryPop removes and returns the oldest element; ok is false when the ring
// is empty.
func (r *Ring[T]) TryPop() (v T, ok bool) {
	h := r.head.Load()
	if h == r.tailCache {
		r.loadTail(h)
		if h == r.tailCache {
			return v, false
		}
	}
	v = r.buf[h&r.mask]
	r.head.Store(h + 1)
	return v, true
}

// Peek returns a view of up to max contiguous readable elements, oldest
// first. The view is shorter than max when fewer are available or they wrap
// around the end of the slice. The elements stay in the ring, and the view
// stays valid, until Release.
func (r *Ring[T]) Peek(max int) []T {
	if max <= 0 {
		return nil
	}
	h := r.head.Load()
	if r.tailCache-h < uint64(max) {
		r.loadTail(h)
	}
	avail := r.tailCache - h
	if avail == 0 {
		return nil
	}
	i := h & r.mask
	end := min(i+avail, uint64(len(r.buf)), i+uint64(max))
	return r.buf[i:end:end]
}

// Release hands the n oldest elements back to the producer. n must not
// exceed what the last Peek returned.
func (r *Ring[T]) Release(n int) {
	if n <= 0 {
		return
	}
	r.head.Store(r.head.Load() + uint64(n))
}

// loadTail refreshes the consumer's copy of tail and samples occupancy.
func (r *Ring[T]) loadTail(h uint64) {
	t := r.tail.Load()
	r.tailCache = t
	if occ := t - h; occ > r.highWater.Load() {
		r.highWater.Store(occ)
	}
}

// PeekWait is Peek that waits, with the ring's Backoff, until at least one
// element is readable, the ring is closed, or timeout has passed (timeout
// <= 0 waits without limit). It returns an empty view on timeout, and when
// the ring is closed and drained; tell them apart with Drained, not
// Closed: after a timeout the producer may commit more and close the ring
// before the consumer looks at Closed.
func (r *Ring[T]) PeekWait(max int, timeout time.Duration) []T {
	if v := r.Peek(max); len(v) > 0 {
		return v
	}
	for w := r.backoff.wait(timeout); ; {
		if r.closed.Load() || !w.pause() {
			// Closed: everything committed before Close is visible
			// now. Or the deadline passed before a sleep.
			return r.Peek(max)
		}
		if v := r.Peek(max); len(v) > 0 {
			return v
		}
		if w.expired() {
			return nil
		}
	}
}

// Drained reports whether the ring is closed and everything committed
// before Close was consumed: the consumer may stop. Closed is loaded
// first, so an element committed before Close is seen. Consumer only.
func (r *Ring[T]) Drained() bool {
	return r.closed.Load() && len(r.Peek(1)) == 0
}

// Stats returns the ring counters. Safe from any goroutine.
func (r *Ring[T]) Stats() Stats {
	return Stats{
		Capacity:  len(r.buf),
		Len:       r.Len(),
		Pushed:    r.tail.Load(),
		Full:      r.full.Load(),
		HighWater: r.highWater.Load(),
	}
}
