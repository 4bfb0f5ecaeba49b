// Package handler is the feed handler's pipeline: it takes packets from a
// receive backend (package rx), merges lines A and B of the MoldUDP64 session
// in sequence order (Arbiter), routes each ITCH message by stock locate to
// the book shard that owns it through a bounded lock-free ring, applies it to
// that shard's books and publishes the books that changed into shared memory.
//
// Threads: one receive goroutine locked to its OS thread and pinned to the
// configured core, and one goroutine per book shard, also locked and pinned.
// Nothing on the path from Receive to Publish allocates (TestHotPathAllocatesNothing)
// or takes a lock per message: the hand-off is a lock-free SPSC ring, the
// publish a seqlock. The receive backends take one uncontended mutex per
// Receive/Release batch (it orders them against Close), and the counters
// are copied out under a mutex every few tens of milliseconds.
//
// Gaps: when no line delivered a sequence range in time (see Arbiter), a
// marker travels through every shard ring in order with the messages; from
// that point the shard's snapshots carry PossiblyStale.
package handler
