package handler

import (
	"sort"

	"github.com/marketfeed/feedhandler/feed/moldudp64"
)

// This file holds the packets held back: hold and popHeld, and the fixed
// arena that keeps their copies in sequence order (pending).

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
func (a *Arbiter) hold(data []byte, p *moldudp64.Packet, rxTime int64, line int) int {
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
