package handler

import (
	"math"

	"github.com/marketfeed/feedhandler/feed/moldudp64"
)

// Session choice. With no configured session the Arbiter does not follow
// the first datagram it sees: a stray sender on the group would otherwise
// take the feed over. It tracks a few candidate sessions and locks onto one
// only once SessionConfirm of its packets in a row carried a consistent
// sequence (each within candidateWindow of where the previous ones ended).
// The packets seen while confirming are stashed and replayed on lock, so
// nothing of the real feed is lost.
//
// Session change. Later, a candidate that confirms replaces the locked
// session (a session change) when the locked one
//
//   - has been silent on every line for LineTimeout, or
//   - has ended (Arbiter.Ended): an End of Session packet announced it, and
//     everything before the end was delivered or declared missing.
//
// Otherwise the candidate's packets count as WrongSession. The second rule
// exists because an exchange repeats End of Session "for a while", which
// keeps the old session from ever being silent. Only an End of Session
// packet at or beyond everything received (the next expected sequence
// number and the highest seen on any line) announces the end: an older one
// is a late copy, a replay or a forgery, counted as StaleEndOfSession and
// ignored, so that it cannot open a live session to a stray one (one
// below a packet held ahead is kept, and announces the end once that
// packet is dropped as contradicted: at once when its lines went on to a
// confirmed session, see endsBehindStrays). New data
// of the locked session past the end withdraws the announcement (a
// repeated End of Session announces it again); a fill before it does not. Ended rather than just announced: while a
// gap before the end is being recovered (or packets are held back for it),
// the change waits until the range is filled or declared, so the old
// session's tail is never dropped unreported; the new session's packets
// seen meanwhile beyond the stash are a gap of the new session, recovered
// like any other. Only packets after the end count: announcing it drops
// every candidate's count (an End of Session kept stale behind a held
// packet, as it is kept, not again when it announces the end: see
// endBehindStray) (not its stash: a new session that started
// before the end loses nothing), so a run confirmed earlier by a stray
// sender that has since gone quiet must confirm again, against the real
// next session; a stray that keeps sending can still confirm first (only
// a configured session rules it out). A candidate silent for
// candidateSilence LineTimeouts starts its count again. Once a session is
// followed, another session's End of Session packets never make it a
// candidate: the session it replaced goes on repeating its end, and must
// not be switched back to when the followed one falls silent.

// candidateWindow is how far a candidate's packet may be from where its
// previous packets ended (line loss, the other line's copies) and still
// count as consistent.
const candidateWindow = 1 << 16

// maxCandidates is the number of sessions tracked at once.
const maxCandidates = 4

// defaultSessionConfirm is ArbiterConfig.SessionConfirm's default.
const defaultSessionConfirm = 4

// SessionFunc is told of a session change (from the zero Session: the
// first lock).
type SessionFunc func(old, new moldudp64.Session)

type candidate struct {
	session moldudp64.Session
	next    uint64 // where its packets so far ended
	n       int    // consistent packets in a row
	lastRx  int64
	lineRx  [MaxLines]int64 // per line, the stamp of its latest packet
	// readRx: per line, the stamp of its latest datagram rejected since
	// the candidate was first seen (its own packets while it confirmed,
	// strays): where the line's queue was read to (see lock).
	readRx [MaxLines]int64
	stash  []stashedPacket
	// room: how many more packets it may stash: SessionConfirm from
	// its first counted packet, and again from an end's recount (the
	// packets that confirm it then, kept with those stashed before), up
	// to the stash's capacity, twice SessionConfirm.
	room int
}

type stashedPacket struct {
	line   int
	rxTime int64
	data   []byte // into arena
}

type sessions struct {
	cands   [maxCandidates]candidate
	arena   []byte
	confirm int // SessionConfirm
}

func (s *sessions) init(confirm, slotSize int) {
	s.confirm = confirm
	s.arena = make([]byte, maxCandidates*2*confirm*slotSize)
	for i := range s.cands {
		s.cands[i].stash = make([]stashedPacket, 0, 2*confirm)
	}
}

// candidateSilence is how many LineTimeouts a candidate may be silent
// before its count starts again: more than one, so that a new session that
// sends only heartbeats (one a second, as MoldUDP64 servers do, with the
// default LineTimeout of 1 s) on one line still confirms.
const candidateSilence = 4

// forget drops every candidate's count and stash.
func (s *sessions) forget() {
	for i := range s.cands {
		s.cands[i].n = 0
		s.cands[i].stash, s.cands[i].room = s.cands[i].stash[:0], s.confirm
	}
}

// recount drops every candidate's count and keeps its stash: packets
// counted from now on confirm it, and the packets it had stashed (a new
// session that started before the old one's end) are still replayed.
// Those that confirm it again are stashed too (room), besides: before,
// with SessionConfirm stashed before the end, the stash was full, and
// the packets that confirmed it again were dropped but the last (replayed
// by lock): a line read ahead of the other brought the new session's
// first four before the old one's end came on the other line, whose next
// three packets of the new session then confirmed it and were lost (the
// soak, seed 11031: a packet line B lost declared a gap of the new
// session although line A brought it: TestSessionRecountStashes).
func (s *sessions) recount() {
	for i := range s.cands {
		s.cands[i].n, s.cands[i].room = 0, s.confirm
	}
}

// SetSessionFunc installs the session-change callback.
func (a *Arbiter) SetSessionFunc(fn SessionFunc) { a.onSession = fn }

// candidate feeds a packet of a session other than the locked one (or any
// packet before a lock) to the candidate table. It reports whether that
// session has now confirmed and may be locked, and whether the packet was
// stashed (replayed by lock).
func (a *Arbiter) candidate(line int, data []byte, p moldudp64.Packet, rxTime int64) (idx int, confirmed, stashed bool) {
	s := &a.sess
	idx = -1
	for i := range s.cands {
		if c := &s.cands[i]; (c.n > 0 || len(c.stash) > 0) && c.session == p.Session {
			idx = i
			break
		}
	}
	if idx < 0 {
		// A new session takes the slot of the weakest (then oldest).
		idx = 0
		for i := range s.cands {
			c, w := &s.cands[i], &s.cands[idx]
			if c.n < w.n || c.n == w.n && c.lastRx < w.lastRx {
				idx = i
			}
		}
		c := &s.cands[idx]
		c.session, c.next, c.n, c.stash, c.room = p.Session, p.Next(), 0, c.stash[:0], s.confirm
		c.lineRx, c.readRx = [MaxLines]int64{}, [MaxLines]int64{}
	}
	c := &s.cands[idx]
	if c.n > 0 && rxTime-c.lastRx > candidateSilence*int64(a.cfg.LineTimeout) {
		// Silent for a while: its earlier packets no longer count (a
		// stray run long ago must not stay confirmed all day).
		c.n, c.stash, c.room = 0, c.stash[:0], s.confirm
	}
	if outsideWindow(p, c.next) {
		// Far from where its packets were: not one sequence. Start
		// counting again from here.
		c.n, c.stash, c.room = 0, c.stash[:0], s.confirm
	}
	c.next = max(c.next, p.Next())
	c.lastRx = rxTime
	c.lineRx[line] = max(c.lineRx[line], rxTime)
	if len(data) <= a.cfg.SlotSize && c.room > 0 && len(c.stash) < cap(c.stash) {
		off := (idx*cap(c.stash) + len(c.stash)) * a.cfg.SlotSize
		n := copy(s.arena[off:off+a.cfg.SlotSize], data)
		c.stash = append(c.stash, stashedPacket{line: line, rxTime: rxTime, data: s.arena[off : off+n]})
		c.room--
		stashed = true
	}
	c.n++
	return idx, c.n >= a.cfg.SessionConfirm, stashed
}

// outsideWindow reports whether p lies more than candidateWindow from next,
// either way: not one sequence with the packets that ended at next. It is
// written without next+candidateWindow, which wraps for sequence numbers
// within the window of 2^64 (a numbering that far up then never confirmed).
func outsideWindow(p moldudp64.Packet, next uint64) bool {
	return p.Seq > next && p.Seq-next > candidateWindow || p.Next() < next && next-p.Next() > candidateWindow
}

// lock follows candidate idx's session from sequence number 1 and replays
// its stashed packets.
func (a *Arbiter) lock(idx int, rxTime int64) {
	c := &a.sess.cands[idx]
	old := a.session
	if a.started {
		a.Stats.SessionChanges++
		a.dropStrays()
		a.dropSession()
	}
	a.session = c.session
	a.started = true
	a.next = 1
	a.Stats.SessionChosen = true
	a.startAt(rxTime)
	stash := c.stash
	a.sess.forget()
	if a.onSession != nil {
		a.onSession(old, a.session)
	}
	// The stash is replayed from its first stamp: stamped before the
	// lock, by LineTimeout or more when the session waited for the old
	// one's silence, it is not a step of the wall clock back (which
	// would bring the session's start back to it, and count a line not
	// in the stash dead, silent since then: not waited for).
	a.startRx = rxTime
	for _, st := range stash {
		a.startRx = min(a.startRx, st.rxTime)
	}
	// The lines' read clocks (readRx) are those of the new session's
	// time, taken while it confirmed (c.readRx, below), not a stray's of
	// before it: one stamped before a step of the wall clock back would
	// end every wait for a line not yet heard from in the new session
	// (dropSession clears them; so does a first lock).
	a.readRx = [MaxLines]int64{}
	read, heard := c.readRx, c.lineRx
	for _, st := range stash {
		a.Offer(st.line, st.data, st.rxTime)
	}
	a.startRx = rxTime
	// A line's last packet of the session is the latest it brought while
	// the session confirmed, stashed or not: a line whose stashed packet
	// is LineTimeout old, but which went on bringing the session until
	// the change, is live, and waited for.
	for i := range heard {
		a.lastRx[i] = max(a.lastRx[i], heard[i])
	}
	// The lines' queues were read past the stash (the session's packets
	// not stashed, rejected while it confirmed): their clocks are where
	// they were read to, not the stash's old stamps; and the stash's
	// holes are settled by them before a packet beyond the stash extends
	// them. What lies between the stash and that packet becomes known
	// only then, and waits from then for a line that may still bring it.
	// (Before, it was one hole with the stash's, due at once by the
	// stash's stamps: packets of the new session that only the lagging
	// line carried, still unread, were declared missing.)
	for i := range read {
		if read[i] > a.lastRx[i] {
			a.readRx[i] = max(a.readRx[i], read[i])
		}
	}
	a.checkGap(rxTime, false)
}

// dropStrays drops, at a session change, the held packets of the old
// session that their lines contradict (each went on below it Grace or
// more after it: a corrupt sequence number, see contradicted), as checkGap
// would have once the hole before them came due: neither they nor the
// range up to them were the session's, and dropSession counts what the
// lines lost. Before, a change on the old session's silence (LineTimeout
// before Hold ran out) while a line's corrupt copy was held 300,000
// ahead counted the range up to it as a gap of the old session: 299,934
// messages no line lost (TestSessionChangeAfterHeldStray). The End of
// Session kept behind such a packet (staleEnd) goes with the session:
// nothing is announced. A packet left undecided (its line's next packet
// would tell: see unsure) is not known contradicted: it is forgotten with
// the session, as before (TestArbiterUndecidedSessionChange). Not at a
// restart: the lines went back below everything held, which is the old
// numbering's, not contradicted. A scan of what is held, once per change.
func (a *Arbiter) dropStrays() {
	a.staleEnd, a.staleEndLines = 0, 0
	for k := a.pend.n - 1; k >= 0; k-- {
		// dropContradicted removes k alone (staleEnd, cleared above,
		// announces nothing): k-1 is still below pend.n.
		if e := a.pend.at(k); a.contradicted(e) && !a.undecided(e) {
			a.dropContradicted(k)
		}
	}
}

// endsBehindStrays is asked, when candidate idx confirmed while the
// followed session has neither Ended nor fallen silent, whether it Ended
// now: all that stands beyond the End of Session kept as stale (staleEnd)
// is packets held from lines that each went on below them (their latest
// packet of the session that End of Session, or a heartbeat at its
// number) and then brought the candidate's packets. Such a packet is not
// the old session's future: its own line said the session ended before
// it, and then moved to another session, whose SessionConfirm packets
// counted only after the end (Offer recounts the candidates as it keeps
// a stale End of Session). They are dropped as contradicted, which
// announces the end (endBehindStray); the change is made if everything
// before the end was delivered or declared (Ended), else once it is, as
// after any end. Before, the change waited for Hold after the corrupt
// packet's line went below it (1 s in the soak), or the old session's
// silence (LineTimeout): a new session shorter than that was never
// followed (the soak, seeds 11096, 11151, 11300 and 12070: '0 session
// changes', its packets WrongSession, neither delivered nor declared),
// and a longer one lost all but its stash, declared a gap both lines had
// brought (TestSessionChangeBehindHeldStray). Not while a range is
// recovered or delivery frozen (their ends wait for the recovery or the
// snapshot, as before). Only on another session's confirmed packets with
// an End of Session kept: nothing on the in-order path.
func (a *Arbiter) endsBehindStrays(idx int) bool {
	end := a.staleEnd
	if end == 0 || end < a.next || a.recovering || a.frozen || a.pend.n == 0 || a.pend.at(a.pend.n-1).seq < end {
		return false
	}
	c := &a.sess.cands[idx]
	k := a.pend.n - 1
	for ; k >= 0 && a.pend.at(k).seq >= end; k-- {
		e := a.pend.at(k)
		if !a.wentBelowBefore(e, math.MinInt64, -1, true) || !a.byLines(e, func(i int, _ int64) bool {
			return a.staleEndLines&(1<<i) != 0 && a.belowSeq[i] == end && a.belowEnd[i] == end && c.lineRx[i] >= a.belowRx[i]
		}) {
			return false
		}
	}
	for j := a.pend.n - 1; j > k; j-- {
		a.dropContradicted(j) // the last announces the end (endBehindStray)
	}
	return a.Ended()
}

// dropSession forgets everything of the followed session, at a session
// change or a restart of its sequence. What it has not delivered (a range
// being recovered, packets held back: a change on its silence does not
// wait for them) is never delivered: counted as a gap of that session, not
// reported to onGap (its books are emptied for the new session).
func (a *Arbiter) dropSession() {
	if end := a.maxHigh(); end > a.next {
		a.Stats.Gaps++
		a.Stats.GapMessages += end - a.next
		a.Stats.LastGap = moldudp64.Range{First: a.next, Count: end - a.next}
	}
	if a.recovering {
		a.Stats.RecoveriesAbandoned++
	}
	for a.pend.n > 0 {
		a.popHeld()
	}
	a.high = [MaxLines]uint64{}
	a.staleEnd, a.staleEndLines = 0, 0
	a.lastRx, a.pastRx = [MaxLines]int64{}, [MaxLines]int64{}
	a.belowRx, a.belowSeq, a.belowEnd, a.belowPkt = [MaxLines]int64{}, [MaxLines]uint64{}, [MaxLines]uint64{}, [MaxLines]uint64{}
	a.ended, a.frozen, a.recovering, a.gapSince, a.suspect, a.checkedNow = false, false, false, 0, 0, 0
	if a.Stats.Behind && a.onBehind != nil {
		a.onBehind(0, a.startRx)
	}
	a.behindPkt, a.regressFrom, a.Stats.Behind = [MaxLines]uint64{}, 0, false
	a.restartRx = 0
	a.earlyLen, a.behindNew = 0, [MaxLines]bool{}
	// A line's read clock goes with its last packet: a stray's stamp of
	// the old session's time (from before a step of the wall clock back,
	// it ends every wait for a line not yet heard from) says nothing of
	// the new session's or restarted sequence's packets on the line.
	a.readRx = [MaxLines]int64{}
}

// silent reports whether the locked session sent nothing on any line for
// LineTimeout before now.
func (a *Arbiter) silent(now int64) bool {
	last := a.startRx
	for i := 0; i < a.cfg.Lines; i++ {
		last = max(last, a.lastRx[i])
	}
	if a.steppedBack(last, now) {
		// The wall clock stepped back since (by more than a live line
		// can lag behind another): the silence counts from now, not from
		// once the clock is back where it was.
		a.clockBack(now)
		last = now
	}
	return now-last >= int64(a.cfg.LineTimeout)
}
