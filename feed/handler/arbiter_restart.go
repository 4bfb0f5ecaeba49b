package handler

import "github.com/marketfeed/feedhandler/feed/moldudp64"

// This file holds the sequence restarts under the same session name: lines
// gone back behind next (regressed, Behind and the BehindFunc), the
// fingerprints of a numbering's first messages that tell a restart from a
// replay (noteEarly, differsEarly), the restart followed from 1 (restart)
// and the old numbering's packets read after it (oldNumbering).

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
func (a *Arbiter) noteEarly(p *moldudp64.Packet, skip int) {
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
