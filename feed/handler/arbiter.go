package handler

import (
	"bytes"
	"math"
	"sort"
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
// index skip on, whose first has sequence number p.Seq+skip.
type Deliver func(p moldudp64.Packet, skip int, rxTime int64)

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
	onGap   GapFunc

	session moldudp64.Session
	started bool
	next    uint64 // next expected sequence number (valid once started)
	// ended: an End of Session packet at or beyond everything received
	// announced the session's end, and no new data came after it.
	ended bool
	// idleAfterEnd: a join after the session's end is idle, not a gap,
	// when nothing would fetch the session (no snapshot source, and no
	// re-request of a late join's start): the recovery's, set as it is
	// wired (recovery.idleAfterEnd).
	idleAfterEnd bool
	gapSince     int64  // when we first knew of something beyond next (0: nothing)
	gapNext      uint64 // next when gapSince was taken

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
	// drainedAt: the wall-clock time of the latest empty poll (Tick).
	drainedAt int64
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

// SetMissing installs the recovery source's MissingFunc (nil: none, every
// gap is declared).
func (a *Arbiter) SetMissing(fn MissingFunc) { a.onMissing = fn }

// NarrowFunc is told that the range being recovered now ends at end,
// before the end it was handed with (MissingFunc) or last told: it was
// asked up to a held packet that its lines have contradicted since (see
// strayEnd), and what lay between end and there was never missing. The
// range is filled once next reaches end, possibly at once (end is next
// already): nothing past end is to be asked for any more.
type NarrowFunc func(end uint64)

// SetNarrowed installs the recovery source's NarrowFunc (nil: none).
func (a *Arbiter) SetNarrowed(fn NarrowFunc) { a.onNarrow = fn }

// Recovering returns the range a recovery source is filling, if any.
func (a *Arbiter) Recovering() (moldudp64.Range, bool) {
	if !a.recovering {
		return moldudp64.Range{}, false
	}
	return moldudp64.Range{First: a.next, Count: a.recoverEnd - a.next}, true
}

// OfferRecovered hands the Arbiter a packet of the session from a recovery
// source; the caller parsed it and checked its session. Messages already
// delivered are dropped (counted as RecoveredLate when nothing is new).
// dropped reports that it brought numbers ahead of next the Arbiter had
// no room to hold (the spill full, or the packet larger than a slot):
// they are still missing, asked again by the recovery source; the
// capture must not count them filled (capture.Capture.RecoveredDropped).
func (a *Arbiter) OfferRecovered(data []byte, p moldudp64.Packet, rxTime int64) (dropped bool) {
	if !a.started || p.Session != a.session || p.Messages() == 0 {
		a.Stats.RecoveredUnused += uint64(p.Messages())
		return false
	}
	switch end := p.Next(); {
	case end <= a.next:
		a.Stats.RecoveredLate++
		a.Stats.RecoveredUnused += uint64(p.Messages())
		return false
	case p.Seq <= a.next && !a.frozen:
		a.repairing = true
		if a.waiting {
			a.decide(p)
		}
		a.emit(p, rxTime, true)
		a.drainAfter(&p)
		a.repairing = false
	default:
		// Ahead of next, or frozen (a late answer while a snapshot is
		// fetched: held with the lines' packets until Unfreeze).
		if r := a.hold(data, p, rxTime, fromRecovery); r != holdOK {
			// Full (asked again later) or held already (a line's copy,
			// or this answer's).
			a.Stats.RecoveredUnused += uint64(p.Messages())
			dropped = r == holdFull
		}
	}
	a.checkGap(rxTime, false)
	return dropped
}

// Freeze stops delivery while a snapshot is fetched: every new packet is
// held in the spill (when it is full the oldest held packet is dropped and
// counted in SpillDropped; the range is asked for again after Unfreeze).
// A recovery in progress is dropped.
func (a *Arbiter) Freeze() {
	a.frozen = true
	if a.recovering {
		a.recovering = false
		a.Stats.RecoveriesAbandoned++
	}
}

// Unfreeze resumes delivery. A next other than 0 moves the next expected
// sequence number there (the snapshot's): held messages before it are
// dropped, and a hole between it and the first held packet is missing.
func (a *Arbiter) Unfreeze(next uint64) {
	a.frozen = false
	if next != 0 {
		a.started = true
		a.next = next
	}
	a.repairing = true
	a.drain()
	a.repairing = false
	a.gapSince = 0
	if a.pend.n > 0 {
		a.gapSince = a.pend.front().rxTime
	}
}

// Repairing reports, to the Deliver func, whether the packet it is given
// was sent by a recovery source or waited in the spill for one (delivered
// by OfferRecovered or Unfreeze): its latency is the repair's, not the
// live path's.
func (a *Arbiter) Repairing() bool { return a.repairing }

// Frozen reports whether delivery is stopped (Freeze).
func (a *Arbiter) Frozen() bool { return a.frozen }

// Abandon gives up the range being recovered: it is declared a gap (the
// books flagged) and what was held behind it is delivered, unless the gap
// froze delivery for a snapshot (see checkGap).
func (a *Arbiter) Abandon(now int64) {
	if !a.recovering {
		return
	}
	a.recovering = false
	a.Stats.RecoveriesFailed++
	a.declareGap(a.pend.minSeq(a.recoverEnd), now)
	if a.frozen {
		// A guard, not reached: Freeze ends a re-request in progress
		// and checkGap starts none while frozen (see checkGap and
		// TestArbiterAbandonAfterFreeze).
		return
	}
	a.goOn(now)
}

// goOn delivers, at now, what is held past a hole just declared (Abandon,
// StartAt) and waits for the next hole from the first packet still held.
// By the lines' own clocks, not idle: the hole's declaring says nothing
// of the lines' queues, and a line read behind may still hold the next
// hole's copy (an empty poll's Tick then releases it).
func (a *Arbiter) goOn(now int64) {
	a.drain()
	a.gapSince = 0
	if a.pend.n > 0 {
		a.gapSince = a.pend.front().rxTime
	}
	a.checkGap(now, false)
}

// StartAt has the Arbiter follow session s, once it starts following it,
// from sequence number next rather than 1: what came before is declared
// missing at once, one gap (a replay of a capture file that starts
// inside a range the handler re-requested: the files before held what
// came before it, capture.RerequestAgain). Following s already, with
// nothing delivered nor declared yet (the packets held, the start's hole
// not yet due), it declares that hole now, up to next or the first packet
// held below it (those delivered): a file whose hole before a range
// re-requested in it came in the file before. s zero: the session
// followed, or the first one followed. ok reports that it starts there,
// or will once it follows s; not when the Arbiter went on already, or
// follows another session.
func (a *Arbiter) StartAt(s moldudp64.Session, next uint64, now int64) (ok bool) {
	if !a.started {
		a.startSession, a.startNext = s, next
		return true
	}
	if a.session != s && s != (moldudp64.Session{}) || a.next != 1 || a.Stats.Delivered != 0 || a.Stats.Gaps != 0 || a.recovering || a.frozen {
		return false
	}
	a.declareGap(a.pend.minSeq(next), now)
	a.startTook = true
	a.goOn(now)
	return true
}

// startAt moves a session just followed from 1 to StartAt's number, when
// it is StartAt's session; once.
func (a *Arbiter) startAt(now int64) {
	if a.startNext > 1 && (a.session == a.startSession || a.startSession == moldudp64.Session{}) {
		a.declareGap(a.startNext, now)
		a.startTook = true
	}
	a.startNext = 0
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
// session on a line that brings messages not delivered or held yet
// withdraws the announcement: the session went on (a fill of a gap before
// the end, from the other line, looks the same and withdraws it too; the
// other line's copy of the End of Session packet, or the next repetition,
// announces it again).
func (a *Arbiter) Ended() bool { return a.ended && a.pend.n == 0 && a.maxHigh() <= a.next }

// EndAnnounced reports whether the followed session announced its end (an
// End of Session packet not withdrawn since by new data on a line), whether
// or not everything before it was delivered: Ended is that too. Announced
// and not Ended, the handler is still fetching what came before the end
// (a join after the end re-requesting the whole session).
func (a *Arbiter) EndAnnounced() bool { return a.ended }

// Pending returns the number of packets held back.
func (a *Arbiter) Pending() int { return a.pend.n }

// Offer hands the Arbiter one datagram received on line at rxTime (ns).
func (a *Arbiter) Offer(line int, data []byte, rxTime int64) {
	ls := &a.Stats.Lines[line]
	p, err := moldudp64.Parse(data)
	if err != nil {
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
				ls.WrongSession++
				if p.EndOfSession() {
					// Another session's end (the one this one replaced
					// repeats it "for a while"): an ended session is
					// never a candidate to switch to, even when the
					// followed one goes silent.
					a.rejected(line, rxTime)
					return
				}
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
			idx, ok, stashed := a.candidate(line, data, p, rxTime)
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
		if a.suspect > 0 && outsideWindow(p, a.suspectNext) {
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
			a.ended = true
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
			a.belowRx[line], a.belowSeq[line], a.belowEnd[line], a.belowPkt[line] = rxTime, p.Seq, p.Seq, ls.Packets
			if p.Seq < a.next {
				a.regressed(line, rxTime, p, p.Seq, p.Seq)
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
		a.belowRx[line], a.belowSeq[line], a.belowEnd[line], a.belowPkt[line] = rxTime, p.Seq, end, ls.Packets
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
			a.regressed(line, rxTime, p, p.Seq, end)
		}
	case p.Seq <= a.next && !a.frozen:
		ls.Won++
		a.ended = false // new data: the session did not end
		if a.waiting {
			a.decide(p)
		}
		a.emit(p, rxTime, false)
		a.drainAfter(&p)
		a.checkGap(rxTime, false)
	default:
		if high <= a.next {
			a.pastRx[line] = rxTime // moved past next with this packet
		}
		switch a.hold(data, p, rxTime, line) {
		case holdDuplicate:
			ls.Duplicates++ // the other line's copy is held already
		case holdOK:
			ls.Won++ // first to bring these sequence numbers (held back)
			a.ended = false
		case holdFull:
			ls.Won++
			a.ended = false
			if a.handOver(line, data, p, rxTime) {
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

// regressed is told that line brought a packet behind both next and the
// line's own highest sequence number (seq: its first, end: the one after
// it): a packet the line reordered, or its sequence numbers went back.
// When every live line's latest packet was such a one, and next did not
// move for LineTimeout since they first were, the session's sequence
// numbers went back under the same name: counted once in Regressions, and
// Behind set. If they went back to 1 (backToStart: a restart, not a replay
// of the session's middle) the restarted sequence is followed from 1
// (restart), unless HoldRestart. It runs only on such
// packets, never for the in-order copies of the slower line. Packet
// counts, not receive times, tell a line's latest packet: a batch may
// stamp several alike.
func (a *Arbiter) regressed(line int, rxTime int64, p moldudp64.Packet, seq, end uint64) {
	if a.regressFrom != 0 && a.steppedBack(a.regressFrom, rxTime) {
		// The wall clock stepped back since the spell began (by more
		// than a live line can lag behind another): the spell counts
		// again from now, or it would last as long as the step, with
		// the restarted sequence dropped as behind meanwhile.
		a.clockBack(rxTime)
		a.regressFrom = rxTime
	}
	n := a.Stats.Lines[line].Packets
	streak := a.behindPkt[line] == n-1 // the line's previous packet was behind too
	a.behindPkt[line] = n
	if !streak || seq < a.behindMin[line] {
		a.behindMin[line] = seq
	}
	if !streak {
		a.behindNew[line] = false
	}
	if a.differsEarly(p) {
		a.behindNew[line] = true
	}
	for i := 0; i < a.cfg.Lines; i++ {
		// Live: its last packet within LineTimeout of this one, either
		// way. One stamped LineTimeout or more after it was received
		// before a step of the wall clock back and nothing came since (a
		// line down), or is read that far ahead: not waited for, as in
		// checkGap, or it would hold the spell for as long as the step.
		if rxTime-a.lastRx[i] < int64(a.cfg.LineTimeout) && !a.steppedBack(a.lastRx[i], rxTime) && a.behindPkt[i] != a.Stats.Lines[i].Packets {
			a.regressFrom = 0 // a live line is not behind
			return
		}
	}
	if a.regressFrom == 0 || a.regressNext != a.next || !streak {
		// Start (again): a line that brought a packet not behind since
		// restarts the spell, or two stray late copies an idle hour apart
		// would make one.
		a.regressFrom, a.regressNext = rxTime, a.next
		return
	}
	if rxTime-a.regressFrom < int64(a.cfg.LineTimeout) {
		return
	}
	held := !a.Stats.Behind
	if held {
		a.Stats.Regressions++
		a.Stats.Behind = true
	}
	if !a.cfg.HoldRestart && a.backToStart() {
		a.restart(line, rxTime, end)
	} else if held && a.onBehind != nil {
		a.onBehind(a.next, rxTime)
	}
}

// BehindFunc is told, at now, that the Arbiter holds at next behind lines
// that went back to sequence numbers it delivered (Behind set, no
// restart followed: HoldRestart, or not back to 1), until they bring
// next; and, with next 0, that a session change or restart forgot it.
type BehindFunc func(next uint64, now int64)

// SetBehindFunc installs the BehindFunc (nil: none): the capture's, which
// says the hold again at the start of a file opened during it.
func (a *Arbiter) SetBehindFunc(fn BehindFunc) { a.onBehind = fn }

// earlyMessages is how many of a numbering's first messages the Arbiter
// keeps a fingerprint of (noteEarly). A line whose sequence numbers went
// back and whose packets bring other messages at those numbers than were
// delivered there restarted its numbering (behindNew), even when the
// restart's first packet was lost on both lines, where a replay of the
// numbering's start from its second packet has the same sequence numbers.
const earlyMessages = 64

// noteEarly keeps the fingerprints of the messages of p from skip on while
// fewer than earlyMessages are kept, in sequence (a numbering joined late
// starts where it was joined).
func (a *Arbiter) noteEarly(p moldudp64.Packet, skip int) {
	it := p.Iter()
	it.Skip(skip)
	for msg, ok := it.Next(); ok && a.earlyLen < earlyMessages; msg, ok = it.Next() {
		if a.earlyLen == 0 {
			a.earlyFrom = it.Seq()
		}
		if it.Seq() != a.earlyFrom+uint64(a.earlyLen) {
			return
		}
		a.early[a.earlyLen] = fingerprint(msg)
		a.earlyLen++
	}
}

// differsEarly reports whether p brings, at a sequence number of the kept
// fingerprints, a message other than the one delivered there.
func (a *Arbiter) differsEarly(p moldudp64.Packet) bool {
	end := a.earlyFrom + uint64(a.earlyLen)
	if a.earlyLen == 0 || p.Seq >= end || p.Next() <= a.earlyFrom {
		return false
	}
	it := p.Iter()
	for msg, ok := it.Next(); ok && it.Seq() < end; msg, ok = it.Next() {
		if s := it.Seq(); s >= a.earlyFrom && fingerprint(msg) != a.early[s-a.earlyFrom] {
			return true
		}
	}
	return false
}

// fingerprint is the 64-bit FNV-1a hash of msg.
func fingerprint(msg []byte) uint64 {
	h := uint64(14695981039346656037)
	for _, b := range msg {
		h ^= uint64(b)
		h *= 1099511628211
	}
	return h
}

// backToStart reports whether a line whose latest packets are behind went
// back to sequence number 1 with them (a restart, not a replay of the
// session's middle).
func (a *Arbiter) backToStart() bool {
	for i := 0; i < a.cfg.Lines; i++ {
		if p := a.Stats.Lines[i].Packets; p != 0 && a.behindPkt[i] == p && (a.behindMin[i] <= 1 || a.behindNew[i]) {
			return true
		}
	}
	return false
}

// restart follows the locked session's restarted sequence from 1: what
// the old sequence had not delivered is dropped (as at a session change),
// and the SessionFunc is told of a change to the same session, so the
// books are emptied and rebuilt. What the restarted sequence brought
// before this (dropped as behind while the restart was confirmed) is a
// gap from 1, up to end on line, which is live: recovered like any gap.
// A line whose receive queue was behind may still hold packets of the
// old sequence, received before now: they are dropped (restartRx).
func (a *Arbiter) restart(line int, rxTime int64, end uint64) {
	a.restartHigh = a.high // dropSession clears high
	a.dropSession()
	a.Stats.Restarts++
	a.restartRx, a.restartPassed = rxTime, 0
	a.next, a.startRx = 1, rxTime
	a.high[line], a.lastRx[line], a.pastRx[line] = end, rxTime, rxTime
	if a.onSession != nil {
		a.onSession(a.session, a.session)
	}
}

// oldNumbering reports whether seq, on a line that has not passed the
// restart, read at rxTime, continues the line's old numbering although it
// was stamped after the restart. A receive stamp is the time a packet was
// read, not received, when the kernel gave none (AF_XDP on a driver
// without metadata: xdp_no_meta), so a queue that was behind at the
// restart is read with stamps after it. Such a packet is at or past where
// the line was before the restart (less a reorder window), which is past
// everything the restarted numbering brought; read then, it is cut, not
// taken for the restarted sequence's packet far ahead (a jump that its
// followers would confirm). Only for LineTimeout after the restart: a
// queue behind is read faster than the line fills it, and a line of the
// restarted sequence that passes where the old one was is never cut for
// long. Nor is one within the window past everything the restarted
// sequence brought: a line read ahead of the one that confirmed the
// restart brings such packets, which may be the only copy (the other
// line lost them). A restart close to the start of the day (the old
// numbering within the window of the new one's) cannot be told by
// sequence numbers: stamps alone decide, as ever.
func (a *Arbiter) oldNumbering(line int, seq uint64, rxTime int64) bool {
	h := a.restartHigh[line]
	if h <= candidateWindow || rxTime-a.restartRx >= int64(a.cfg.LineTimeout) {
		return false
	}
	from, brought := h-candidateWindow, max(a.next, a.maxHigh())
	return seq >= from && from > brought && seq-brought > candidateWindow
}

// refreshBehind clears Behind once next moved (a line brought new
// sequence numbers); the receive thread calls it before copying Stats.
func (a *Arbiter) refreshBehind() {
	if a.Stats.Behind && a.next != a.regressNext {
		a.Stats.Behind, a.regressFrom = false, 0
	}
}

// handOver is Offer's way out of a full hold-back arena (MaxPending) while a
// live line might still fill the missing range: rather than declare it, it
// hands the range to the recovery source, if one takes it, and holds p in
// the spill, which holds more. It reports whether p is held.
func (a *Arbiter) handOver(line int, data []byte, p moldudp64.Packet, rxTime int64) bool {
	if a.recovering || a.frozen || a.onMissing == nil || a.pend.n == 0 || a.pend.n >= a.cfg.Spill || len(data) > a.pend.slotSize {
		return false
	}
	// Up to what is held, or to p, which is about to be.
	target := min(a.pend.front().seq, p.Seq)
	if target <= a.next || !a.onMissing(moldudp64.Range{First: a.next, Count: target - a.next}, rxTime) {
		return false
	}
	a.recovering, a.recoverEnd = true, target
	a.Stats.Recoveries++
	return a.hold(data, p, rxTime, line) == holdOK
}

// Tick tells the Arbiter that every line was drained (a receive poll found
// nothing) at wall-clock time now, so held-back packets are released once
// their gap is due. While packets flow, time is read from their receive
// timestamps instead (see checkGap).
func (a *Arbiter) Tick(now int64) {
	a.failSince = 0
	a.drainedAt = now
	a.stepLast = [MaxLines]int64{} // every queue drained: nothing stamped before a step is left
	if now < a.restartRx {
		// Drained, at a time before the restart: the wall clock stepped
		// back. Nothing received before the restart is queued any more,
		// and the cut would drop what comes after the step.
		a.restartRx = 0
	}
	if a.started {
		a.checkGap(now, true)
	}
}

// rejected is told that line brought, at rxTime, a datagram that is not a
// packet of the followed session (malformed, another session's, a suspect
// jump, a stale End of Session). It says
// nothing of the session, and the line's liveness stays with its last
// packet of the session; but the line's queue, read in order, was read up
// to rxTime: whatever of the session the line brought before then was
// read. Its waits (a hole's Hold or Grace, a snapshot ahead of the lines)
// go on by that clock (readRx). Before, only the session's packets and
// empty polls moved them, and lines busy with such datagrams alone (a
// stray sender on the group, a flood of malformed packets) never polled
// empty: a hole was never declared, a snapshot ahead of the lines waited
// for ever, delivery frozen. Off the hot path: the session's packets
// never come here.
func (a *Arbiter) rejected(line int, rxTime int64) {
	// Read, so no run of failed receives goes on through it (Advance):
	// the wall clock is not the lines' while their queues are read.
	a.readRx[line], a.failSince = rxTime, 0
	for i := range a.sess.cands {
		if c := &a.sess.cands[i]; c.n > 0 || len(c.stash) > 0 {
			c.readRx[line] = rxTime // read while it confirmed (lock)
		}
	}
	if a.started {
		a.checkGap(rxTime, false)
	}
}

// linesClock is how far in time the lines have been read, as of now: the
// latest receive stamp of the session's packets or of a rejected datagram
// (rejected), or the latest empty poll (every line drained then), or now
// once the receiver has failed with nothing read for LineTimeout (see
// Advance); never past now. A receive
// loop behind reads stamps of the past: the lines had until then, not
// until now, to bring something.
func (a *Arbiter) linesClock(now int64) int64 {
	c := a.drainedAt
	for i := 0; i < a.cfg.Lines; i++ {
		c = max(c, a.lastRx[i], a.readRx[i])
	}
	if a.failSince != 0 && now-a.failSince >= int64(a.cfg.LineTimeout) {
		c = now
	}
	return min(c, now)
}

// gapSeen is when the hole at next was first known, as near as the
// stamps tell: the earliest of the first packet held beyond it and the
// latest packet of each line that moved past next (a heartbeat's or an
// End of Session's sequence number, or a packet ending inside the hole
// moves a line past without anything held). Each is the stamp of a packet
// sent after the hole, so a line whose copy of the hole is queued, read
// behind, brings it within the lines' skew of that stamp. Not now, when a
// packet of another line is offered: a line read behind brings stamps of
// packets sent before the hole, and a wait begun at one of those ends
// before that line brings its copy. Now only when no line shows the hole.
func (a *Arbiter) gapSeen(now int64) int64 {
	seen := int64(math.MaxInt64)
	if a.pend.n > 0 {
		seen = a.pend.front().rxTime
	}
	for i := 0; i < a.cfg.Lines; i++ {
		if a.high[i] > a.next && a.lastRx[i] != 0 {
			seen = min(seen, a.lastRx[i])
		}
	}
	if seen == math.MaxInt64 {
		return now
	}
	return seen
}

// steppedBack reports whether stamp, taken before now, lies LineTimeout or
// more after it: the wall clock, which receive timestamps follow, stepped
// back since. A line read behind another brings earlier stamps, but never
// by as much (it would be dead by the other's clock), so only that much
// tells a step from the lines' skew.
func (a *Arbiter) steppedBack(stamp, now int64) bool {
	return stamp-now >= int64(a.cfg.LineTimeout)
}

// clockBack is a step of the wall clock back to now, which receive
// timestamps follow: the lines' stamps and the session's start come back
// to now, at most. A stamp from before the step would count as a wait long
// over, and a silence as not begun, for as long as the step.
func (a *Arbiter) clockBack(now int64) {
	var from int64
	for i := 0; i < a.cfg.Lines; i++ {
		from = max(from, a.lastRx[i], a.readRx[i])
	}
	if from > now {
		a.stepFrom, a.stepBy = from, from-now
		for i := 0; i < a.cfg.Lines; i++ {
			if a.stepLast[i] = max(a.lastRx[i], a.readRx[i]); a.stepLast[i] <= now {
				a.stepLast[i] = 0
			}
		}
	}
	for i := 0; i < a.cfg.Lines; i++ {
		a.lastRx[i] = min(a.lastRx[i], now)
		a.readRx[i] = min(a.readRx[i], now)
		a.pastRx[i] = min(a.pastRx[i], now)
	}
	a.startRx = min(a.startRx, now)
}

// afterStep returns stamp, read on line, on the wall clock after the
// latest step back (clockBack) when the line's queue, read behind, brought
// it from before the step: at or after the line's latest stamp before the
// step, and not LineTimeout past the latest stamp then read. Otherwise (a
// line that brought a stamp after the step since, or no step) stamp.
// Such a stamp would make a line that brought packets after the step dead
// by it, and count a wait as long over: a hole that the queue read behind
// still brings was declared (TestArbiterClockStepBackLineBehind).
func (a *Arbiter) afterStep(line int, stamp int64) int64 {
	if l := a.stepLast[line]; l != 0 && stamp >= l && stamp-a.stepFrom < int64(a.cfg.LineTimeout) {
		return stamp - a.stepBy
	}
	return stamp
}

// stepNow returns now on the wall clock after the latest step back: a
// stamp of a queue read behind from before the step is turned into the
// clock after it (afterStep). Lines that brought a stamp after the step
// since are past it: their stamps are taken as they are from then on.
func (a *Arbiter) stepNow(now int64) int64 {
	t := now
	for i := 0; i < a.cfg.Lines; i++ {
		if a.stepLast[i] == 0 {
			continue
		}
		if a.lastRx[i] < a.stepLast[i] && a.lastRx[i] != a.stepFrom-a.stepBy {
			a.stepLast[i] = 0 // a stamp after the step (not the one clockBack set)
			continue
		}
		if s := a.afterStep(i, now); s != now {
			t = s
		}
	}
	return t
}

// Advance tells the Arbiter the time now after a Receive that failed with
// nothing read, without saying that the lines were drained: the failing
// line may hold packets. Nor does one failure say how far behind the
// lines' queues are (their stamps may be seconds old), so the wall clock
// is used only once the receiver has failed with nothing read for
// LineTimeout: every line then counts as dead by it, and what is held
// behind a gap is released. A datagram offered (of the session or
// rejected) or an empty poll (Tick) ends the run of failures.
func (a *Arbiter) Advance(now int64) {
	if a.failSince == 0 || now < a.failSince {
		a.failSince = now
		return
	}
	if !a.started {
		return
	}
	if now-a.failSince >= int64(a.cfg.LineTimeout) {
		a.checkGap(now, false)
		return
	}
	// Before that, the lines were read up to their clock (linesClock),
	// and nothing at all since, for as long as the run of failures: a
	// line silent for LineTimeout by that much is dead. The waits of the
	// others stay on their own stamps (a line's queue not read may still
	// hold its copy). Before, a line idle but read (heartbeats less than
	// LineTimeout apart) ended every run of failures, and a line silent
	// since before the hole, its receive failing, was waited for until the
	// idle line's next packet: up to twice LineTimeout
	// (TestArbiterFailingLineIdleOther).
	a.checkGap(min(now, a.linesClock(now)+now-a.failSince), false)
}

// emit delivers the part of p at or after next; recovered: p came from a
// recovery source. Callers ensure p.Seq <= a.next < p.Next().
func (a *Arbiter) emit(p moldudp64.Packet, rxTime int64, recovered bool) {
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
		p, _ := moldudp64.Parse(a.pend.bytes(e))
		a.emit(p, e.rxTime, e.recovered)
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

// popHeld drops the first held packet without delivering it: what a
// recovery source sent of it is counted unused (RecoveredUnused).
func (a *Arbiter) popHeld() {
	if e := a.pend.front(); e.recovered {
		a.Stats.RecoveredUnused += e.end - e.seq
	}
	a.pend.popFront()
}

// Results of hold.
const (
	holdOK        = iota // copied aside
	holdDuplicate        // the same packet is held already
	holdFull             // no room (arena full or packet larger than a slot)
)

// fromRecovery is hold's line for a packet from a recovery source.
const fromRecovery = -1

// hold copies p aside, received on line (fromRecovery: from a recovery
// source).
func (a *Arbiter) hold(data []byte, p moldudp64.Packet, rxTime int64, line int) int {
	limit := a.cfg.MaxPending
	if a.recovering || a.frozen {
		limit = a.cfg.Spill
	}
	r := a.pend.add(data, p.Seq, p.Next(), rxTime, limit, line)
	if r == holdFull && a.frozen && a.pend.n > 0 && len(data) <= a.pend.slotSize {
		// Spilling during a snapshot: keep the newest. A packet larger
		// than a slot cannot be held whatever is dropped: the caller
		// counts it and leaves what is held alone.
		a.popHeld()
		a.Stats.SpillDropped++
		r = a.pend.add(data, p.Seq, p.Next(), rxTime, limit, line)
	}
	if r == holdOK {
		a.Stats.Held++
		a.Stats.HeldMax = max(a.Stats.HeldMax, uint64(a.pend.n))
	}
	return r
}

func (a *Arbiter) maxHigh() uint64 {
	var m uint64
	for i := 0; i < a.cfg.Lines; i++ {
		m = max(m, a.high[i])
	}
	return m
}

// checkGap declares the range starting at next missing once no live line
// can be expected to deliver it any more.
//
// Time is per line: a line's clock is the receive timestamp of its latest
// packet. Lines are read from separate queues (one socket per line), so a
// receiver that is behind may hold minutes-old packets of line B in its
// queue while reading line A; judging the hold-back by the wall clock would
// declare gaps that line B is about to fill. A live line that moved past the
// missing number is done waiting once its clock is Grace past the moment the
// gap became known; a live line that did not is waited for until its clock
// is Hold past it. When idle (every queue drained), the wall clock stands
// in for every line's clock.
func (a *Arbiter) checkGap(now int64, idle bool) {
	if a.frozen {
		return
	}
	stepSeen := false // now was checked against a step back (stepNow)
	for {
		if a.recovering {
			if a.next < a.recoverEnd && a.strayEnd(now, idle) {
				continue // narrowed (strayEnd): filled, or filled as far as it goes
			}
			if a.next < a.recoverEnd {
				return // the recovery source is filling it
			}
			a.recovering = false
			a.Stats.RecoveriesFilled++
			a.gapSince = 0
			if a.pend.n > 0 {
				a.gapSince = a.pend.front().rxTime
			}
		}
		if a.pend.n > 0 && a.pend.front().seq <= a.next {
			// Left held by drain (undecided): decided once it no longer
			// is, or dropped as contradicted once Hold ran out since its
			// line went on below it.
			e := a.pend.front()
			if a.unsure(e) || a.pausedAt(e) {
				if a.deciding(e, now, idle) || a.pausedAt(e) && a.paused(e, now, idle) {
					return
				}
				a.dropContradicted(0)
			} else {
				a.drain()
			}
			continue
		}
		if a.pend.n == 0 && a.maxHigh() <= a.next {
			a.gapSince = 0
			return
		}
		if n := a.pend.n; a.highestStray(now, idle) {
			// The highest held packet, contradicted by the lines that
			// brought it (the first is looked at below, when its hole
			// would be declared): they are not where it says. Kept, it
			// had them pass every hole before it, waited for by Grace
			// rather than Hold: a hole of the other line that a line
			// lagging it by more than Grace, with a corrupt packet
			// ahead, still brought was declared. Forsaken too (within
			// Grace, then Hold of silence): kept, it was the line's
			// highest, not the first, whose hole was then declared and the
			// packet delivered (TestArbiterCorruptSeqsOneStampThenQuiet).
			a.dropContradicted(n - 1)
			continue
		}
		if !stepSeen {
			now, stepSeen = a.stepNow(now), true
		}
		if a.gapNext != a.next {
			// The hole waited for was filled or declared, and another is
			// known beyond it: its wait starts when that one was seen
			// (gapSeen), not when the first was. (Before, it went on with
			// the first hole's: with the lines' skew over half of Hold,
			// the second hole was declared before the lagging line
			// brought it.) Each line's Grace starts where it moved past
			// this one (crossed).
			a.gapSince = 0
			a.crossed()
		}
		if a.gapSince != 0 && now < a.gapSince && (idle || a.steppedBack(a.gapSince, now)) {
			// Before the gap was first seen, by an empty poll's clock
			// (read after every stamp) or by more than a live line can
			// lag: the wall clock, which receive timestamps follow,
			// stepped back. (A line read behind the other by less than
			// LineTimeout brings earlier stamps: that is not a step.)
			// The wait starts again from now rather than lasting as
			// long as the step.
			a.clockBack(now)
			a.gapSince = 0
		}
		if a.gapSince == 0 {
			a.gapSince = a.gapSeen(now)
		}
		a.gapNext = a.next
		passed := uint64(math.MaxUint64) // how far every line waited by Grace moved past next
		for i := 0; i < a.cfg.Lines; i++ {
			clock := a.afterStep(i, a.lastRx[i])
			switch {
			case clock == 0:
				if a.steppedBack(a.startRx, now) {
					// The session started LineTimeout or more after now,
					// by more than a line read behind can lag: the wall
					// clock stepped back since. The line is waited for
					// LineTimeout from now, not for as long as the step
					// (with no empty poll, a busy queue, for as long as
					// the hold-back arena took to fill).
					a.clockBack(now)
				}
				if now-a.startRx >= int64(a.cfg.LineTimeout) {
					continue // silent since the session started: dead
				}
				// Never heard from (yet): at start-up its first packets
				// may still be queued, unread, behind what is read of the
				// other line, whose stamps say nothing of them. Only an
				// empty poll (every line drained) says they are not
				// there: then wait Hold by its clock. (Before, the clock
				// of what was being read: a batch of the other line
				// spanning Hold declared what this line had queued.)
				// Nor does a rejected datagram of its own (readRx, below)
				// stamped before the gap was seen.
				if idle {
					clock = now
				}
			case now-clock >= int64(a.cfg.LineTimeout):
				continue // dead line: not waited for
			case idle:
				clock = max(clock, now)
			}
			// Read past its last packet of the session: what it brought
			// of the session before then was read (rejected).
			clock = max(clock, a.afterStep(i, a.readRx[i]))
			if a.high[i] > a.next && !a.backAtNext(i) {
				// Moved past the hole: done Grace after it did (by its
				// own clock: a line read behind the other moves past
				// later, and reorders by its own stamps), or once Hold
				// ran out, as for a line that did not.
				passed = min(passed, a.high[i])
				since := max(a.gapSince, a.afterStep(i, a.pastRx[i]))
				if clock-since < int64(a.cfg.Grace) && clock-a.gapSince < int64(a.cfg.Hold) {
					return
				}
			} else if clock-a.gapSince < int64(a.cfg.Hold) {
				return
			}
		}
		if e := a.pend.front(); a.pend.n > 0 && a.wentBelowBefore(e, math.MinInt64, -1, true) {
			// Its lines went on below it (its line's highest, or below a
			// packet of it held above, kept by catchingUp).
			within := !a.wentBelowBefore(e, int64(a.cfg.Grace), -1, true)
			if (within || a.catchingUp(e)) && a.deciding(e, now, idle) {
				// But within Grace (see forsaken), or in order towards it
				// (see catchingUp): their next packets tell.
				return
			}
			if within && a.paused(e, now, idle) {
				// Within Grace, silent since while the feed pauses: as
				// well (see paused).
				e.paused = true
				return
			}
			// Not a hole: the only line that brought the packet beyond it
			// went on below it (a corrupt sequence number), for Grace or
			// more, or within Grace and then nothing for Hold (forsaken);
			// the hole, if any is left, is waited for again.
			a.dropContradicted(0)
			continue
		}
		if a.pend.n > 0 && a.unconfirmed(a.pend.front(), now) {
			return // its line's next packet tells (see unconfirmed)
		}
		target := a.maxHigh()
		if a.pend.n > 0 {
			target = a.pend.front().seq
		}
		// Only as far as each line waited by Grace moved past: what lies
		// beyond it, that line may still bring (a heartbeat, or a packet
		// ending inside the hole, moved it past next only). The rest is
		// waited for by Hold on the next round (its high is then next).
		target = min(target, passed)
		if a.onMissing != nil && target > a.next && a.onMissing(moldudp64.Range{First: a.next, Count: target - a.next}, now) {
			a.recovering = true
			a.recoverEnd = target
			a.Stats.Recoveries++
			return
		}
		a.declareGap(target, now)
		if a.frozen {
			// The gap's owner froze delivery to fetch a snapshot (the
			// handler does when one is configured for a gap it does not
			// re-request): what is held past the gap waits for it rather
			// than be applied to books the snapshot replaces.
			return
		}
		a.drain()
		// A further gap has been known since its first held packet arrived.
		a.gapSince = 0
		if a.pend.n > 0 {
			a.gapSince = a.pend.front().rxTime
		}
	}
}

// strayEnd drops the held packet that the range being recovered was asked
// up to (its end) once its lines contradict it, as checkGap would were the
// range not handed to a recovery source (contradicted, or forsaken:
// within Grace, then nothing for Hold), and narrows the range to what is
// left of it: up to the first packet held (below it, the lines' packets
// inside the range, or past it) or the highest number a line brought, not
// below next. It reports whether it did. Also with packets held below it:
// a line that goes on below the corrupt packet brings them, inside the
// range, before the range is filled; before, the range was narrowed only
// while the packet was the first held, and the client asked the full
// request from next until answered (TestRerequestNarrowsBelowHeldPackets). A corrupt packet
// whose line brought nothing after it before its hole was due had the
// hole asked of the source; its line going on below it since did not end
// the recovery, which the source can never fill past the feed's numbers:
// the model's day ended with it held and the range asked for ever
// (TestArbiterLinesModel seeds 2649, 7991, 8123), and a re-request server
// given up on it (its numbers not sent yet) had the hole up to it declared
// and the live feed below it dropped as duplicates
// (TestArbiterRecoveringUpToStray). Only while a range is recovered: a
// few comparisons per packet then (the lines that brought the held
// packet went past it, genuine traffic, at the first).
func (a *Arbiter) strayEnd(now int64, idle bool) bool {
	k := a.pend.find(a.recoverEnd)
	if k < 0 {
		return false
	}
	for k < a.pend.n-1 && a.highestStray(now, idle) {
		// The highest held packet first, as in checkGap: a second
		// corrupt packet of the line has it pass the first.
		a.dropContradicted(a.pend.n - 1)
	}
	if e := a.pend.at(k); !a.forsaken(e, now, idle) || a.catchingUp(e) && a.deciding(e, now, idle) {
		return false
	}
	a.dropContradicted(k)
	end := a.maxHigh()
	if a.pend.n > 0 {
		end = min(end, a.pend.front().seq)
	}
	if end = max(a.next, min(a.recoverEnd, end)); end < a.recoverEnd {
		a.recoverEnd = end
		if a.onNarrow != nil {
			a.onNarrow(end)
		}
	}
	return true
}

// forsaken reports whether the held packet e is contradicted, or its
// lines went on below it within Grace only and then brought nothing for
// Hold (see wentBelow).
func (a *Arbiter) forsaken(e *pendEntry, now int64, idle bool) bool {
	return a.wentBelow(e, math.MinInt64) && (a.contradicted(e) || !a.deciding(e, now, idle))
}

// contradicted reports whether the held packet e is contradicted by the
// lines that brought it: brought by lines only (not a recovery source),
// and each of them has since gone on below it (its latest packet started
// below its own highest and below e's first sequence number, a heartbeat
// at it, Grace or more after e, by its own stamps), bringing nothing past
// e. A line reorders its own packets by less than Grace (ArbiterConfig.Grace):
// a line still sending numbers below e that long after is not behind e
// but was never there, and e's sequence number is corrupt or forged
// (within MaxJump, which catches the rest). Taken at face value, such a
// packet stood for a hole of everything between: once Hold ran out the
// hole was declared (999,903 messages for one packet 10^6 ahead) and the
// live feed behind it dropped as duplicates; nearer, its messages were
// delivered as those of its numbers. Only held packets are looked at,
// when one would be delivered or a hole declared before it, and the
// highest while two or more are held: nothing on the in-order path but
// one flag (waiting: see undecided and decide).
func (a *Arbiter) contradicted(e *pendEntry) bool {
	return a.wentBelow(e, int64(a.cfg.Grace))
}

// wentBelow reports whether each line that brought the held packet e
// (lines only) went on below it, as contradicted says, its latest packet
// after or more after e by its stamps (math.MinInt64: any).
//
// forsaken: a held packet whose lines went on below it within Grace only
// is not contradicted; when the hole before it would be declared, it
// waits for their next packets (each below it Grace or more after it:
// contradicted; past it: a line that reordered its packets), or for them
// to bring nothing for Hold by their own clocks (deciding), or to die:
// then it is dropped as contradicted. A line that reorders its own
// packets goes on past them; one whose sender is below e stops there
// when the feed pauses or the day ends. Before, such a packet stood for
// the hole, declared once Hold ran out, and was delivered as its numbers'
// messages (TestArbiterLinesModel seeds 64, 92 and 1068:
// TestArbiterCorruptThenQuiet). A packet overtaken on its line by the
// next is not: held before it, it is the line's latest, exempt, and the
// hole before it is declared as before. The cost on genuine traffic: a
// packet that a line brought ahead of its latest by less than Grace, with
// a hole between them lost on both lines (it overtook two packets, the
// one after the latest lost on both), or the latest a late copy of an
// earlier packet, the line then silent for Hold, is dropped: its numbers
// are a gap once the line goes on.
func (a *Arbiter) wentBelow(e *pendEntry, after int64) bool {
	return a.wentBelowBefore(e, after, -1, false)
}

// wentBelowBefore is wentBelow with the packet being offered on line
// jumping (-1: none) not counted yet: its latest is the one before. With
// above, a line whose highest is past e (a packet of it held above e,
// see unsure) counts too.
func (a *Arbiter) wentBelowBefore(e *pendEntry, after int64, jumping int, above bool) bool {
	return a.byLines(e, func(i int, t int64) bool {
		latest := a.Stats.Lines[i].Packets
		if i == jumping {
			latest--
		}
		// The latest packet, by count: an older one's stamp, taken
		// before a step of the wall clock back, lies ahead of every
		// stamp after it, and read as Grace after e it dropped each
		// held packet that was its line's latest until the clock
		// caught up (the line's highest then back to that old packet's
		// end: the next held packets dropped too).
		// Started below e, not only ended at or before it: a packet
		// moved off a packet boundary (most are) is overtaken by the
		// line's packet that covers its first number, which ends inside
		// or past it; taken for the line's own, its messages past that
		// one's end were delivered as those of their numbers.
		return (a.high[i] == e.end || above && a.high[i] > e.end) && a.belowPkt[i] == latest &&
			(a.belowSeq[i] < e.seq || a.belowEnd[i] <= e.seq) && a.belowRx[i]-t >= after
	})
}

// byLines reports whether the held packet e was brought by lines only (not
// a recovery source), and each line i that brought it, at t, is ok.
func (a *Arbiter) byLines(e *pendEntry, ok func(i int, t int64) bool) bool {
	if e.recovered {
		return false
	}
	by := false
	for i := 0; i < a.cfg.Lines; i++ {
		if t := e.lineRx[i]; t != 0 {
			if !ok(i, t) {
				return false
			}
			by = true
		}
	}
	return by
}

// jumpedPast is told that line, whose latest packet went below its own
// highest, brings one past that highest (not counted as its latest yet):
// the held packet of the line that ended at its highest, contradicted by
// then (its latest packet started below it Grace or more after it, by its
// stamps), is dropped now, as checkGap would have: once past it, the line
// no longer has it for its highest, and it was taken for genuine. A line
// that read its packets ahead of the other's (whose copies, duplicates,
// move nothing) brought a corrupt packet, went on below it, then a second
// one once the first's hole was due: the first's hole was declared and the
// packet delivered as its numbers' messages (TestArbiterLinesModel seed
// 5822: TestArbiterCorruptSeqsApartOneLine). Not one whose line's latest
// packet ended at its first number (see undecided): a line past it then
// reordered the two, and it is its own. Rare: a line's jump after going
// below its highest; a scan of what is held is fine.
func (a *Arbiter) jumpedPast(line int) {
	if a.high[line] <= a.next {
		return
	}
	for k := a.pend.n - 1; k >= 0; k-- {
		e := a.pend.at(k)
		if e.lineRx[line] == 0 || e.end != a.high[line] {
			continue
		}
		if (a.belowEnd[line] != e.seq || a.belowSeq[line] == e.seq) && a.wentBelowBefore(e, int64(a.cfg.Grace), line, false) && !a.chainedTo(k, line) {
			a.dropContradicted(k)
		}
		return
	}
}

// chainedTo reports whether the held packet k and every one held below it
// were brought by line, each starting where the one before ends, from the
// first held at next, left held for the line's next packet (unsure): the
// line reordered them (see catchingUp) and has just reached them, and
// the one it brings past them says they are its own, as a packet past
// an undecided one does. Not one with a hole below it: a corrupt packet
// ahead of the line, which a second one jumps past.
func (a *Arbiter) chainedTo(k, line int) bool {
	if !a.waiting || a.pend.front().seq != a.next {
		return false
	}
	for j := 0; j <= k; j++ {
		if e := a.pend.at(j); e.lineRx[line] == 0 || j > 0 && e.seq != a.pend.at(j-1).end {
			return false
		}
	}
	return true
}

// undecided reports whether the held packet e, contradicted
// (contradicted) and next in order (at next), is contradicted only by
// lines whose latest packet ends exactly at e's first number: the packet
// that filled the hole before e. A line that reorders two of its packets
// by Grace or more by its stamps (stamped on read, the pair split across
// two reads) looks so; so does a corrupt packet whose numbers the line has
// just reached. The line's next packet tells: its own packet at e's
// numbers (delivered in order, e then dropped: contradicted) or one past
// e (e is then its line's packet, delivered). Before, e was dropped as
// contradicted at once: a reordered packet the other line lost was
// declared a gap. drain leaves it held; checkGap decides it, or drops it
// once Hold ran out (an idle line).
func (a *Arbiter) undecided(e *pendEntry) bool {
	return e.seq == a.next && a.endsAt(e)
}

// unsure reports whether the held packet e, at next, is left held for its
// lines' next packet (undecided): each line that brought it went on
// below it Grace or more after it, as contradicted says, its latest packet
// ending exactly at e's first number, whether e is its highest packet or
// one of its packets is held above e. The second is a reorder of more
// than one packet (see catchingUp): delivered as it was before, below
// the line's highest, it was the line's when two corrupt packets of
// it were held and the line reached the first: one is decided, then the
// other, each by the line's next packet.
func (a *Arbiter) unsure(e *pendEntry) bool {
	return a.undecided(e) && a.wentBelowBefore(e, int64(a.cfg.Grace), -1, true)
}

// highestStray reports whether the highest held packet, with another
// held below it, is contradicted, or forsaken and not put ahead by a
// reorder (its lines' latest packets ending at its first number: see
// undecided), as checkGap and strayEnd drop it.
func (a *Arbiter) highestStray(now int64, idle bool) bool {
	if a.pend.n < 2 {
		return false
	}
	e := a.pend.at(a.pend.n - 1)
	if a.catchingUp(e) && a.deciding(e, now, idle) {
		return false
	}
	return a.contradicted(e) || !a.endsAt(e) && a.forsaken(e, now, idle)
}

// backAtNext reports whether line's latest packet went below its own
// highest and ends at next: the line went back, and goes on in order
// from there (see catchingUp), so its highest is not where it is. It is
// waited for in the hole at next as a line that did not move past it
// (Hold, not Grace): kept, a packet held ahead of it, whose numbers the
// line may be catching up to, had the hole before it declared by the
// other lines' clocks (TestArbiterLinesModel seeds 6704 and 8826: the hole
// up to another line's corrupt packet declared, the packet delivered as
// its numbers' messages).
func (a *Arbiter) backAtNext(line int) bool {
	return a.belowPkt[line] == a.Stats.Lines[line].Packets && a.belowEnd[line] == a.next
}

// catchingUp reports whether the held packet e, beyond next, may be one
// of several packets its lines brought ahead of those before them, by
// Grace or more (a reorder of more than one packet; undecided is the one
// packet's): each line that brought it (lines only) went on below it, its
// latest packet ending at next (in order, towards e), less than Hold
// after e by its stamps. Such a packet is not dropped as contradicted
// yet (highestStray, checkGap's hole before it, strayEnd) while its lines
// may still bring their next packet (deciding): when they reach its
// numbers, it is undecided there (unsure), and the packet after tells
// (its own copy at its numbers: dropped; one past it: delivered). Lines
// that bring nothing for Hold, or a packet leaving a hole below it, or
// that go on Hold past it, have it dropped as before. Before, it was
// dropped at once: the line's 10 and 11 coming after its 12 and 13, 13
// was a gap where the other line lost them
// (TestArbiterLineReorderTwoBeyondGrace). The cost: a corrupt packet
// whose line goes on in order below it is held up to Hold, not Grace
// (delivered nothing meanwhile; the hole before it is not declared). Looked
// at only where a held packet would be dropped as contradicted: nothing
// on the in-order path.
func (a *Arbiter) catchingUp(e *pendEntry) bool {
	return e.seq > a.next && a.byLines(e, func(i int, t int64) bool {
		return a.backAtNext(i) && a.belowRx[i]-t < int64(a.cfg.Hold)
	})
}

// endsAt reports whether the latest packet of each line that brought the
// held packet e ends exactly at e's first number (see undecided).
func (a *Arbiter) endsAt(e *pendEntry) bool {
	for i := 0; i < a.cfg.Lines; i++ {
		// A heartbeat or End of Session at e's number (a stale one too)
		// decides: the line's next packet is e's number, and e, brought
		// Grace or more before, is not its own (a line does not reorder a
		// packet behind the pause a heartbeat follows).
		if e.lineRx[i] != 0 && (a.belowEnd[i] != e.seq || a.belowSeq[i] == e.seq) {
			return false
		}
	}
	return true
}

// deciding reports whether a line that brought the held packet e, left
// undecided or gone below it within Grace only (see wentBelow), may still
// bring its next packet, which decides e: for Hold after its latest
// packet (below e, ending at it when undecided) by the line's own
// clock (its stamps, a rejected datagram's, an empty poll's now), as
// checkGap waits for a line not past a hole, unless the line is dead
// (LineTimeout). Not by now, when another line's packet is offered: a
// loop reading that line's queue ahead of this one's brings stamps Hold
// or more past it while this line's next packet is still queued
// (TestArbiterUndecidedOtherLineReadAhead). A now before the line's
// latest packet, by an empty poll's clock (read after every stamp) or by
// LineTimeout or more, is a step of the wall clock back: the wait starts
// again from now (clockBack), or it lasted as long as the step, with
// everything held behind e meanwhile (TestArbiterUndecidedClockStepBack).
func (a *Arbiter) deciding(e *pendEntry, now int64, idle bool) bool {
	for i := 0; i < a.cfg.Lines; i++ {
		if e.lineRx[i] != 0 && !a.quiet(i, now, idle) {
			return true
		}
	}
	return false
}

// paused reports whether a line that brought the held packet e, at the
// hole, gone on below it within Grace only and then silent for Hold
// (deciding no more), is still waited for: it is live (LineTimeout), and
// no other live line has gone on past next, or one did less than Hold
// ago by the line's own clock. The feed paused: the line's next packet
// comes when it goes on, which another line shows within the lines' skew,
// and tells, as deciding says. Dropped at Hold (forsaken), the packet was
// lost to the hole that the lines then showed, declared or re-requested
// with it, although held (TestArbiterAheadWithinGraceThenPause: a packet
// brought ahead of its line's latest within Grace, with a hole between
// them lost on both lines, before a pause). Dropping it told nothing
// sooner: its line's highest then went back to next, and no hole was
// known until a line went on. Only where the packet at a hole would be
// dropped: nothing on the in-order path.
func (a *Arbiter) paused(e *pendEntry, now int64, idle bool) bool {
	resumed := int64(math.MaxInt64) // when another live line went on past next
	for i := 0; i < a.cfg.Lines; i++ {
		if e.lineRx[i] == 0 && a.high[i] > a.next && !a.backAtNext(i) && now-a.lastRx[i] < int64(a.cfg.LineTimeout) {
			resumed = min(resumed, a.pastRx[i])
		}
	}
	for i := 0; i < a.cfg.Lines; i++ {
		if e.lineRx[i] == 0 || now-a.lastRx[i] >= int64(a.cfg.LineTimeout) {
			continue
		}
		if resumed == math.MaxInt64 {
			return true
		}
		clock := max(a.lastRx[i], a.readRx[i])
		if idle {
			clock = max(clock, now)
		}
		if clock-max(a.lastRx[i], resumed) < int64(a.cfg.Hold) {
			return true
		}
	}
	return false
}

// pausedAt reports whether the held packet e, kept past Hold of its
// lines' silence (paused), is still so when the lines reach its numbers:
// its lines below it, within Grace. It is then left held as an undecided
// one is: the next packet at its numbers (another line's, or a recovery
// answer) decides it (decide), or its line's next packet; or it is
// dropped once no line waits so (paused). Delivered, a corrupt packet
// whose line paused below it was applied as its numbers' messages when the
// other line, resuming first, reached them; before packets were kept past
// Hold it had been dropped (TestArbiterAheadWithinGraceThenPause).
func (a *Arbiter) pausedAt(e *pendEntry) bool {
	return e.paused && a.wentBelowBefore(e, math.MinInt64, -1, true) && !a.wentBelowBefore(e, int64(a.cfg.Grace), -1, true)
}

// quiet reports whether line brought nothing for Hold after its latest
// packet by its own clock, or is dead (see deciding).
func (a *Arbiter) quiet(line int, now int64, idle bool) bool {
	if idle && now < a.lastRx[line] || a.steppedBack(a.lastRx[line], now) {
		a.clockBack(now)
	}
	if now-a.lastRx[line] >= int64(a.cfg.LineTimeout) {
		return true
	}
	clock := max(a.lastRx[line], a.readRx[line])
	if idle {
		clock = max(clock, now)
	}
	return clock-a.lastRx[line] >= int64(a.cfg.Hold)
}

// decide is told of a packet in order, p, from a line or a recovery
// source, while drain left one held (undecided): another packet at its
// first number, its line's own or another source's, bringing other
// messages from there, contradicts it (dropped, counted); a copy of it
// (the same messages as far as both go: an answer may cut its packets
// elsewhere), or any other packet, leaves it to drain. Another source's counts too:
// delivered, it covered the held packet, which was then dropped uncounted
// as a copy where it was counted as contradicted before packets were left
// held undecided (TestArbiterUndecidedOtherLineAtItsNumbers).
func (a *Arbiter) decide(p moldudp64.Packet) {
	a.waiting = false
	if a.pend.n == 0 {
		return
	}
	e := a.pend.front()
	if e.seq != a.next || e.recovered {
		return
	}
	q, _ := moldudp64.Parse(a.pend.bytes(e))
	held, in := q.Iter(), p.Iter()
	in.Skip(int(e.seq - p.Seq)) // in order: p.Seq <= next < p.Next()
	for {
		m, ok := held.Next()
		n, ok2 := in.Next()
		if !ok || !ok2 {
			return
		}
		if !bytes.Equal(m, n) {
			a.dropContradicted(0)
			return
		}
	}
}

// unconfirmed reports whether the hole before the held packet e is large
// (more than MaxJump/64 sequence numbers: 65,536 by default) and stands on
// e alone: one line brought it, as its latest packet, less than
// LineTimeout before now, and no other line moved past next. The hole is
// then not declared until that line's next packet, which either goes on
// past e (the hole is real: declared at once) or below it (e is
// contradicted, see contradicted), or LineTimeout. On a busy line that
// is microseconds; on an idle one (heartbeats about a second apart) a
// corrupt packet's hole was declared once Hold ran out, before the next
// heartbeat could contradict it, and the rest of the feed dropped as
// duplicates. The cost: such a large hole lost on both lines, whose next
// packet only one line brought before going idle, is declared up to a
// heartbeat later. Smaller holes are declared by Hold as before: a few
// packets lost on both lines before a pause are common, and their wait is
// what recovery starts from.
func (a *Arbiter) unconfirmed(e *pendEntry, now int64) bool {
	if e.recovered || e.seq <= a.next || e.seq-a.next <= a.cfg.MaxJump/64 {
		return false
	}
	by := -1
	for i := 0; i < a.cfg.Lines; i++ {
		t := e.lineRx[i]
		switch {
		case t == 0:
			if a.high[i] > a.next {
				return false // another line moved past next
			}
		case by >= 0:
			return false // two lines brought it
		default:
			if a.high[i] != e.end || a.lastRx[i] != t || now-t >= int64(a.cfg.LineTimeout) {
				return false
			}
			by = i
		}
	}
	return by >= 0
}

// dropContradicted drops the held packet k (the first, the last, or the
// line's highest one past which it jumped: jumpedPast),
// contradicted by its lines (contradicted): counted per line, each line's
// highest back to its latest packet or the highest other packet of the
// line held, whichever ends later (a second corrupt packet, brought
// within Grace of the first, is then its line's highest and contradicted
// in turn; before, it was left above the line's highest, never looked at
// again, and stood for a hole). For the first, the wait for a hole at
// next starts again (gapSeen). Rare: a scan of what is held is fine.
func (a *Arbiter) dropContradicted(k int) {
	e := a.pend.at(k)
	lines := e.lineRx
	if k != 0 {
		a.pend.remove(k)
	} else {
		a.pend.popFront()
		a.gapSince = 0
	}
	for i := 0; i < a.cfg.Lines; i++ {
		if lines[i] == 0 {
			continue
		}
		a.Stats.Lines[i].Contradicted++
		// Not below next: the line's packets behind next are then behind
		// its highest too, as they were, and a restart's still count as
		// going back (regressed). Taken back to its latest packet alone,
		// a line whose publisher restarted at 1 within Hold of the drop
		// brought its restarted packets in order by its own highest, and
		// the restart was never followed (its packets dropped as
		// duplicates for the rest of the day).
		a.high[i] = max(a.belowEnd[i], a.next)
		for j := 0; j < a.pend.n; j++ {
			if h := a.pend.at(j); h.lineRx[i] != 0 {
				a.high[i] = max(a.high[i], h.end)
			}
		}
	}
	a.endBehindStray()
}

// endBehindStray announces the end of session an End of Session packet
// told while a packet held beyond it made it stale (Offer), once the
// packets dropped as contradicted were all that stood beyond it: it is at
// or past everything received now, as it must be to announce the end.
// Before, it stayed ignored: a corrupt sequence number on one line, held
// ahead and dropped as contradicted only after the End of Session packets
// came (Hold after its line went on below it), had the session never end
// (the soak, corrupt packets 300,000 ahead: 'ended false', every End of
// Session counted stale). A session that went on past it (data beyond it)
// leaves it behind next: nothing is announced.
func (a *Arbiter) endBehindStray() {
	if a.staleEnd == 0 || a.staleEnd < a.next || a.staleEnd < a.maxHigh() {
		return
	}
	if !a.ended {
		a.Stats.EndOfSession++
		a.sess.recount()
	}
	a.ended = true
	for i := 0; i < a.cfg.Lines; i++ {
		if a.staleEndLines&(1<<i) != 0 {
			a.high[i] = max(a.high[i], a.staleEnd)
		}
	}
	a.staleEnd, a.staleEndLines = 0, 0
}

// crossScan is how many held packets crossed looks at.
const crossScan = 64

// crossed sets, for the hole now at next (the one before was filled or
// declared), each line's pastRx to the stamp of its earliest packet held
// beyond it (among the first crossScan held): when the line moved past
// this hole, not a hole before it. Without, a line that moved past an
// earlier hole had its Grace for this one counted from then: a line read
// ahead of the other, far past, that reordered this hole's copy behind
// its next packet had the hole declared at once. A line with no packet
// held keeps its pastRx (a heartbeat moved it past).
func (a *Arbiter) crossed() {
	var first [MaxLines]int64
	for k := 0; k < min(a.pend.n, crossScan); k++ {
		e := a.pend.at(k)
		for i := 0; i < a.cfg.Lines; i++ {
			if t := e.lineRx[i]; t != 0 && (first[i] == 0 || t < first[i]) {
				first[i] = t
			}
		}
	}
	for i := 0; i < a.cfg.Lines; i++ {
		if first[i] != 0 {
			a.pastRx[i] = first[i]
		}
	}
}

// declareGap reports [next, target) missing at now and moves next to target.
func (a *Arbiter) declareGap(target uint64, now int64) {
	if target <= a.next {
		return
	}
	r := moldudp64.Range{First: a.next, Count: target - a.next}
	if a.idleAfterEnd && a.ended && a.Stats.Delivered == 0 && a.pend.n == 0 && target >= a.maxHigh() {
		// Joined after the end, nothing of the session seen but its End
		// of Session packets (a restart after the close) and nothing
		// configured to fetch it: the session is over, no book of it was
		// ever published, and nothing more comes. Not a gap to page on
		// all night: idle until the next session (RECOVERY.md, Late join
		// after the end).
		a.Stats.EndedJoin += r.Count
		a.next = target
		return
	}
	a.Stats.Gaps++
	a.Stats.GapMessages += r.Count
	a.Stats.LastGap = r
	a.next = target
	if a.onGap != nil {
		a.onGap(r, now)
	}
}

// pending holds copies of out-of-order packets, ordered by sequence number,
// in a fixed arena.
type pending struct {
	arena    []byte
	slotSize int
	free     []int32 // free slot numbers (stack)
	ring     []pendEntry
	head, n  int
}

type pendEntry struct {
	seq, end  uint64
	rxTime    int64
	slot      int32
	size      int32
	recovered bool // sent by a recovery source (OfferRecovered), not a line
	// paused: kept past Hold of its lines' silence, gone on below it
	// within Grace, while the feed paused (see paused and pausedAt).
	paused bool
	// lineRx: per line, the stamp of its first copy (0: none yet).
	lineRx [MaxLines]int64
}

func (q *pending) init(slots, slotSize int) {
	// The arena is not touched here (mem.Touch): the first gap deep
	// enough to reach a page of it takes a page fault per two held
	// packets on the receive thread (BenchmarkArbiterFirstHold), but on
	// the lab's VM every page the process has touched lengthens the hot
	// thread's tail, used or not (16 MiB touched: the paced p99 from 4.9
	// to 11.6 µs; docs/TUNING.md), and the arena is 16 to 64 MiB that most
	// days never fill.
	q.arena = make([]byte, slots*slotSize)
	q.slotSize = slotSize
	q.free = make([]int32, slots)
	for i := range q.free {
		q.free[i] = int32(slots - 1 - i)
	}
	q.ring = make([]pendEntry, slots)
}

func (q *pending) at(i int) *pendEntry { return &q.ring[(q.head+i)%len(q.ring)] }

func (q *pending) front() *pendEntry { return q.at(0) }

func (q *pending) bytes(e *pendEntry) []byte {
	off := int(e.slot) * q.slotSize
	return q.arena[off : off+int(e.size)]
}

// minSeq returns the smallest held sequence number, or seq if smaller.
func (q *pending) minSeq(seq uint64) uint64 {
	if q.n > 0 && q.front().seq < seq {
		return q.front().seq
	}
	return seq
}

// add copies data in, keeping the ring sorted by seq (arrivals are mostly
// increasing, so this is an append). A packet whose range is already held
// is not copied again (holdDuplicate); its line's stamp is noted.
func (q *pending) add(data []byte, seq, end uint64, rxTime int64, limit int, line int) int {
	for i := q.n - 1; i >= 0; i-- {
		e := q.at(i)
		if e.seq == seq && e.end >= end {
			if line >= 0 && e.lineRx[line] == 0 {
				e.lineRx[line] = rxTime
			}
			return holdDuplicate
		}
		if e.seq < seq {
			break
		}
	}
	if len(q.free) == 0 || q.n >= limit || len(data) > q.slotSize {
		return holdFull
	}
	slot := q.free[len(q.free)-1]
	q.free = q.free[:len(q.free)-1]
	copy(q.arena[int(slot)*q.slotSize:], data)
	ne := pendEntry{seq: seq, end: end, rxTime: rxTime, slot: slot, size: int32(len(data)), recovered: line < 0}
	if line >= 0 {
		ne.lineRx[line] = rxTime
	}
	i := q.n
	q.n++
	for i > 0 && q.at(i-1).seq > seq {
		*q.at(i) = *q.at(i - 1)
		i--
	}
	*q.at(i) = ne
	return holdOK
}

// remove drops held packet k, moving those after it down.
func (q *pending) remove(k int) {
	q.free = append(q.free, q.at(k).slot)
	for i := k; i < q.n-1; i++ {
		*q.at(i) = *q.at(i + 1)
	}
	q.n--
}

// find returns the index of the held packet starting at seq, or -1. The
// ring is sorted by seq: the first held is looked at alone when it starts
// at or past seq (strayEnd's usual case, called for each packet while a
// range is recovered: the packet the range was asked up to, or none held
// below it), else a binary search.
func (q *pending) find(seq uint64) int {
	k := 0
	if q.n > 0 && q.front().seq < seq {
		k = sort.Search(q.n, func(i int) bool { return q.at(i).seq >= seq })
	}
	if k < q.n && q.at(k).seq == seq {
		return k
	}
	return -1
}

func (q *pending) popFront() {
	q.free = append(q.free, q.front().slot)
	q.head = (q.head + 1) % len(q.ring)
	q.n--
}
