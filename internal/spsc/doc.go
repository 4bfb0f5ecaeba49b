// Package spsc is a bounded, lock-free, single-producer single-consumer ring
// for handing work from the receive goroutine to a book shard.
//
// A Ring holds elements of any type T by value in one slice allocated by New,
// which touches its every page (no page fault on the first lap); nothing is
// allocated afterwards. Exactly one goroutine may produce (TryPush,
// Reserve, Commit, Close) and exactly one may consume (TryPop, Peek, Release,
// PeekWait, Drained) at a time; the statistics accessors may be called from
// anywhere.
//
// The producer and consumer indices live at least 128 bytes apart (no
// cache line, nor pair of lines, holds both), and each
// side keeps a private copy of the other side's index that it refreshes only
// when that copy says the ring is full (producer) or empty (consumer), so in
// steady state each side touches the shared line of the other rarely.
//
// Element-at-a-time:
//
//	if !r.TryPush(v) { /* full: back-pressure, counted in Stats().Full */ }
//	v, ok := r.TryPop()
//
// Batches, written and read in place (views are contiguous, so a batch that
// would wrap is returned in two pieces by two calls):
//
//	w := r.Reserve(n)   // up to n writable slots; len(w) == 0 means full
//	... fill w[:k] ...
//	r.Commit(k)         // publish them, in order
//
//	v := r.Peek(max)    // up to max readable slots
//	... use v[:k] ...
//	r.Release(k)        // hand them back to the producer
//
// A producer that must not drop (the receive goroutine: a lost message is a
// broken book) waits for room with ReserveWait; a consumer that has nothing
// else to do waits with PeekWait, which spins,
// then yields the processor, then sleeps for growing but bounded periods
// (see Backoff; goroutines locked to their threads yield and sleep in the
// kernel, not through the Go scheduler). After the producer calls Close, PeekWait
// keeps returning what is left; Drained reports the ring closed and drained
// (an empty view and Closed do not say as much when PeekWait has a timeout:
// the producer may commit and close in between).
//
// Stats reports how often the producer found the ring full and the largest
// occupancy the consumer observed (sampled each time it loads the producer's
// index), the two figures that say whether a shard keeps up.
package spsc
