// Package handler is the feed handler's pipeline: it takes packets from a
// receive backend (package rx), merges lines A and B of the MoldUDP64 session
// in sequence order (Arbiter), repairs gaps (re-request, snapshot), applies
// each ITCH message to its instrument's book and publishes the books that
// changed into shared memory.
//
// Modes (Config.Mode; ModeAuto picks by the number of shard cores):
//
//   - Run to completion (the default; zero or one shard core): one goroutine
//     locked to its OS thread and pinned to the receive core does everything
//     in turn for each receive batch: receive, arbitrate and recover, apply
//     each message as it is delivered, then publish every book the batch
//     changed once (conflated) and record the latencies. No ring and no
//     other hot thread.
//   - Sharded (two or more shard cores): the receive thread routes each
//     message by stock locate through a bounded lock-free SPSC ring to the
//     shard thread owning it, which applies and publishes its batches.
//
// Nothing on the path from Receive to Publish allocates
// (TestRunToCompletionAllocatesNothing, TestHotPathAllocatesNothing,
// TestPacedRunStartsNoGC) or takes a lock per message: the publish is a
// seqlock. The receive backends take one uncontended mutex per
// Receive/Release batch (it orders them against Close), and the counters
// are copied out under a mutex every few tens of milliseconds.
//
// Gaps: when no line delivered a sequence range in time (see Arbiter), a
// marker is applied in order with the messages (a call on the one thread,
// or a slot through every shard ring); from that point the snapshots carry
// PossiblyStale until a repair.
package handler
