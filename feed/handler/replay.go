package handler

import (
	"time"

	"github.com/marketfeed/feedhandler/feed/itch"
	"github.com/marketfeed/feedhandler/feed/moldudp64"
)

// admission decides which delivered messages go to the books: the length
// check and the symbol filter. The receive thread and a Replayer share it,
// so a replay admits what the live handler admitted.
type admission struct {
	filter     map[itch.Symbol]bool // subscribed symbols (space padded, as on the wire); nil: all
	subscribed []bool               // by locate, decided by 'R' when filtering
	// withdrawn is the locate of the last message refused when that
	// message was a Stock Directory giving a subscribed locate to a symbol
	// the filter leaves out (0: none): its caller ends the locate's book
	// (takeWithdrawn), as the books end it when the new symbol is
	// subscribed (book.Books.Announce).
	withdrawn uint16

	filtered, badMsgs uint64
}

func newAdmission(symbols []string) admission {
	a := admission{subscribed: make([]bool, 1<<16)}
	if len(symbols) > 0 {
		a.filter = make(map[itch.Symbol]bool, len(symbols))
		for _, s := range symbols {
			a.filter[itch.NewSymbol(s)] = true
		}
	}
	return a
}

// admit reports whether a delivered message goes to the books: not when it
// is shorter than its type byte and locate (counted in badMsgs), nor when
// the symbol filter leaves its locate out (filtered). A Stock Directory
// message updates the filter's view of its locate; one that leaves out a
// locate it admitted is refused with withdrawn set: a caller checks it
// after a refusal only.
//
// A message longer than its type's ITCH 5.0 length, however long, is
// admitted: the books apply it by its type's fields and count it
// (book.Stats.Long), as the GLIMPSE snapshot delivers it. A shard's slot
// keeps its first maxMsgLen bytes, which hold the fields of any type and
// more, so it reaches a shard's books still long and is applied and
// counted as in run to completion and replay. One shorter than its type
// (3 bytes or more) is the books' to refuse (book.Stats.Malformed).
func (a *admission) admit(msg []byte) bool {
	if len(msg) < minMsgLen {
		a.badMsgs++
		return false
	}
	return a.filter == nil || a.subscribedTo(msg)
}

// subscribedTo is admit's symbol filter, kept out of line so that admit,
// without a filter, inlines.
//
//go:noinline
func (a *admission) subscribedTo(msg []byte) bool {
	loc := uint16(msg[1])<<8 | uint16(msg[2])
	if loc == 0 {
		return true
	}
	// A longer one is applied as one (the extra bytes ignored: book.Stats.Long).
	if msg[0] == itch.TypeStockDirectory && len(msg) >= itch.Length(itch.TypeStockDirectory) {
		sub := a.filter[itch.StockDirectory(msg).Stock()]
		if a.subscribed[loc] && !sub {
			a.withdrawn = loc
		}
		a.subscribed[loc] = sub
	}
	if !a.subscribed[loc] {
		a.filtered++
		return false
	}
	return true
}

// takeWithdrawn returns the locate withdrawn by the last refused message
// (0: none) and clears it.
func (a *admission) takeWithdrawn() uint16 {
	loc := a.withdrawn
	a.withdrawn = 0
	return loc
}

// ReplayPollGap is how far apart two datagrams' receive times must be for
// a Replayer to take it that the live handler found its lines empty
// between them (an empty poll: Arbiter.Tick), when the capture does not
// say (Offer; a capture's batch marks do: OfferMarked). Closer datagrams
// are taken as read in one batch, with no empty poll between them.
const ReplayPollGap = 10 * time.Microsecond

// A Replayer applies recorded line datagrams (a capture, package capture)
// as a running Handler applied them: the same Arbiter, with the feed's
// arbitration settings and session, clocked by the datagrams' receive
// times; the same message checks and symbol filter; and a session change
// empties the books (reset). The re-request answers a capture records
// (capture.Answer) it replays where the handler received them
// (Recovered), for the ranges the capture says the handler re-requested
// (FollowRerequests, Rerequested), or, in a capture from before it says
// so, those it holds answers for (SetAnswered): the Arbiter holds what
// follows such a range until they fill it, or the handler gave it up
// (GaveUp), as it held live. A snapshot
// the capture holds (capture.Frozen, capture.SnapshotMessages) it loads
// as the handler did: delivery frozen where the handler froze it (Freeze),
// the books emptied and rebuilt from the snapshot's messages, delivery
// resumed at its sequence number (LoadSnapshot), or without one
// (Resume). One it does not hold (a capture of an older handler) is a
// gap here.
// Where the live handler found its lines empty comes from the capture's
// batch marks (OfferMarked), or is modelled (Offer, ReplayPollGap) for a
// capture without them; where its receive calls failed (Arbiter.Advance)
// from the capture's marker frames (Failed): a capture without them
// replays as if none failed.
type Replayer struct {
	admission
	arb      *Arbiter
	apply    func(msg itch.Msg)
	withdraw func(locate uint16)
	reset    func()
	last     int64 // receive time of the last datagram offered
	hold     int64 // the longest the Arbiter waits for anything (Finish)
	// The handler's freeze, load or resume at opAt not yet replayed (op;
	// 0: none): a freeze at a gap declared then (opGap), else between
	// batches; a load's messages and sequence number.
	// A freeze at a gap after the resume or load between batches not yet
	// replayed (op), which it follows (Freeze).
	then   pendingFreeze
	op     uint8
	opGap  bool
	opAt   int64
	opFrom uint64 // a freeze's: the Arbiter's next sequence number there
	opMsgs []byte
	opNext uint64
	// polled: the latest empty poll ticked at by a mark (0: none); a
	// frame after it that says the same poll again (a recovery's frame,
	// then its batch's datagram) is not ticked at again.
	polled int64
	// requests: the ranges the handler re-requested not yet asked for
	// (FollowRerequests), oldest first.
	requests []moldudp64.Range
	// startEnd: the end of the range re-requested a replay started in
	// (StartAt) while the Arbiter has not delivered up to it (0: none).
	startEnd uint64

	Delivered uint64 // messages the Arbiter delivered in order (admitted or not)
	Resets    uint64 // session changes: the books were emptied
}

// NewReplayer returns a Replayer for a feed configured as cfg (its Arbiter,
// Session, Symbols and the number of its Receive.Lines): apply gets each
// admitted message in order; withdraw, in order with them, each locate
// that a Stock Directory message gave to a symbol the filter leaves out
// after it was admitted (its book ends: book.Books.Withdraw, and
// Publisher.Withdrawn when publishing); reset is called when a session
// change empties the books.
func NewReplayer(cfg Config, apply func(msg itch.Msg), withdraw func(locate uint16), reset func()) *Replayer {
	ac := cfg.Arbiter
	ac.Session = cfg.Session
	ac.Lines = len(cfg.Receive.Lines)
	r := &Replayer{admission: newAdmission(cfg.Symbols), apply: apply, withdraw: withdraw, reset: reset}
	r.arb = NewArbiter(ac, r.deliver, r.gap)
	r.arb.SetSessionFunc(func(old, _ moldudp64.Session) {
		if old != (moldudp64.Session{}) {
			r.startEnd = 0 // a range of the session StartAt started in: no longer
			r.Resets++
			reset()
		}
	})
	c := r.arb.cfg // with its defaults
	r.hold = int64(max(c.Grace, c.Hold, c.LineTimeout)) + int64(time.Second)
	return r
}

func (r *Replayer) deliver(p *moldudp64.Packet, skip int, _ int64) {
	it := p.Iter()
	it.Skip(skip)
	for msg, ok := it.Next(); ok; msg, ok = it.Next() {
		r.Delivered++
		if r.admit(msg) {
			r.apply(itch.Msg(msg))
		} else if r.withdrawn != 0 {
			r.withdraw(r.takeWithdrawn())
		}
	}
}

// gap is the Arbiter's GapFunc: the handler froze delivery for a snapshot
// as its arbiter declared a gap (recovery.gap) at the freeze's time, the
// gap that ended at its next sequence number then (opFrom). Not at a gap
// before it declared then too: live, an earlier call (a failed receive
// call of a run, which the capture holds the first and last of) declared
// that one, and its handler froze for none (not at a gap declared at the
// same time either: a freeze is started or not at a time); the replay's
// Arbiter declares both in one call, and froze at the first, before the
// messages between them were delivered.
func (r *Replayer) gap(rg moldudp64.Range, now int64) {
	if r.op == opFreeze && r.opGap && now >= r.opAt && rg.End() >= r.opFrom {
		r.run()
	}
}

// settle replays the handler's freeze, load or resume not yet replayed:
// before an event of the capture's marker frames, or, for one between
// batches (not a freeze at a gap), before a datagram. A freeze at a gap
// waits for the gap (the datagrams of the batch it was declared in, whose
// order in a batch of both lines is not their receive times').
func (r *Replayer) settle(datagram bool) {
	for r.op != 0 && (!r.opGap || !datagram) {
		r.runAt()
	}
}

// runAt replays the pending freeze, load or resume before what comes
// after it. A freeze at a gap no datagram has declared yet was the
// handler's at an empty poll at the freeze's time, which the capture does
// not record (a batch's mark holds only the last empty poll before it):
// the Arbiter ticks there first, declaring the gap as it did live, and
// the gap replays the freeze. Run at once, the freeze came before the gap
// was declared: a snapshot loaded next resumed past the hole with nothing
// declared missing, the replay's gaps not the handler's.
func (r *Replayer) runAt() {
	if r.op == opFreeze && r.opGap {
		r.arb.Tick(r.opAt)
	}
	if r.op != 0 {
		r.run()
	}
}

// tick ticks the Arbiter at an empty poll at t (advance: advances it at a
// failed receive call at t), with the handler's freeze, load or resume
// before or after it as the handler did: one between batches at t came
// after the tick (the receive loop's recovery poll follows it); a freeze
// at a gap declared before t, before it. But not before a failed call: a
// run of failed calls is written before the batch after it, after the
// events of the run's rounds and of that batch, and the batch's datagrams
// may be stamped before the run (queued while the calls failed). A freeze
// at a gap that batch declared comes before the run in the capture, not
// before it live: the Arbiter advances, and the gap, declared by the run
// or by the batch, replays the freeze. Run before, the freeze came before
// the batch declared the gap (TestReplayFreezeAtGapAfterFailedRun).
func (r *Replayer) tick(t int64, advance bool) {
	if r.op != 0 && t > r.opAt && !(advance && r.op == opFreeze && r.opGap) {
		r.runAt()
	}
	if advance {
		r.arb.Advance(t)
	} else {
		r.arb.Tick(t)
	}
	if r.op != 0 && !r.opGap && t >= r.opAt {
		r.run()
	}
}

// The handler's recovery steps a Replayer replays (Replayer.op).
const (
	opFreeze = 1 + iota
	opLoad
	opResume
)

// pendingFreeze is a freeze at a gap at a time, at a next sequence number.
type pendingFreeze struct {
	set  bool
	at   int64
	from uint64
}

// run replays the pending freeze, load or resume.
func (r *Replayer) run() {
	op := r.op
	r.op = 0
	defer func() {
		if r.op == 0 && r.then.set {
			r.op, r.opAt, r.opGap, r.opFrom = opFreeze, r.then.at, true, r.then.from
			r.then = pendingFreeze{}
		}
	}()
	switch op {
	case opFreeze:
		r.arb.Freeze()
	case opResume:
		r.arb.Unfreeze(0)
	case opLoad:
		r.reset()
		it := (&moldudp64.Packet{Blocks: r.opMsgs}).Iter()
		for msg, ok := it.Next(); ok; msg, ok = it.Next() {
			if len(msg) > 0 && msg[0] == glimpseSnapshot {
				continue
			}
			if r.admit(msg) {
				r.apply(itch.Msg(msg))
			} else if r.withdrawn != 0 {
				r.withdraw(r.takeWithdrawn())
			}
		}
		r.opMsgs = nil
		r.arb.Unfreeze(r.opNext)
	}
}

// Freeze replays the handler freezing delivery at now to fetch a snapshot
// (capture.Frozen): the Arbiter spills the lines from there. atGap: the
// handler froze as its arbiter declared a gap at now, during the batch
// (or the tick) the capture holds after the freeze; the Arbiter freezes
// where it declares that gap, the one ending at from (the handler's next
// sequence number at the freeze: capture.Frozen). Else it froze between
// batches, after the empty poll or failed receive call at now: the
// Arbiter freezes there.
// A freeze at a gap after a resume or load between batches not yet
// replayed waits with it: that one was the handler's after the empty poll
// at its time, which the batch the gap is declared in is marked with
// (OfferMarked) and the Arbiter ticks at first, delivery frozen, as live.
// Run at once, the resume came before that tick, which declared the gap
// with delivery resumed, and delivered what the handler held for the next
// snapshot (TestReplayResumeBeforeFreezeAtGap).
// drainedAt is the empty poll before the freeze (capture.Drained; 0: none
// since the batch before), at which the Arbiter ticks first, once: a
// freeze between rounds came after its round's empty poll, and the batch
// after it may be marked with a later one
// (TestReplayFreezeBetweenRoundsAfterPoll).
func (r *Replayer) Freeze(now int64, from uint64, atGap bool, drainedAt int64) {
	r.poll(drainedAt)
	if atGap && r.op != 0 && r.op != opFreeze && !r.opGap && !r.then.set {
		r.then = pendingFreeze{set: true, at: now, from: from}
		return
	}
	r.settle(false)
	r.op, r.opAt, r.opGap, r.opFrom = opFreeze, now, atGap, from
}

// Resume replays the handler resuming delivery at now without a snapshot
// loaded (capture.Resumed), between batches as Freeze's.
func (r *Replayer) Resume(now int64) {
	r.settle(false)
	r.op, r.opAt, r.opGap = opResume, now, false
}

// LoadSnapshot replays a snapshot the handler loaded at now
// (capture.Snapshot), msgs its messages (capture.SnapshotMessages: each a
// 2-byte big-endian length and the message), between batches as Freeze's:
// the books are emptied (reset) and rebuilt from them, admitted as the
// handler admitted them, and delivery resumes at sequence number next, as
// the handler's did (Handler.rebuild, Arbiter.Unfreeze). msgs is read
// until then: the caller leaves it as it is.
func (r *Replayer) LoadSnapshot(now int64, msgs []byte, next uint64) {
	r.settle(false)
	r.op, r.opAt, r.opGap, r.opMsgs, r.opNext = opLoad, now, false, msgs, next
}

// Offer hands the Replayer one datagram received on line (0: A, 1: B) at
// rxTime (ns), in the order the handler read them.
func (r *Replayer) Offer(line int, data []byte, rxTime int64) {
	if r.last != 0 && rxTime-r.last >= int64(ReplayPollGap) {
		r.tick(rxTime-1, false)
	}
	r.settle(true)
	r.last = rxTime
	r.arb.Offer(line, data, rxTime)
	r.startFilled(rxTime)
}

// OfferMarked is Offer for a datagram of a capture that carries batch
// marks (package capture): drainedAt is when the live handler last found
// every line empty before reading it (0: not since the datagram before).
// The Arbiter ticks there, as it ticked live, and nowhere else.
func (r *Replayer) OfferMarked(line int, data []byte, rxTime, drainedAt int64) {
	r.poll(drainedAt)
	r.settle(true)
	r.last = rxTime
	r.arb.Offer(line, data, rxTime)
	r.startFilled(rxTime)
}

// poll ticks the Arbiter at the empty poll a capture's mark records
// (drainedAt; 0: none), once: the frames of a round's recovery (an
// answer) and the batch after them say the same one.
func (r *Replayer) poll(drainedAt int64) {
	if drainedAt != 0 && drainedAt != r.polled {
		r.polled = drainedAt
		r.tick(drainedAt, false)
	}
}

// Failed replays a run of receive calls that failed with nothing read,
// from first to last (ns), after the empty poll drainedAt (0: none since
// the datagram before), as a capture's marker frame records it
// (capture.Failed): the Arbiter ticks there, then advances at the run's
// first and last failure, as the live loop advanced it at each.
func (r *Replayer) Failed(first, last, drainedAt int64) {
	r.poll(drainedAt)
	r.tick(first, true)
	if last != first {
		r.tick(last, true)
	}
}

// FollowRerequests tells the Replayer that the capture records the
// ranges the handler re-requested (capture.Rerequest), which it replays
// (Rerequested): the Arbiter holds what follows those, as the handler's
// held it, and declares any other missing at once. Call it before the
// first Offer, in place of SetAnswered (a capture without such frames).
func (r *Replayer) FollowRerequests() {
	r.arb.SetMissing(r.rerequested)
}

// Rerequested replays the handler re-requesting rg (capture.Rerequest),
// written before the frames whose replay asks for it (FollowRerequests):
// the Arbiter's next ask for a range from rg.First is taken. Live the
// Arbiter asked for it while it replayed those frames; with the asks
// before it not taken, a range asked again (its numbers behind a
// snapshot loaded) is the one re-requested, not one declared at once
// before, as the answers alone said (SetAnswered). An ask taken drops
// the requests before it (never asked for in the replay).
func (r *Replayer) Rerequested(rg moldudp64.Range) {
	if len(r.requests) == maxRequests {
		r.requests = append(r.requests[:0], r.requests[1:]...)
	}
	r.requests = append(r.requests, rg)
}

// StartAt replays a capture file that starts inside a range of session
// s the handler re-requested in the file before (capture.RerequestAgain:
// rg, from its first number not filled there), alone: the Arbiter starts
// at rg.First, what came before declared missing at once (the file's
// start, one gap), and holds for rg as the handler held, so that the
// answers this file holds fill it (FollowRerequests). So does a range
// re-requested in the file (capture.Rerequest; s zero: the session
// followed, or the first followed) before anything was delivered: its
// hole came in the file before. What the handler held behind the range
// was received before the file: once the answers filled rg, the rest the
// Arbiter would wait for (up to the file's first datagrams) is declared
// missing, not waited for. Before, the range was part of the start gap,
// its answers late, their messages missing from the books. now: the
// frame's time.
func (r *Replayer) StartAt(s moldudp64.Session, rg moldudp64.Range, now int64) {
	r.Rerequested(rg)
	if r.arb.StartAt(s, rg.First, now) {
		r.startEnd = rg.End()
	}
}

// StartBehind replays a capture file that starts where the handler's
// arbiter held at next of session s behind lines that went back to
// numbers it delivered (capture.HeldBehind), alone: the Arbiter starts at
// next (Arbiter.StartAt), what came before declared missing at once (the
// file's start, one gap), and drops what the lines bring behind next, as
// the handler did. Before, the replay followed the numbers the lines went
// back to from the file's start, and applied what the handler dropped.
func (r *Replayer) StartBehind(s moldudp64.Session, next uint64, now int64) {
	r.arb.StartAt(s, next, now)
}

// startFilled gives up, at now, the rest of a range the Arbiter recovers
// past the end of the one the replay started in (StartAt), once that one
// is filled: the file does not hold it.
func (r *Replayer) startFilled(now int64) {
	if r.startEnd == 0 || !r.arb.startTook || r.arb.Next() < r.startEnd {
		return // none, or the Arbiter started elsewhere (another session)
	}
	end := r.startEnd
	r.startEnd = 0
	if rg, ok := r.arb.Recovering(); ok && rg.First >= end {
		r.arb.Abandon(now)
	}
}

// maxRequests bounds the re-requests a Replayer keeps not yet asked for:
// live the Arbiter asks for one at a time.
const maxRequests = 16

// rerequested is the Arbiter's MissingFunc after FollowRerequests.
func (r *Replayer) rerequested(rg moldudp64.Range, _ int64) bool {
	for i, q := range r.requests {
		if q.First == rg.First {
			r.requests = append(r.requests[:0], r.requests[i+1:]...)
			return true
		}
	}
	return false
}

// SetAnswered tells the Replayer which missing ranges the handler
// re-requested and got answers for (answered: the capture holds an answer
// of the session with the range's first sequence number): the Arbiter
// holds what follows such a range for them, as the handler held it for its
// re-request, until they fill it or the handler gave it up (GaveUp), and
// declares any other missing at once. Call it before the first Offer.
func (r *Replayer) SetAnswered(answered func(s moldudp64.Session, rg moldudp64.Range) bool) {
	r.arb.SetMissing(func(rg moldudp64.Range, _ int64) bool { return answered(r.arb.Session(), rg) })
}

// Recovered replays a re-request answer (a MoldUDP64 packet) the handler
// received at rxTime, as a capture records it (capture.Answer): offered
// to the Arbiter as the handler offered it, after the empty poll of its
// round (drainedAt, capture.Drained; 0: none since the batch before), at
// which the Arbiter ticks first. The batch after marks the same poll,
// and the answer came before it: ticked at there, the answer filled the
// range before the tick that declared a gap before it live
// (TestReplayAnswerAfterEmptyPoll).
func (r *Replayer) Recovered(data []byte, rxTime, drainedAt int64) {
	p, err := moldudp64.Parse(data)
	if err != nil {
		return
	}
	r.poll(drainedAt)
	r.settle(true)
	r.last = max(r.last, rxTime)
	r.arb.OfferRecovered(data, p, rxTime)
	r.startFilled(rxTime)
}

// GaveUp replays the handler giving up, at now, the range it was
// re-requesting (capture.GaveUp): declared missing, what was held behind
// it delivered, as the Arbiter did live, after the empty poll of its
// round (drainedAt, as Recovered's): ticked at after, the tick, idle,
// declared holes after it that the handler waited for by the lines'
// clocks (TestReplayGiveUpAfterEmptyPoll).
func (r *Replayer) GaveUp(now, drainedAt int64) {
	r.poll(drainedAt)
	r.settle(true)
	r.arb.Abandon(now)
}

// Finish ends the replay: the lines are taken as drained long after the
// last datagram, so whatever the Arbiter still held is delivered or
// declared missing (a range held for answers the capture ends before is
// given up).
func (r *Replayer) Finish() {
	r.settle(false)
	r.arb.Abandon(r.last + r.hold)
	r.arb.Tick(r.last + r.hold)
}

// Stats returns the Arbiter's counters: per line, gaps and missing
// messages, sessions.
func (r *Replayer) Stats() ArbiterStats { return r.arb.Stats }

// Filtered and BadMessages count the delivered messages not applied: left
// out by the symbol filter, or shorter than a type byte and a locate.
func (r *Replayer) Filtered() uint64    { return r.filtered }
func (r *Replayer) BadMessages() uint64 { return r.badMsgs }
