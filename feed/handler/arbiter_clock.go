package handler

import "math"

// This file holds the Arbiter's clock: the empty polls (Tick) and failed
// receives (Advance) that move it when no packet does, the datagrams read
// that are not the session's (rejected), how far the lines were read
// (linesClock), and the steps of the wall clock back (steppedBack,
// clockBack, afterStep, stepNow), and when an empty poll next may find
// something due (NextDue).

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
	switch {
	case !a.started:
	case a.inOrder():
		// checkGap's first exit without its call (the receive loop's
		// empty round).
		a.gapSince = 0
	default:
		a.checkGap(now, true)
	}
}

// inOrder reports that checkGap has nothing to do but clear gapSince:
// not frozen, not recovering, nothing held, no line past the next number.
// checkGap tests it first; Tick tests it to skip the call.
func (a *Arbiter) inOrder() bool {
	return a.pend.n == 0 && !a.recovering && !a.frozen && a.maxHigh() <= a.next
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

// NextDue returns when an empty poll (Tick) next may find something held
// or missing due: a hole's Grace after it was seen or after a line moved
// past it, its Hold, a line's Hold of silence (a held packet its lines
// went on below, deciding or paused) or its LineTimeout (dead: no longer
// waited for), the session's first packet's LineTimeout (a line never
// heard from); 0 when nothing is held or missing, delivery is frozen, or
// a recovery source fills the hole with no held packet that may be a
// stray (strayEnd). The receive loop wakes its wait then (a timer), so
// that on quiet lines a hole is declared or handed to the recovery when
// due, not when the wait next times out (a quarter of Hold) or a packet
// comes.
//
// It is every deadline checkGap compares an empty poll's now with, taken
// from the stamps that start them, that lies past the clock the latest
// check compared it with (checked, see passed) when nothing was offered
// or changed since; any otherwise. A check passes every deadline up to
// the clock it compares it with, and an empty poll's (now, for every
// line) is later: a deadline at or before it leaves what the check found
// as it was, and only a later one may change it. A packet's check
// compares a line's waits (the hole's Grace for a line past it, its Hold,
// the line's Hold of silence) with the line's own clock (its latest
// stamp), a line's LineTimeout and the session's start with the check's
// now, and a Hold that runs from another line (paused) with the earliest
// clock of a line waited for. One at or before now says the next wait
// should end at once: a line read behind or silent was compared with an
// earlier clock, and a change since the check (a hole filled, the next
// one behind it) may have a deadline passed then count now. So a
// round of packets that leaves something held or missing wakes no wait
// for the deadlines its check passed (the session's start plus
// LineTimeout, a dead line's, the hole's Grace by a line behind:
// TestArbiterNextDueAfterPackets). A time it returns may find nothing
// due yet (a line still waited for by another deadline: at most one such
// wake a hole, TestArbiterNextDueIdleWakes), never one past
// what was due, but for waits counted across a step of the wall clock
// back (afterStep), whose stamps it takes as they are: those are acted
// on at the wait's timeout. Each empty poll passes the
// deadlines up to its now: a run of them woken by it passes them all, a
// few a line, then the wait is the receiver's again. O(lines) with no
// packet scanned, and only a branch while nothing is held or missing; it
// allocates nothing.
func (a *Arbiter) NextDue(now int64) int64 {
	if a.noDeadline() {
		return 0
	}
	return a.nextDue(now)
}

// noDeadline is NextDue's first exit, which inlines at its callers (the
// receive loop's every round): not started, frozen, or nothing held or
// missing.
func (a *Arbiter) noDeadline() bool {
	return !a.started || a.frozen || a.pend.n == 0 && a.maxHigh() <= a.next
}

// nextDue is NextDue past its first exit.
func (a *Arbiter) nextDue(now int64) int64 {
	if a.recovering && !a.wentBelowAny() {
		// The recovery source fills the hole (its timers are its own);
		// only a held packet its lines went on below (strayEnd) is due
		// by the lines' clocks meanwhile.
		return 0
	}
	grace, hold, timeout := int64(a.cfg.Grace), int64(a.cfg.Hold), int64(a.cfg.LineTimeout)
	// from: past what a clock passed, at most now (a clock stepped back).
	from := func(c int64) int64 {
		if a.checkedNow == 0 {
			return math.MinInt64 // no check since a change: any
		}
		return min(c, now)
	}
	byNow, byLines := from(a.checkedNow), from(a.checkedNow)
	for i := 0; i < a.cfg.Lines; i++ {
		byLines = min(byLines, from(a.checked[i]))
	}
	due := int64(math.MaxInt64)
	at := func(t, from int64) {
		if t > from && t < due {
			due = t
		}
	}
	// The hole's wait, from when it was seen: where checkGap has not
	// taken it yet (a hole reached since, or its first packet dropped),
	// from where it will (gapSeen).
	since := a.gapSince
	if since == 0 || a.gapNext != a.next {
		since = a.gapSeen(now)
	}
	// A hole is acted on only once every live line is done with it: while
	// one that did not move past it waits for it (live, its Hold not
	// passed by its clock), a line's Grace for it is no deadline; the
	// hole's Hold and that line's LineTimeout are, and end the wait.
	waited := false
	for i := 0; i < a.cfg.Lines; i++ {
		if (a.high[i] <= a.next || a.backAtNext(i)) && since+hold > from(a.checked[i]) && a.live(i, now) {
			waited = true
		}
	}
	for i := 0; i < a.cfg.Lines; i++ {
		byLine := from(a.checked[i])
		at(since+hold, byLine)
		if a.lastRx[i] == 0 {
			at(a.startRx+timeout, byNow) // never heard from: dead then
		} else {
			at(a.lastRx[i]+hold, byLine)
			at(a.lastRx[i]+timeout, byNow)
		}
		if a.high[i] > a.next {
			// Past the hole: Grace after it was seen or the line moved
			// past it; another line's Hold after it did (paused).
			if !waited {
				at(since+grace, byLine)
				if a.pastRx[i] != 0 {
					at(a.pastRx[i]+grace, byLine)
				}
			}
			if a.pastRx[i] != 0 {
				at(a.pastRx[i]+hold, byLines)
			}
		}
	}
	if due == math.MaxInt64 {
		return 0
	}
	return due
}

// passed records, for NextDue, the clocks that checkGap at now (an empty
// poll's with idle) compared the deadlines of the holes and held packets
// with: each line's (see checked), now. An empty poll's clock is now for
// every line; a packet's check's is each line's latest stamp of the
// session or of a datagram rejected since (a line never heard from: that,
// or 0, nothing passed, while the session is younger than LineTimeout),
// as checkGap and deciding take it. A line dead by now is waited for by
// no later check either, until it brings a packet. Only past the
// in-order exit (something held or missing), O(lines).
func (a *Arbiter) passed(now int64, idle bool) {
	a.checkedNow = now
	for i := 0; i < a.cfg.Lines; i++ {
		switch {
		case !a.live(i, now):
			a.checked[i] = math.MaxInt64 // dead
		case idle:
			a.checked[i] = now
		default:
			a.checked[i] = max(a.lastRx[i], a.readRx[i])
		}
	}
}

// live reports whether line i is still waited for at now (NextDue,
// passed): its latest packet of the session less than LineTimeout
// before, or, never heard from, the session's first packet so (its
// packets may still be queued).
func (a *Arbiter) live(i int, now int64) bool {
	if last := a.lastRx[i]; last != 0 {
		return now-last < int64(a.cfg.LineTimeout)
	}
	return now-a.startRx < int64(a.cfg.LineTimeout)
}

// wentBelowAny reports whether some line's latest packet went below its
// own highest (see wentBelow): only then may a held packet be a stray.
func (a *Arbiter) wentBelowAny() bool {
	for i := 0; i < a.cfg.Lines; i++ {
		if a.belowPkt[i] == a.Stats.Lines[i].Packets && a.belowPkt[i] != 0 {
			return true
		}
	}
	return false
}
