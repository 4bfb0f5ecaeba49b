package capture

import (
	"github.com/marketfeed/feedhandler/feed/moldudp64"
	"github.com/marketfeed/feedhandler/feed/rx"
)

// This file holds what the receive thread notes of its recovery (Recovered,
// RecoveredDropped, Snapshot, GaveUp, Freeze, Rerequested, Behind, Declared,
// Resumed, Discarded): ring events the drainer writes as frames (mark.go).

// Recovered copies a re-request answer the receive thread received at
// rxTime (the MoldUDP64 packet, data) into the ring, to be written to the
// file apart from the lines' datagrams (mark.go: Answer), so that a replay
// can tell what recovery repaired live. drainedAt is Put's for the next
// batch so far (the empty poll since the batch before, 0: none): the
// answer's frame carries it (mark.go: Drained), so that a replay ticks
// the arbiter there before it offers the answer, as the handler did (the
// batch's mark comes after). The receive thread only, as Put; it
// allocates nothing. An answer the ring has no room for is left out,
// counted as a datagram's.
func (c *Capture) Recovered(data []byte, rxTime, drainedAt int64) {
	c.putApart(data, answerLine, rxTime, drainedAt)
}

// RecoveredDropped is Recovered for an answer the receive thread's
// arbiter had no room to hold (its spill full: Arbiter.OfferRecovered's
// dropped): written as Recovered writes it (a replay's arbiter, in the
// same state, drops it too), but the range re-requested is not filled by
// it: its numbers are still missing live, asked again, and the rotation
// still waits for them (holdRotation). Before, they were counted filled:
// the range was taken as filled at the answer before them, and the file
// rotated while the handler still held behind it.
func (c *Capture) RecoveredDropped(data []byte, rxTime, drainedAt int64) {
	c.putApart(data, droppedLine, rxTime, drainedAt)
}

// putApart copies data, received at rxTime, into the ring as a datagram of
// line (answerLine, droppedLine, or snapLine: a chunk of a snapshot's
// messages), apart from the lines' batches, with the empty poll before it
// (drainedAt, 0: none): ring.answer. The receive thread only; it allocates
// nothing.
func (c *Capture) putApart(data []byte, line rx.Line, rxTime, drainedAt int64) {
	c.answer[0] = rx.Packet{Data: data, Line: line, RxTime: rxTime}
	c.ring.answer(c.answer[:], drainedAt)
	c.answer[0].Data = nil
}

// Snapshot notes a snapshot the receive thread loaded at now (the books
// rebuilt from it), delivery resuming at sequence number next, of
// messages messages: a marker frame (mark.go: Snapshot), for its messages
// are not in the file. The receive thread only, as Put.
func (c *Capture) Snapshot(now int64, next, messages uint64) {
	c.ring.event(snapMark, 0, now, next, messages)
}

// GaveUp notes that the receive thread gave up at now the range it was
// re-requesting (Arbiter.Abandon: declared missing, what was held behind
// it delivered): a marker frame (mark.go: GaveUp), so that a replay of the
// answers gives it up there too. drainedAt is Recovered's: the frame
// carries the empty poll before it (mark.go: Drained). The receive thread
// only, as Put.
func (c *Capture) GaveUp(now, drainedAt int64) {
	c.ring.event(giveUpMark, 0, now, 0, uint64(drainedAt))
}

// Freeze notes that the receive thread froze delivery at now to fetch a
// snapshot (Arbiter.Freeze), its arbiter's next sequence number from;
// atGap: as the arbiter declared a gap at now (during a batch, written
// before it), else between batches: a marker frame (mark.go: Frozen), so
// that a replay spills the lines from there as the handler did.
// drainedAt is Recovered's: the frame carries the empty poll before it
// (mark.go: Drained), which a replay ticks at before it freezes. The
// receive thread only, as Put.
func (c *Capture) Freeze(now int64, from uint64, atGap bool, drainedAt int64) {
	var g byte
	if atGap {
		g = 1
	}
	c.ring.event(freezeMark, g, now, from, uint64(drainedAt))
}

// Rerequested notes that the receive thread re-requested at now the range
// of count sequence numbers from first (its arbiter's MissingFunc took
// it: the arbiter holds what follows it for the answers): a marker frame
// (mark.go: Rerequest), written before the batch the arbiter asked in (or
// the frames of the round it asked in), so that a replay holds for the
// ranges the handler re-requested, and for no other, whether answers
// came or not. The receive thread only, as Put.
func (c *Capture) Rerequested(now int64, first, count uint64) {
	c.ring.event(requestMark, 0, now, first, count)
}

// Behind notes that the receive thread's arbiter holds at now, at its
// next sequence number next of session (the session it follows, its own
// state: not that of the line datagram before, which may be a stray
// sender's), behind lines that went back to numbers it
// delivered (a sequence restart held, arbitration.sequence_restart:
// hold, or lines replaying the session's middle: nothing behind next is
// applied until they bring it); next 0: a session change or restart
// ended it. Nothing is written for it; a file opened while it holds says
// it again at its start (restateHeld), so that a replay of that file
// alone holds at next too. The receive thread only, as Put; once a hold.
func (c *Capture) Behind(now int64, next uint64, session moldudp64.Session) {
	c.ring.behind(now, next, session)
}

// Declared notes that the receive thread's arbiter declared missing at
// now the range re-requested (Rerequested) itself, neither filled nor
// given up by the re-request client: its spill full while it held the
// lines behind the range (Arbiter.Offer gives the recovery up rather
// than lose what arrives, ArbiterStats.SpillOverflows), the range a gap
// and what was held delivered. Nothing is written for it (a replay's
// arbiter, in the same state, gives it up there too); the range is no
// longer open, so that a rotation held for it (holdRotation) goes on and
// no later file says it again. Before, the range stayed open: the
// rotation held to twice RotateSize and the next file said it again,
// which a replay of that file alone held for. The receive thread only,
// as Put.
func (c *Capture) Declared(now int64) {
	c.ring.event(declareMark, 0, now, 0, 0)
}

// Resumed notes that the receive thread resumed delivery at now without
// loading a snapshot (Arbiter.Unfreeze(0): it failed, or was refused): a
// marker frame (mark.go: Resumed). The receive thread only, as Put.
func (c *Capture) Resumed(now int64) {
	c.ring.event(resumeMark, 0, now, 0, 0)
}

// Discarded notes that the receive thread dropped at now, as the lines
// changed session (or restarted their sequence), the recovery it had in
// progress: the snapshot it froze delivery for (Freeze), the new
// session's lock unfreezing delivery (Arbiter's), neither a load nor a
// resume to follow; or the range it was re-requesting (Rerequested),
// neither filled nor given up, the arbiter having forgotten it with the
// session (no gap declared): a marker frame (mark.go: Discarded), so that
// a rotation held for the snapshot or the range (holdRotation) is no
// longer, no later file says the range again, and a replay knows the
// freeze ended. The receive thread only, as Put.
func (c *Capture) Discarded(now int64) {
	c.ring.event(discardMark, 0, now, 0, 0)
}
