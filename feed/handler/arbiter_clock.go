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
// from the stamps that start them: the earliest after the latest empty
// poll when nothing was offered or changed since (polled), any otherwise.
// One at or before now says the next wait should end at once: a packet's
// check goes by the lines' stamps (a line's wait by its own, a line never
// heard from not at all), and a change since the empty poll (a hole
// filled, the next one behind it) may have a deadline passed then count
// now. A time it returns may find nothing due yet (a line still waited
// for by another deadline), never one past what was due, but for waits
// counted across a step of the wall clock back (afterStep), whose stamps
// it takes as they are: those are acted on at the wait's timeout, as
// before. Each empty poll passes the deadlines up to its now: a run of
// them woken by it passes them all, a few a line, then the wait is the
// receiver's again. O(lines) with no packet scanned, and only a branch
// while nothing is held or missing; it allocates nothing.
func (a *Arbiter) NextDue(now int64) int64 {
	if !a.started || a.frozen || a.pend.n == 0 && a.maxHigh() <= a.next {
		return 0
	}
	if a.recovering && !a.wentBelowAny() {
		// The recovery source fills the hole (its timers are its own);
		// only a held packet its lines went on below (strayEnd) is due
		// by the lines' clocks meanwhile.
		return 0
	}
	grace, hold, timeout := int64(a.cfg.Grace), int64(a.cfg.Hold), int64(a.cfg.LineTimeout)
	due, from := int64(math.MaxInt64), int64(math.MinInt64)
	if a.polled {
		from = min(a.drainedAt, now)
	}
	at := func(t int64) {
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
	at(since + grace)
	at(since + hold)
	at(a.startRx + timeout)
	for i := 0; i < a.cfg.Lines; i++ {
		if a.lastRx[i] != 0 {
			at(a.lastRx[i] + hold)
			at(a.lastRx[i] + timeout)
		}
		if a.pastRx[i] != 0 {
			at(a.pastRx[i] + grace)
			at(a.pastRx[i] + hold)
		}
	}
	if due == math.MaxInt64 {
		return 0
	}
	return due
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
