package handler

import (
	"errors"
	"runtime"
	"runtime/debug"
	"time"

	"github.com/marketfeed/feedhandler/feed/rx"
	"github.com/marketfeed/feedhandler/internal/clock"
	"github.com/marketfeed/feedhandler/internal/single"
)

// This file holds the receive thread: its loop (Receive, offer to the
// arbiter, publish in run to completion, capture, Release, then the
// arbiter's ticks, the recovery's poll and the stats copy) and the end of a
// batch.

// receive is the receive thread: Receive, arbitrate, route; in run to
// completion also apply and publish, once per batch.
func (h *Handler) receive(pinErr chan<- error) {
	defer close(h.rxDone)
	// Locked and never unlocked: the thread exits with the goroutine
	// rather than going back to the runtime pinned to the core.
	runtime.LockOSThread()
	pinErr <- setupThread(h.cfg.ReceiveCore, h.cfg.RTPriority, &h.rxThread)
	// A store into the shm file truncated under the writer is a panic,
	// which receiveLoop recovers (shmFault), not a crash of the process.
	debug.SetPanicOnFault(true)
	faulted := h.receiveLoop()
	if h.rec != nil {
		if err := h.rec.close(); err != nil {
			h.log.Warn().Err(err).Msg("close recovery")
		}
	}
	h.closeWake()
	if !faulted {
		h.endBatch()
		h.finishSweep()
	}
	h.copyStats(true)
	// Close on the thread that used the receiver (io_uring's single issuer).
	h.closeErr = h.recv.Close()
}

// receiveLoop is the receive thread's loop, until Stop, or until a store
// into the shm file faults (true: the file was truncated under the
// writer; shmFault). The recover is deferred once per thread, not per
// message.
func (h *Handler) receiveLoop() (faulted bool) {
	defer func() {
		if h.shmFault(recover(), "receive") {
			faulted = true
		}
	}()
	batch := h.cfg.Receive.BatchSize
	if batch <= 0 {
		batch = 64
	}
	pkts := make([]rx.Packet, batch)
	last := clock.Now()
	for !h.stop.Load() {
		n, err := h.recv.Receive(pkts)
		// Packets returned together with an error are real: use and
		// release them before looking at the error.
		var ended int64 // when the batch's publish ended (run to completion)
		if n > 0 {
			h.pickup = clock.Now()
			if tailTrace && h.inline != nil {
				h.inline.tail.begin(h.pickup, pkts[:n], h.inline.pub.Published)
			}
			batch := pkts[:n] // ranged: no bounds check a datagram
			for i := range batch {
				p := &batch[i]
				h.arb.Offer(int(p.Line), p.Data, p.RxTime)
				if tailTrace && h.inline != nil {
					h.inline.tail.mark(clock.Now())
				}
			}
			if (stageTiming || tailTrace) && h.inline != nil {
				h.inline.stages.offered = clock.Now()
				if tailTrace {
					h.inline.tail.mark(h.inline.stages.offered)
				}
			}
			ended = h.endBatch()
			// After the batch is published, so the copy is not on its
			// path to the shm file; before Release, while the datagrams
			// are still the receiver's buffers as they came.
			h.captureBatch(pkts[:n], h.drainedAt)
			h.drainedAt = 0
			h.recv.Release(pkts[:n])
		}
		single.Store(&h.delivered, h.nDelivered)
		if err != nil {
			if errors.Is(err, rx.ErrClosed) {
				break
			}
			h.rxErrors++
			h.logReceiveError(err)
			if n == 0 {
				// Back off, then go on with the round: a receiver failing
				// on every call must not stop the arbiter's hold and gap
				// timers, recovery or the stats copy.
				time.Sleep(time.Millisecond)
			}
		}
		// A batch that published has just read the clock: its end time
		// serves the ticks and the stats too.
		now := ended
		if now == 0 {
			now = clock.Now()
		}
		// Only an empty poll says that every line was drained: after a
		// failed one the failing line may still hold packets, so its
		// copies are still waited for (Advance).
		drained := n == 0 && err == nil
		switch {
		case drained:
			h.arb.Tick(now)
			h.drainedAt = now
		case n == 0:
			h.arb.Advance(now)
			h.captureFailed(now, h.drainedAt)
		}
		if h.rec != nil {
			h.rec.poll(now)
		}
		if h.nDelivered != h.delivered.Load() {
			// What Tick, Advance or the recovery delivered: counted now,
			// not at the next round (on quiet lines, the next packet or
			// the wait's timeout).
			single.Store(&h.delivered, h.nDelivered)
		}
		if h.newSession {
			h.newSessionWhole()
		}
		// What Tick released or recovery delivered: endBatch, called
		// only when it has something to do (shard.endIdle, inlined).
		if s := h.inline; s != nil && !s.endIdle() {
			s.endBatch()
		}
		// After everything that moves the arbiter and the recovery this
		// round: their next deadlines end the next wait (wake timer).
		// Skipped while neither has anything to wake on (two tests, each
		// inlined: the handler's, then the recovery's).
		if !h.wakeIdle() || h.rec != nil && !h.rec.wakeIdle() {
			h.syncWake(now)
		}
		if drained && now-h.pickup >= int64(sweepQuiet) {
			h.finishSweep()
		}
		// A reader (Stats) holding the lock makes the copy wait for the
		// next round, a loop later: the hot thread never waits for a
		// reader the kernel may have descheduled while holding it.
		last = min(last, now) // the wall clock stepped back: copy 20 ms on, not once it is back
		if now-last > int64(20*time.Millisecond) {
			h.alive.Add(1) // the thread goes round (housekeeping beats the heartbeat only then)
			if h.copyStats(false) {
				last = now
			}
		}
	}
	return false
}

// captureBatch copies a received batch into the capture's ring when
// capture.path is set: every datagram of both lines as received (not only
// what arbitration kept), once the batch is published and before Release,
// marked with the time of the empty poll before it (drainedAt, 0: none
// since the batch before), where the arbiter ticked; a copy, never a wait
// (package capture). Off, it is one branch; it inlines.
func (h *Handler) captureBatch(pkts []rx.Packet, drainedAt int64) {
	if h.capFile != nil {
		h.capFile.Put(pkts, drainedAt)
	}
}

// captureFailed notes in the capture, when capture.path is set, a receive
// call that failed with nothing read at now, where the arbiter advanced
// (drainedAt: the empty poll since the batch before, 0: none): the capture
// writes the run of failures before the next batch, so that a replay
// advances there too (package capture). A few stores; it inlines.
func (h *Handler) captureFailed(now, drainedAt int64) {
	if h.capFile != nil {
		h.capFile.Failed(now, drainedAt)
	}
}

// sweepQuiet is how long the feed must have been quiet (no packet picked
// up) before the receive thread, in run to completion, finishes a
// market-wide republish at once (finishSweep) instead of a chunk per round:
// it cannot look for packets between chunks without waiting in Receive, up
// to the receiver's poll timeout. A real receiver returns nothing only
// after its poll timeout of silence (Start sets it to at most a quarter of
// the arbiter's hold: 5 ms by default), so in practice the sweep finishes
// in the first round without packets; until then each round with packets
// adds two chunks (its own endBatch and the one ending every round).
var sweepQuiet = time.Millisecond // a variable for TestStopFinishesSweep

// finishSweep publishes the rest of a market-wide republish under way in
// run to completion (Publisher.Sweeping), unless the books are being
// rebuilt.
func (h *Handler) finishSweep() {
	if s := h.inline; s != nil && !s.rebuilding && s.pub.Sweeping() {
		s.pub.Flush()
	}
}

// endBatch ends a run-to-completion batch: publish what it changed and
// record its latencies. It returns the time read after the publish, or 0
// when nothing happened or the shards publish.
func (h *Handler) endBatch() int64 {
	if h.inline != nil {
		return h.inline.endBatch()
	}
	return 0
}
