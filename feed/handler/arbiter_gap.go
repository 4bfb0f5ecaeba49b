package handler

import (
	"math"

	"github.com/marketfeed/feedhandler/feed/moldudp64"
)

// This file holds the holes at next: when one is due (checkGap, by each
// line's clock from when it was seen: gapSeen, crossed), a large one that
// stands on one packet (unconfirmed), and a hole declared (declareGap).

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
	if a.inOrder() {
		a.gapSince = 0
		return
	}
	if a.frozen {
		return
	}
	stepSeen := false // now was checked against a step back (stepNow)
	for {
		if a.recovering {
			a.passed(now, idle)
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
				a.waitSince(a.pend.front().rxTime)
			}
		}
		if a.pend.n > 0 && a.pend.front().seq <= a.next {
			// Left held by drain (undecided): decided once it no longer
			// is, or dropped as contradicted once Hold ran out since its
			// line went on below it.
			a.passed(now, idle)
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
		a.passed(now, idle) // past the in-order path: something held or missing
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
			a.waitSince(a.gapSeen(now))
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
		// Nor past what the lines had shown when the wait began (gapTo):
		// a line's heartbeat showed the hole up to its number, data
		// beyond it lost on that line showed the rest only later, and a
		// line lagging by less than Hold still brings that (before, it
		// was declared with the first part: TestArbiterSessionsModel,
		// seed 6538, '"TEST000002": seq 71 declared missing').
		target = min(target, passed, a.gapTo)
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
			a.waitSince(a.pend.front().rxTime)
		}
	}
}

// waitSince starts the wait for the hole at next from t, as far as the
// lines have shown it now (gapTo).
func (a *Arbiter) waitSince(t int64) {
	a.gapSince, a.gapTo = t, a.maxHigh()
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
