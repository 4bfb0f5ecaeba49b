package handler

import (
	"sort"

	"github.com/marketfeed/feedhandler/feed/moldudp64"
)

// This file holds the Arbiter's side of the recovery: the recovery source's
// hooks (SetMissing, SetNarrowed), the range being filled (Recovering) and
// its answers (OfferRecovered), a full hold-back arena handed over to the
// source (handOver), delivery frozen for a snapshot (Freeze, Unfreeze), a
// range given up (Abandon) and a replay's start inside the session
// (StartAt).

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
		q := &a.recPkt // handed to Deliver by pointer: a local would escape
		*q = p
		if a.waiting {
			a.decide(q)
		}
		a.emit(q, rxTime, true)
		a.drainAfter(q)
		a.repairing = false
	default:
		// Ahead of next, or frozen (a late answer while a snapshot is
		// fetched: held with the lines' packets until Unfreeze).
		if r := a.hold(data, &p, rxTime, fromRecovery); r != holdOK {
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
	a.gapSince, a.checkedNow = 0, 0
	if a.pend.n > 0 {
		a.waitSince(a.pend.front().rxTime)
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
		a.waitSince(a.pend.front().rxTime)
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
	return a.hold(data, &p, rxTime, line) == holdOK
}

// aheadScan bounds the held packets holesAhead looks at, from the first
// past the range being recovered: a spill of thousands of packets
// between two holes is not walked at every round.
const aheadScan = 256

// holesAhead appends to dst, while a range is being recovered, the holes
// among the packets held past it that are missing on every live line, in
// order, at most cap(dst)-len(dst) of them, each of at most maxCount
// messages (a larger one is a catch-up, or stands on a packet a line
// contradicts later: left to its turn). A hole is missing on every live
// line when each line that brought a packet past it did so Grace or more
// before its latest and went on past that packet (a corrupt sequence
// number is one a line does not go on from), and every line that brought
// none is silent for LineTimeout: as checkGap takes a hole for missing at
// next, by each line's own clock, less the waits by Hold for a live line
// that did not move past (such a hole waits for its turn). Answers held
// (a recovery source's) are not a line's: the hole before one is judged
// by the lines' packets past it. It allocates nothing.
func (a *Arbiter) holesAhead(dst []moldudp64.Range, maxCount uint64, now int64) []moldudp64.Range {
	if !a.recovering || a.frozen || a.pend.n == 0 {
		return dst
	}
	k := sort.Search(a.pend.n, func(i int) bool { return a.pend.at(i).seq >= a.recoverEnd })
	cur := a.recoverEnd // the first number not held past the range
	if k > 0 {
		cur = max(cur, a.pend.at(k-1).end)
	}
	end := min(a.pend.n, k+aheadScan)
	var from [MaxLines]int // per line, no packet of it held in [k, from[i]) (see missingAhead)
	for ; k < end && len(dst) < cap(dst); k++ {
		e := a.pend.at(k)
		if e.seq > cur && e.seq-cur <= maxCount {
			missing, more := a.missingAhead(k, end, now, &from)
			if missing {
				dst = append(dst, moldudp64.Range{First: cur, Count: e.seq - cur})
			}
			if !more {
				break
			}
		}
		cur = max(cur, e.end)
	}
	return dst
}

// missingAhead reports whether the hole before held packet k is missing on
// every live line (holesAhead), looking at the held packets up to end.
// A line silent for LineTimeout is not waited for (every line silent: the
// feed's end, or a path lost), but a packet it brought past the hole is
// judged as a live line's: it went on past it. more is false when a live
// line brought no packet in [k, end): nor past any later hole, so none is
// missing. from[i] is where line i's search starts (no packet of it held
// in [k, from[i])), moved on to its packet found: holesAhead's k only
// grows, so each line's held packets are walked once, not once a hole
// (up to aheadScan holes of aheadScan packets each, every round).
func (a *Arbiter) missingAhead(k, end int, now int64, from *[MaxLines]int) (missing, more bool) {
	past := 0
	for i := 0; i < a.cfg.Lines; i++ {
		if a.lastRx[i] == 0 {
			continue // never heard from
		}
		j := max(k, from[i])
		for j < end && a.pend.at(j).lineRx[i] == 0 {
			j++
		}
		from[i] = j
		if j == end {
			if now-a.lastRx[i] >= int64(a.cfg.LineTimeout) {
				continue // dead, nothing of it past the hole: not waited for
			}
			return false, false // no packet of it past the hole (held, among those looked at)
		}
		e := a.pend.at(j)
		if a.lastRx[i]-e.lineRx[i] < int64(a.cfg.Grace) || a.high[i] <= e.end {
			return false, true
		}
		past++
	}
	return past > 0, true
}
