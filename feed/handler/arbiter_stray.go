package handler

import (
	"bytes"
	"math"

	"github.com/marketfeed/feedhandler/feed/moldudp64"
)

// This file holds the held packets that their own lines contradict (a
// corrupt or forged sequence number within MaxJump): contradicted,
// forsaken, and the packets left undecided, catching up or paused until
// their lines' next packets tell; a stray dropped (dropContradicted), the
// range being recovered narrowed past one (strayEnd), and an End of
// Session kept as stale behind one announced once it is gone
// (endBehindStray).

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
func (a *Arbiter) decide(p *moldudp64.Packet) {
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
	a.checkedNow = 0 // jumpedPast's drop is followed by no check (NextDue)
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
// leaves it behind next: nothing is announced. The candidates are not
// recounted here: Offer did as it kept the End of Session, so what they
// counted since came after the end. Recounted again, a next session that
// confirmed behind the stray (endsBehindStrays) with a hole before the
// end, not yet declared, had to confirm a second time once it was: followed
// SessionConfirm copies late (TestSessionChangeBehindHeldStrayHoleBeforeEnd).
func (a *Arbiter) endBehindStray() {
	if a.staleEnd == 0 || a.staleEnd < a.next || a.staleEnd < a.maxHigh() {
		return
	}
	if !a.ended {
		a.Stats.EndOfSession++
	}
	a.announceEnd(a.staleEnd, -1, 0)
	for i := 0; i < a.cfg.Lines; i++ {
		if a.staleEndLines&(1<<i) != 0 {
			a.high[i] = max(a.high[i], a.staleEnd)
		}
	}
	a.staleEnd, a.staleEndLines = 0, 0
}
