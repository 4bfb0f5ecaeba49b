package handler

import (
	"bytes"
	"time"

	"github.com/marketfeed/feedhandler/feed/moldudp64"
)

// MaxLines is the number of redundant lines an Arbiter merges.
const MaxLines = 2

// defaultHold is ArbiterConfig.Hold's default.
const defaultHold = 20 * time.Millisecond

// ArbiterConfig tunes an Arbiter. Zero values pick the defaults shown.
type ArbiterConfig struct {
	// Session accepts only this session; the zero Session accepts the first
	// session seen and then sticks to it.
	Session moldudp64.Session
	// Lines is the number of configured lines (1 or 2; default 2).
	Lines int
	// Grace is how long packets after a missing sequence number are held
	// back once every live line has moved past it (default 200µs), by each
	// line's clock from its first packet past it (never longer than Hold
	// from when the gap appeared): it absorbs reordering inside a line.
	Grace time.Duration
	// Hold is how long they are held back while some live line may still
	// deliver it (default 20ms): the largest skew between the lines that
	// is waited out, measured in the lagging line's receive timestamps.
	Hold time.Duration
	// LineTimeout: a line that delivered nothing for this long is not waited
	// for (default 1s).
	LineTimeout time.Duration
	// MaxPending bounds the packets held back (default 8192, 16 MiB of
	// slots); when full the gap is declared at once, unless the recovery
	// source (SetMissing) takes it: then the spill holds what follows.
	MaxPending int
	// SlotSize is the largest packet that can be held back (default 2048
	// bytes); a larger out-of-order packet forces the gap to be declared.
	SlotSize int
	// MaxJump is the largest forward jump of sequence numbers (from the
	// next expected) taken at face value (default 1<<22). A packet further
	// ahead is suspect (a corrupt or foreign packet would otherwise end
	// the session: everything before it declared missing): it is dropped
	// and counted, unless SuspectConfirm packets in a row all jump, each
	// data packet bringing sequence numbers past the one before (copies of
	// one data packet do not count; heartbeats and End of Session packets
	// do), which means the feed really moved on.
	MaxJump        uint64
	SuspectConfirm int // default 3
	// SessionConfirm: with no Session configured, a session is followed
	// once this many of its packets in a row carried a consistent
	// sequence (default 4); see session.go.
	SessionConfirm int
	// Spill bounds the packets held while a recovery source fills a gap
	// (see SetMissing; default and minimum MaxPending). When it is full
	// the recovery is abandoned and the gap declared.
	Spill int
	// HoldRestart: on a sequence restart under the same session name (see
	// ArbiterStats.Regressions), keep the books as they are and wait for
	// new sequence numbers (ArbiterStats.Behind), instead of the default:
	// follow the restarted sequence from 1, as a session change to the
	// same name (the books emptied and rebuilt; see restart).
	HoldRestart bool
}

// MissingFunc is asked, once a range is missing on every live line,
// whether a recovery source takes it on. When it returns true the Arbiter
// keeps holding what follows (up to ArbiterConfig.Spill packets) until the
// range is filled through OfferRecovered, or given up with Abandon. When it
// returns false the gap is declared at once.
type MissingFunc func(r moldudp64.Range, now int64) bool

// Deliver receives the in-order stream: the messages of p from message
// index skip on, whose first has sequence number p.Seq+skip. p is the
// Arbiter's own, valid during the call only (its next packet is parsed
// into it): a Deliver that keeps the packet copies it (*p), as it keeps
// p.Blocks only as long as the datagram it was parsed from. By pointer:
// a Packet does not fit in registers (its Session is an array), and by
// value it was copied at every call on the way to the books.
type Deliver func(p *moldudp64.Packet, skip int, rxTime int64)

// GapFunc is told of every sequence range neither line delivered in time,
// and the time the Arbiter was given when it declared it (the receive time
// of the packet, or the now of Tick, Advance or Abandon), as MissingFunc is.
type GapFunc func(r moldudp64.Range, now int64)

// LineStats count what one line delivered, as seen by the Arbiter.
type LineStats struct {
	Packets      uint64 // valid packets of the session (data, heartbeats, end of session)
	Bytes        uint64 // UDP payload bytes of those
	Messages     uint64 // messages carried
	Won          uint64 // packets that delivered at least one new message first
	Duplicates   uint64 // packets whose messages the other line (or an earlier copy) delivered first, or that came after they were declared missing (a gap)
	OutOfOrder   uint64 // packets behind this line's own highest sequence number (reordered on the line, or sent again)
	LineGaps     uint64 // jumps in this line's own sequence numbers: loss on this line, or reordering (the overtaken packet then counts in OutOfOrder)
	Malformed    uint64 // packets rejected by moldudp64.Parse
	WrongSession uint64 // packets of another session
	Suspect      uint64 // packets dropped for jumping more than MaxJump ahead (see ArbiterConfig)
	// Contradicted: packets held ahead of the next expected sequence
	// number that this line brought, dropped undelivered because every
	// line that brought them went on below them for Grace or longer (see
	// Arbiter.contradicted): a corrupt or forged sequence number within
	// MaxJump. Counted in Packets and Messages when they arrived.
	Contradicted uint64
	// StaleEndOfSession: End of Session packets of the followed session
	// whose sequence number is behind what was already received (the next
	// expected, or the highest seen on any line): a late copy, a replay or
	// a forged packet. They do not end the session and are not counted in
	// Packets.
	StaleEndOfSession uint64
	// BeforeRestart: packets received before a sequence restart was
	// followed from 1 but read after it (a line whose receive queue was
	// behind): of the sequence that restarted, or the restarted one's
	// first numbers, recovered with its gap from 1. Dropped.
	BeforeRestart uint64
	Heartbeats    uint64
	moldudp64.ParseErrors
}

// ArbiterStats count the merged stream.
type ArbiterStats struct {
	Lines        [MaxLines]LineStats
	Delivered    uint64 // messages delivered in order
	Gaps         uint64 // ranges declared missing on every line
	GapMessages  uint64 // sequence numbers in those ranges
	Held         uint64 // packets held back waiting for a missing sequence number
	HeldMax      uint64 // high-water mark of packets held at once
	ForcedByFull uint64 // gaps declared early because the hold-back buffer was full
	EndOfSession uint64 // times the followed session announced its end (see Ended)
	// EndedJoin: the messages of a session joined after its end (its End of
	// Session packets the first the lines brought, nothing of it
	// delivered or held) that nothing was configured to fetch
	// (idleAfterEnd): not a gap, the handler idle until the next session.
	EndedJoin uint64
	// Recovery: ranges handed to the recovery source, filled by it (or by
	// late copies on the lines), failed (given up, or the spill overflowed:
	// declared), ended by a snapshot's freeze or a session change
	// (abandoned: the snapshot or the new session's rebuild covers them),
	// and spill overflows. Recoveries = filled + failed + abandoned, plus
	// the one in progress.
	Recoveries          uint64
	RecoveriesFilled    uint64
	RecoveriesFailed    uint64
	RecoveriesAbandoned uint64
	SpillOverflows      uint64
	SpillDropped        uint64 // oldest held packets dropped while frozen (re-requested after)
	FrozenTooLarge      uint64 // packets larger than a hold slot that arrived while frozen (re-requested after)
	RecoveredLate       uint64 // recovered packets whose messages were delivered already
	RecoveredMessages   uint64 // messages of recovered packets (re-request answers) delivered: into the range recovered, or past it when an answer brought them first
	RecoveredUnused     uint64 // messages of recovered packets not delivered: delivered already (a line, an earlier answer), held already, no room to hold, dropped with what was held
	LastGap             moldudp64.Range
	SessionChosen       bool
	SessionChanges      uint64 // a confirmed session replaced a silent or ended locked one (see session.go)
	Unconfirmed         uint64 // packets seen before any session was confirmed (stashed or dropped)
	// Regressions: times every live line went back to sequence numbers
	// behind the followed session's, and stayed there for LineTimeout with
	// nothing new delivered: a sequence restart under the same session
	// name (a protocol violation: a publisher restarted, or replays the
	// session). Nothing behind is applied, and Behind is set. Restarts:
	// times the lines had gone back to sequence number 1 and the restarted
	// sequence was then followed from 1 (restart), which clears Behind;
	// with HoldRestart, or lines that went back elsewhere (a replay of the
	// session's middle), Behind stays true until a line brings new
	// sequence numbers again (see regressed).
	Regressions uint64
	Restarts    uint64
	Behind      bool
}

// Arbiter merges the copies of one MoldUDP64 session arriving on redundant
// lines into one in-order message stream: the first copy of each sequence
// number wins, later copies are dropped and counted. A packet that arrives
// ahead of the expected sequence number is copied aside and held back while
// the other line may still deliver what is missing; when no live line can
// (every live line moved past it for longer than Grace, or Hold ran out, or
// the hold-back buffer is full), the range is declared a gap, reported, and
// the held packets are delivered. Messages are never delivered out of order.
//
// An Arbiter is used by one goroutine (the receive thread) and allocates
// nothing after NewArbiter.
type Arbiter struct {
	cfg     ArbiterConfig
	deliver Deliver
	// route: the Handler whose route deliver is (set by StartContext),
	// called directly, and in run to completion its routeInline (route
	// does not inline: cost 362, budget 80): through the method value, a
	// call a packet went into its wrapper (route-fm), from there into
	// route and from there into routeInline. nil: deliver is called.
	route *Handler
	onGap GapFunc

	// The packets handed to Deliver, by pointer, live here rather than
	// on the stack: a pointer passed to a func value escapes, and a
	// local would be moved to the heap (an allocation a datagram). pkt:
	// Offer's, parsed in place (Offer re-enters itself only after lock,
	// and returns then without looking at it again); held: drainAfter's,
	// each held packet it delivers; recPkt: OfferRecovered's.
	pkt, held, recPkt moldudp64.Packet

	session moldudp64.Session
	started bool
	next    uint64 // next expected sequence number (valid once started)
	// ended: an End of Session packet at or beyond everything received
	// announced the session's end, at endSeq (its sequence number, the
	// next the session would have sent), and no data came after it
	// (past endSeq: see withdraw).
	ended  bool
	endSeq uint64
	// endLines: the lines whose End of Session announced the end at
	// endSeq; per line, its stamp (endRx) and the line's highest before
	// it (endFrom). Such a line that brings the session's packets past
	// there, below endSeq, Grace or more later went on below the end it
	// announced: the end was not its sender's, and its announcement is
	// withdrawn, the end with the last one (wentBelowEnd).
	endLines uint8
	endRx    [MaxLines]int64
	endFrom  [MaxLines]uint64
	// idleAfterEnd: a join after the session's end is idle, not a gap,
	// when nothing would fetch the session (no snapshot source, and no
	// re-request of a late join's start): the recovery's, set as it is
	// wired (recovery.idleAfterEnd).
	idleAfterEnd bool
	gapSince     int64  // when we first knew of something beyond next (0: nothing)
	gapNext      uint64 // next when gapSince was taken
	// gapTo: how far the lines had shown the hole when its wait began
	// (maxHigh at gapSince): what lies beyond it was seen later, and
	// waits from then (see checkGap).
	gapTo uint64

	high    [MaxLines]uint64 // per line: sequence number after its highest packet
	lastRx  [MaxLines]int64  // per line: rx time of its last packet
	startRx int64            // rx time of the session's first packet
	suspect int              // consecutive packets that jumped more than MaxJump
	// staleEnd: the highest End of Session at or past next taken for
	// stale only for a packet held beyond it, and the lines that brought
	// it (see endBehindStray); 0: none.
	staleEnd      uint64
	staleEndLines uint8
	// pastRx: per line, the rx time of the packet that took it past the
	// next expected sequence number (a heartbeat, or a packet held
	// beyond it) from at or behind it: its wait by Grace starts there.
	pastRx [MaxLines]int64
	// behindPkt: per line, its packet count (LineStats.Packets) at its
	// last packet behind both the line's own highest and next: the line's
	// latest packet is such a one while it equals the count.
	// regressFrom/regressNext: since when every live line has brought only
	// such packets, and next then (see regressed).
	// behindMin: per line, the lowest sequence number of its packets
	// since the last that was not behind.
	behindPkt [MaxLines]uint64
	behindMin [MaxLines]uint64
	// behindNew: per line, a packet of its current streak behind brought
	// a message other than the one delivered at its sequence number
	// (differsEarly): a restart, even where its first packet was lost.
	behindNew [MaxLines]bool
	// early: a fingerprint of each of the first earlyMessages messages
	// delivered in this numbering, from earlyFrom on (earlyLen of them).
	earlyFrom   uint64
	earlyLen    int
	early       [earlyMessages]uint64
	regressFrom int64
	regressNext uint64
	// restartRx: after a restart, packets received before it are dropped
	// (LineStats.BeforeRestart) until every line brought one received
	// after it (restartPassed, a bit per line). restartHigh: each line's
	// highest sequence number of the old numbering (see oldNumbering).
	restartRx     int64
	restartPassed uint8
	restartHigh   [MaxLines]uint64
	// failSince: when Advance first saw the receiver fail with nothing
	// read, since the last packet or empty poll (0: not failing).
	failSince int64
	// drainedAt: the wall-clock time of the latest empty poll (Tick),
	// when every line was drained: how far the lines were read at least
	// (linesClock).
	drainedAt int64
	// checked: per line, the clock the latest look at the holes and
	// held packets (checkGap past the in-order exit) compared its waits
	// with, every deadline up to it passed then (math.MaxInt64: dead by
	// it, waited for no more); checkedNow: that look's now, which a
	// line's LineTimeout was compared with; 0: none since something was
	// offered or changed without one (see passed, NextDue). Set only
	// where something is held or missing, not on the in-order path.
	checked    [MaxLines]int64
	checkedNow int64
	// readRx: per line, the rx time of its latest datagram that is not a
	// packet of the followed session (see rejected), since its latest
	// packet of the session (0: none since); dropped with the session
	// (dropSession), a new one's taken from its candidate (lock).
	readRx [MaxLines]int64
	// where the last suspect packet ended
	suspectNext uint64
	// belowRx, belowSeq, belowEnd: per line, the stamp, the first
	// sequence number and the end (a heartbeat's or End of Session's
	// sequence number, both) of its latest packet that
	// started below the line's own highest: reordered on the line, or a
	// sign that the highest was a stray (see contradicted). Set only for
	// such packets, off the in-order path. belowPkt: the line's packet
	// count (LineStats.Packets) then: that packet is the line's latest
	// while it equals the count.
	belowRx  [MaxLines]int64
	belowSeq [MaxLines]uint64
	belowEnd [MaxLines]uint64
	belowPkt [MaxLines]uint64
	// The latest step of the wall clock back (clockBack): stepFrom, the
	// latest stamp read before it; stepBy, how far back it went (to
	// stepFrom-stepBy). stepLast: per line, its latest stamp before the
	// step, while the line may still bring stamps from before it (a queue
	// read behind); 0 once it brought one after it, or after an empty poll.
	stepFrom, stepBy int64
	stepLast         [MaxLines]int64

	onMissing  MissingFunc
	onNarrow   NarrowFunc
	onSession  SessionFunc
	onBehind   BehindFunc
	sess       sessions
	frozen     bool // delivery stopped: everything is held (snapshot recovery)
	repairing  bool // delivering what a recovery sent or what waited in the spill for it
	recovering bool
	recoverEnd uint64 // end of the range being recovered
	// waiting: drain left a packet held at next (undecided) since the
	// latest packet in order (see decide).
	waiting bool

	// startSession, startNext: a replay's start inside the session
	// (StartAt), for the next session followed if it is that one;
	// startTook: it started there.
	startSession moldudp64.Session
	startNext    uint64
	startTook    bool

	pend  pending
	Stats ArbiterStats
}

// NewArbiter returns an Arbiter delivering to deliver and reporting gaps to
// onGap (which may be nil).
func NewArbiter(cfg ArbiterConfig, deliver Deliver, onGap GapFunc) *Arbiter {
	if cfg.Lines <= 0 || cfg.Lines > MaxLines {
		cfg.Lines = MaxLines
	}
	if cfg.Grace <= 0 {
		cfg.Grace = 200 * time.Microsecond
	}
	if cfg.Hold <= 0 {
		cfg.Hold = defaultHold
	}
	if cfg.LineTimeout <= 0 {
		cfg.LineTimeout = time.Second
	}
	if cfg.MaxPending <= 0 {
		cfg.MaxPending = 8192
	}
	if cfg.SlotSize <= 0 {
		cfg.SlotSize = 2048
	}
	if cfg.MaxJump == 0 {
		cfg.MaxJump = 1 << 22
	}
	if cfg.SuspectConfirm <= 0 {
		cfg.SuspectConfirm = 3
	}
	if cfg.SessionConfirm <= 0 {
		cfg.SessionConfirm = defaultSessionConfirm
	}
	cfg.Spill = max(cfg.Spill, cfg.MaxPending)
	a := &Arbiter{cfg: cfg, deliver: deliver, onGap: onGap}
	a.pend.init(cfg.Spill, cfg.SlotSize)
	if cfg.Session == (moldudp64.Session{}) {
		a.sess.init(cfg.SessionConfirm, cfg.SlotSize)
	}
	if cfg.Session != (moldudp64.Session{}) {
		a.session = cfg.Session
	}
	return a
}

// Next returns the next expected sequence number (0 before the first packet).
func (a *Arbiter) Next() uint64 {
	if !a.started {
		return 0
	}
	return a.next
}

// Session returns the session being followed.
func (a *Arbiter) Session() moldudp64.Session { return a.session }

// Ended reports whether the session announced its end and everything up to
// it was delivered or declared missing. The end is announced by an End of
// Session packet whose sequence number is at or beyond everything received
// (the next expected and the highest seen on any line); an older one is
// stale (LineStats.StaleEndOfSession) and ignored. A later packet of the
// session on a line that brings messages past the end, not delivered or
// held yet, withdraws the announcement: the session went on. One that
// fills a gap before the end (the other line's copy of a packet the
// announcing line lost) does not: the End of Session said where the
// session ended, and what the lines bring below it is the session's tail.
// (Before, it withdrew it too, and when the other line had lost its End
// of Session packets nothing announced it again until the session's next
// repetition of its end, about a second later: a next session that
// confirmed meanwhile waited for the old one's silence, LineTimeout, and
// what it brought meanwhile was a gap: TestEndNotWithdrawnByFillBeforeIt.)
func (a *Arbiter) Ended() bool { return a.ended && a.pend.n == 0 && a.maxHigh() <= a.next }

// announceEnd notes the session's end announced at seq (an End of
// Session packet's sequence number) by line's packet stamped rx (line -1:
// by no line's packet, see endBehindStray).
func (a *Arbiter) announceEnd(seq uint64, line int, rx int64) {
	if !a.ended || seq > a.endSeq {
		a.endSeq, a.endLines = seq, 0
	}
	if line >= 0 && seq == a.endSeq && a.endLines&(1<<line) == 0 {
		a.endLines |= 1 << line
		a.endRx[line], a.endFrom[line] = rx, a.high[line]
	}
	a.ended = true
}

// wentBelowEnd withdraws line's announcement of the end when line, one
// that announced it, brings a packet of the session at seq, past where
// the line was when it announced it and below the end, Grace or more
// after its End of Session: the line's sender went on below the end,
// which was not its (a forged or corrupt End of Session ahead); the end
// is withdrawn when no line's announcement is left. Kept, such an end let
// a stray session confirmed since take over a live feed the moment
// delivery reached it (Ended, with the end at a packet's boundary), its
// later messages then wrong_session (TestForgedEndAheadWithdrawnByItsLine).
// A line's reorder within Grace, its packet at where it was (its own
// hole filled: its last packet reordered behind its End of Session), and
// a stale copy of a packet from before its end, leave it. Called only
// for a packet below its line's highest.
func (a *Arbiter) wentBelowEnd(line int, seq uint64, rx int64) {
	if a.ended && a.endLines&(1<<line) != 0 && seq > a.endFrom[line] && seq < a.endSeq && rx-a.endRx[line] >= int64(a.cfg.Grace) {
		a.endLines &^= 1 << line
		if a.endLines == 0 {
			a.ended = false
		}
	}
}

// withdraw withdraws the end announced when a packet of the session
// ending at end (its next sequence number) brings messages past it: the
// session went on. A packet below it fills a gap before the end (Ended).
func (a *Arbiter) withdraw(end uint64) {
	if end > a.endSeq {
		a.ended = false
	}
}

// EndAnnounced reports whether the followed session announced its end (an
// End of Session packet not withdrawn since by data past it on a line),
// whether or not everything before it was delivered: Ended is that too.
// Announced and not Ended, the handler is still fetching what came before
// the end (a join after the end re-requesting the whole session).
func (a *Arbiter) EndAnnounced() bool { return a.ended }

// Pending returns the number of packets held back.
func (a *Arbiter) Pending() int { return a.pend.n }

// Offer hands the Arbiter one datagram received on line at rxTime (ns).
func (a *Arbiter) Offer(line int, data []byte, rxTime int64) {
	ls := &a.Stats.Lines[line]
	p := &a.pkt // parsed in place: a returned Packet is copied twice (ParseInto)
	if err := moldudp64.ParseInto(p, data); err != nil {
		ls.Malformed++
		ls.ParseErrors.Count(err)
		a.rejected(line, rxTime)
		return
	}
	if p.Session != a.session || !a.started {
		if a.cfg.Session != (moldudp64.Session{}) {
			if p.Session != a.cfg.Session {
				ls.WrongSession++
				a.rejected(line, rxTime)
				return
			}
			a.session, a.started, a.next, a.startRx = p.Session, true, 1, rxTime
			a.Stats.SessionChosen = true
			a.startAt(rxTime)
		} else {
			// No configured session: a session is followed once it is
			// confirmed (see session.go).
			if a.started {
				if p.EndOfSession() {
					if idx := a.confirmedCandidate(p.Session, rxTime); idx >= 0 && (a.Ended() || a.silent(rxTime)) {
						// A session that confirmed by its data while the
						// followed one was neither ended nor silent, and
						// has ended since (shorter than LineTimeout):
						// followed now, its end with it.
						a.lock(idx, rxTime)
						a.Offer(line, data, rxTime)
						return
					}
					// Another session's end (the one this one replaced
					// repeats it "for a while"): an ended session is
					// never a candidate to switch to, even when the
					// followed one goes silent.
					ls.WrongSession++
					a.rejected(line, rxTime)
					return
				}
				ls.WrongSession++
			} else {
				a.Stats.Unconfirmed++
			}
			// A confirmed session replaces the followed one once that
			// one is silent, or has ended: its End of Session packets go
			// on "for a while" and keep it from being silent. Ended, not
			// just announced: what is missing before the end (a recovery
			// in progress, packets held back) is repaired or declared
			// first, so the old session's tail is never silently dropped
			// (see session.go).
			idx, ok, stashed := a.candidate(line, data, *p, rxTime)
			if ok && (!a.started || a.Ended() || a.silent(rxTime) || a.endsBehindStrays(idx)) {
				a.lock(idx, rxTime)
				if !stashed {
					// Confirmed earlier, waiting for the old session: the
					// stash was full, so this packet was not replayed.
					a.Offer(line, data, rxTime)
				}
				return
			}
			a.rejected(line, rxTime)
			return
		}
	}
	if a.restartRx != 0 {
		// A line's packets come in the order received: after one
		// received at or after the restart (the restart's own, or one
		// that passed it), a packet stamped before the restart means
		// the wall clock stepped back, not a packet of the old sequence,
		// and it is taken. (A line down since before the restart keeps
		// the cut for the others until a drained Tick.)
		stepped := a.lastRx[line] >= a.restartRx && rxTime < a.lastRx[line]-int64(a.cfg.Hold)
		if a.restartPassed&(1<<line) == 0 && (rxTime < a.restartRx && !stepped || a.oldNumbering(line, p.Seq, rxTime)) {
			// Not rejected: stamped before the restart, it says nothing
			// of the restarted sequence's waits, and a queue that far
			// behind would pass for a step of the clock (checkGap).
			ls.BeforeRestart++
			return
		}
		if a.restartPassed |= 1 << line; a.restartPassed == 1<<a.cfg.Lines-1 {
			a.restartRx = 0 // every line is past the restart
		}
	}
	if p.EndOfSession() && p.Seq < max(a.next, a.maxHigh()) {
		// It says the session ended before what was received already:
		// a late copy, a replay or a forgery. It changes nothing (not
		// even the line's liveness), or it could end a live session.
		if p.Seq >= a.next && p.Seq < a.high[line] {
			// Below its own line's highest, not behind next: the line's
			// sender is at p.Seq, and a packet of the line held beyond it
			// may be a stray (see contradicted), which this contradicts
			// as the line's next packet would. Before, nothing did: the
			// stray dropped later, the hole before the end, lost on both
			// lines, was never declared (TestArbiterLinesModel, seed 1348).
			a.belowRx[line], a.belowSeq[line], a.belowEnd[line], a.belowPkt[line] = rxTime, p.Seq, p.Seq, ls.Packets
			a.checkedNow = 0 // a held packet may be contradicted now (NextDue)
		}
		if p.Seq >= a.next {
			// Beyond what was delivered, below a packet held: kept,
			// should that packet be dropped as a stray (endBehindStray).
			if p.Seq > a.staleEnd {
				a.staleEnd, a.staleEndLines = p.Seq, 0
				// Only packets after it confirm the next session, as
				// after an end announced (see endsBehindStrays).
				a.sess.recount()
			}
			if p.Seq == a.staleEnd {
				a.staleEndLines |= 1 << line
			}
		}
		ls.StaleEndOfSession++
		a.rejected(line, rxTime)
		return
	}
	if p.Seq > a.next && p.Seq-a.next > a.cfg.MaxJump {
		// Only jumps that agree with each other (one sequence that moved
		// on) confirm; random sequence numbers never do. Nor do copies of
		// one data packet: only one that brings sequence numbers past the
		// last suspect one's counts towards confirming; a copy (the other
		// line's, or the same datagram sent again) is dropped, counted,
		// and leaves the count as it is. Before, one forged data packet
		// seen three times (on both lines and once more) confirmed its
		// jump: everything up to it declared a gap (2^40 sequence numbers
		// for one 2^40 ahead), and the real feed then dropped as behind.
		// Heartbeats and End of Session packets still confirm by
		// repetition: an idle feed joined late (a restart after hours)
		// brings nothing else, the same number once a second per line.
		if a.suspect > 0 && outsideWindow(*p, a.suspectNext) {
			a.suspect = 0
		}
		if a.suspect == 0 || p.Next() > a.suspectNext || p.Messages() == 0 {
			a.suspectNext = p.Next()
			a.suspect++
		}
		if a.suspect < a.cfg.SuspectConfirm {
			ls.Suspect++
			a.rejected(line, rxTime)
			return
		}
	} else {
		a.suspect = 0
	}
	ls.Packets++
	ls.Bytes += uint64(len(data))
	// The line's clock is this packet's stamp again: a rejected
	// datagram's before it (readRx) is behind it, or from before a step
	// of the wall clock back, when it would end every wait for the line
	// for as long as the step.
	a.lastRx[line], a.readRx[line] = rxTime, 0
	a.failSince = 0 // a packet of the followed session was read: its stamp is a line's clock again

	if p.Heartbeat() || p.EndOfSession() {
		if p.Heartbeat() {
			ls.Heartbeats++
		} else {
			if !a.ended {
				a.Stats.EndOfSession++
				// Only packets after the end confirm the next session:
				// a run confirmed earlier (a stray sender, hours ago)
				// must not take over at once (session.go). Stashes
				// stay: a new session may have started before the end.
				a.sess.recount()
			}
			a.announceEnd(p.Seq, line, rxTime)
		}
		if p.Seq > a.high[line] && a.belowPkt[line] == ls.Packets-1 {
			a.jumpedPast(line)
		}
		// Its sequence number is the next one the line would send.
		if p.Seq > a.next && a.high[line] <= a.next {
			a.pastRx[line] = rxTime
		}
		if p.Seq > a.high[line] {
			if a.high[line] != 0 && p.Seq > a.high[line] {
				ls.LineGaps++
			}
			a.high[line] = p.Seq
		} else if p.Seq < a.high[line] {
			a.wentBelowEnd(line, p.Seq, rxTime) // a heartbeat: an End of Session this low was stale
			a.belowRx[line], a.belowSeq[line], a.belowEnd[line], a.belowPkt[line] = rxTime, p.Seq, p.Seq, ls.Packets
			a.checkedNow = 0 // a held packet may be contradicted now (NextDue)
			if p.Seq < a.next {
				a.regressed(line, rxTime, *p, p.Seq, p.Seq)
			}
		}
		a.checkGap(rxTime, false)
		return
	}

	end := p.Next()
	n := uint64(p.Messages())
	ls.Messages += n
	high := a.high[line] // before this packet
	switch {
	case a.high[line] == 0:
	case p.Seq < a.high[line]:
		ls.OutOfOrder++
		a.wentBelowEnd(line, p.Seq, rxTime)
		if a.heldOwnCopy(line, data, p.Seq, end) {
			// The line sends again what it brought (a stale copy): it
			// says nothing of where the line is, and taken for its
			// latest packet it had every held packet above it, brought
			// Grace or more before, dropped as contradicted (the soak's
			// seed 20120: 610 a line while a range was re-requested).
			break
		}
		a.belowRx[line], a.belowSeq[line], a.belowEnd[line], a.belowPkt[line] = rxTime, p.Seq, end, ls.Packets
		a.checkedNow = 0 // a held packet may be contradicted now, and no check follows a duplicate (NextDue)
	case p.Seq > a.high[line]:
		ls.LineGaps++
		if a.belowPkt[line] == ls.Packets-1 {
			// Its latest packet went below its highest: see jumpedPast.
			a.jumpedPast(line)
			high = a.high[line]
		}
	}
	if end > a.high[line] {
		a.high[line] = end
	}

	switch {
	case end <= a.next:
		ls.Duplicates++
		if end < a.high[line] {
			// Behind its own line too: not the slower line's copy.
			a.regressed(line, rxTime, *p, p.Seq, end)
		}
	case p.Seq <= a.next && !a.frozen:
		ls.Won++
		a.withdraw(end) // new data: the session did not end, if past it
		if a.waiting {
			a.decide(p)
		}
		a.emit(p, rxTime, false)
		if a.pend.n > 0 { // drainAfter's loop, without its call when nothing is held
			a.drainAfter(p)
		}
		if a.inOrder() {
			a.gapSince = 0 // checkGap's first exit without its call: every packet delivered in order
		} else {
			a.checkGap(rxTime, false)
		}
	default:
		if high <= a.next {
			a.pastRx[line] = rxTime // moved past next with this packet
		}
		switch a.hold(data, p, rxTime, line) {
		case holdDuplicate:
			ls.Duplicates++ // the other line's copy is held already
		case holdOK:
			ls.Won++ // first to bring these sequence numbers (held back)
			a.withdraw(end)
		case holdFull:
			ls.Won++
			a.withdraw(end)
			if a.handOver(line, data, *p, rxTime) {
				break // held in the spill while the recovery source fills the range
			}
			if a.recovering {
				// The spill is full: give the recovery up rather than
				// lose what arrives.
				a.recovering = false
				a.Stats.SpillOverflows++
				a.Stats.RecoveriesFailed++
			}
			// Hold-back impossible (buffer full or packet too large):
			// declare the gap up to this packet and deliver it now.
			a.Stats.ForcedByFull++
			for a.next < p.Seq {
				a.declareGap(a.pend.minSeq(p.Seq), rxTime)
				if a.frozen {
					break // see checkGap
				}
				a.drain()
				if a.pend.n > 0 && a.pend.front().seq <= a.next {
					// Left held by drain (undecided): no room to wait.
					a.dropContradicted(0)
				}
			}
			if a.frozen {
				if a.hold(data, p, rxTime, line) == holdFull { // now with the spill's room
					a.Stats.FrozenTooLarge++ // re-requested after Unfreeze, as a gap
				}
			} else if end > a.next {
				a.emit(p, rxTime, false)
				a.drain()
			}
		}
		a.checkGap(rxTime, false)
	}
}

// heldOwnCopy reports whether the data packet data, of [seq, end), below
// line's highest, is a copy of a packet held that line brought already:
// the same numbers and bytes.
func (a *Arbiter) heldOwnCopy(line int, data []byte, seq, end uint64) bool {
	k := a.pend.find(seq)
	if k < 0 {
		return false
	}
	e := a.pend.at(k)
	return e.end == end && e.lineRx[line] != 0 && bytes.Equal(a.pend.bytes(e), data)
}

// emit delivers the part of p at or after next; recovered: p came from a
// recovery source. Callers ensure p.Seq <= a.next < p.Next().
func (a *Arbiter) emit(p *moldudp64.Packet, rxTime int64, recovered bool) {
	skip := int(a.next - p.Seq)
	end := p.Next()
	a.Stats.Delivered += end - a.next
	if a.earlyLen < earlyMessages {
		a.noteEarly(p, skip)
	}
	if recovered {
		a.Stats.RecoveredMessages += end - a.next
		a.Stats.RecoveredUnused += uint64(skip)
	}
	a.next = end
	if h := a.route; h != nil {
		if s := h.inline; s != nil {
			h.routeInline(s, p, skip, rxTime) // route's run-to-completion branch
		} else {
			h.route(p, skip, rxTime)
		}
		return
	}
	a.deliver(p, skip, rxTime)
}

// drain delivers held-back packets that have become in order.
func (a *Arbiter) drain() { a.drainAfter(nil) }

// sameMessages reports whether the held packet e carries the messages it
// shares with p (from e's first number to p's end) as p does.
func (a *Arbiter) sameMessages(p *moldudp64.Packet, e *pendEntry) bool {
	q, err := moldudp64.Parse(a.pend.bytes(e))
	if err != nil {
		return false
	}
	pi, qi := p.Iter(), q.Iter()
	pi.Skip(int(e.seq - p.Seq))
	for m, ok := pi.Next(); ok; m, ok = pi.Next() {
		n, ok := qi.Next()
		if !ok || !bytes.Equal(m, n) {
			return false
		}
	}
	return true
}

// drainAfter is drain after the packet p, a line's or a recovery
// source's, was delivered in order (nil: none). A packet held from the
// lines that starts strictly inside p and goes on past it (a line packing
// the messages its own way) must carry the messages they share as p does:
// one that does not is corrupt, its number moved (the source that
// delivered goes on with the numbers past it), and is dropped as
// contradicted. Before, its messages past p were delivered as those
// numbers' (a copy of line A's packet of 5 and 6 numbered 6, 5 ms before
// line B's 5 and 6: 'message carries seq 6, iterator says 7'). Compared
// only for a packet held across next: nothing on the in-order path.
func (a *Arbiter) drainAfter(p *moldudp64.Packet) {
	for a.pend.n > 0 {
		e := a.pend.front()
		if e.seq > a.next {
			return
		}
		if e.end <= a.next {
			a.reached(e)
			a.popHeld()
			continue
		}
		if p != nil && p.Seq < e.seq && e.seq < p.Next() && !e.recovered && !a.sameMessages(p, e) {
			a.dropContradicted(0)
			continue
		}
		if a.wentBelowBefore(e, int64(a.cfg.Grace), -1, true) {
			// Contradicted, or so but for a packet of its lines held
			// above it (see unsure).
			if a.undecided(e) {
				a.waiting = true
				return // its line's next packet tells (see unsure)
			}
			a.dropContradicted(0)
			continue
		}
		if a.pausedAt(e) {
			a.waiting = true
			return // the next packet at its numbers, or its line's, tells (see paused)
		}
		a.reached(e)
		q := &a.held // not Offer's packet: p may be it
		if err := moldudp64.ParseInto(q, a.pend.bytes(e)); err != nil {
			*q = moldudp64.Packet{} // as Parse returned (never: it was parsed when held)
		}
		a.emit(q, e.rxTime, e.recovered)
		a.pend.popFront()
	}
}

// reached is told that the held packet e leaves the hold in order,
// delivered or covered by another source's copy: each line that brought it
// whose latest packet went below its own highest and ends exactly at e's
// first number (in order towards it: undecided, catchingUp) has reached
// it, and is taken as at e's end from then on, as if it had just brought
// e, its own packet reordered ahead of the ones before it. The line's next
// held packet, where it reordered more than one, is then undecided in
// turn (decided by the line's next packet) rather than contradicted by
// its latest, which ended below it. Before, a line that brought 12 and 13
// before 10 and 11 (by Grace or more) had 13 dropped as contradicted when
// the other line's copy delivered 12 first (its copy held with the line's
// 12, or offered while that waited for the line's next packet): a gap where
// the other line lost 13 (TestArbiterLineReorderTwoOtherLineCopy). A few
// comparisons per held packet delivered; nothing on the in-order path.
func (a *Arbiter) reached(e *pendEntry) {
	for i := 0; i < a.cfg.Lines; i++ {
		if e.lineRx[i] != 0 && a.belowEnd[i] == e.seq && a.belowSeq[i] < e.seq && a.belowPkt[i] == a.Stats.Lines[i].Packets {
			a.belowSeq[i], a.belowEnd[i] = e.seq, e.end
		}
	}
}

// maxHigh is the highest of the lines' high. Unrolled for MaxLines 2
// (cfg.Lines is 1 or 2, NewArbiter): the loop's bound, bounds check and
// branch cost twice as much, and every round of the receive loop asks
// (Tick, NextDue) as does every packet delivered (checkGap).
func (a *Arbiter) maxHigh() uint64 {
	m := a.high[0]
	if a.cfg.Lines > 1 {
		m = max(m, a.high[1])
	}
	return m
}

// maxHigh is unrolled for two lines: a MaxLines other than 2 does not
// compile until it is rewritten.
const (
	_ = uint(MaxLines - 2)
	_ = uint(2 - MaxLines)
)
