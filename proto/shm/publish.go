package shm

import (
	"fmt"
	"runtime"
	"sync/atomic"
	"unsafe"
)

// This file holds the publish path: Publish, Begin and Commit, a slot found
// for them (Slot), the seqlock around a slot's write and the change
// journal's record.

// Publish stores s as the latest snapshot of s.Locate, then appends
// (locate, version) to the change journal. It allocates nothing.
//
// Publish is safe for concurrent use by goroutines that publish different
// locates (book shards): each slot has a single writer, the journal is
// shared (see appendJournal). Two goroutines must never publish the same
// locate at once. With Config.SingleWriter only one goroutine may publish
// at all (see end).
//
// Conflation is the caller's: publish each changed locate once per batch
// with its latest state; a reader always sees the newest snapshot published.
func (w *Writer) Publish(s *Snapshot) error {
	data, seq, bidAt, publish, err := w.begin(Slot{}, s, len(s.Bids), len(s.Asks))
	if err != nil {
		return err
	}
	w.end(seq, uint32(writeSnapshot(data, s, bidAt, publish)))
	return nil
}

// Pending is a publish that Begin started and Commit ends. Between the two
// the slot is being written (readers retry), and the caller writes the
// snapshot's levels into Bids and Asks.
type Pending struct {
	// Bids and Asks are the snapshot's level vectors, of the lengths given
	// to Begin, best first: write every level before Commit, none after.
	// On little-endian machines they are the slot's own memory, so a level
	// written there is not copied again.
	Bids, Asks []Level

	data  []byte // the slot's FlatBuffer
	seq   *uint64
	n     uint32 // FlatBuffer length
	bidAt int    // where the levels go, for the big-endian encoding
	askAt int
	buf   []Level // big-endian only: Bids and Asks, encoded by Commit
}

// Slot is where a registered locate's snapshots go, found once with
// Writer.Slot so that Begin reads neither the locate index nor the
// directory. The zero Slot is none.
type Slot struct {
	v uint32 // the slot's index + 1 (at most MaxLocates), and its bid vector's offset (bidsAt) << 24
}

// slotOf is the Slot of index whose symbol is symLen bytes long. The bid
// vector's offset, which the symbol's length sets (bidsAt, at most 156),
// is kept rather than the length: a publish needs only the offset.
func slotOf(index uint32, symLen byte) Slot {
	return Slot{index + 1 | uint32(bidsAt(int(symLen)))<<24}
}

// index is the slot's index; the zero Slot's wraps to a huge one, beyond
// any writer's capacity.
func (sl Slot) index() uint64 { return uint64(sl.v&(1<<24-1)) - 1 }

// bidAt is where the slot's bid vector's count goes in its FlatBuffer
// (bidsAt of the symbol's length).
func (sl Slot) bidAt() int { return int(sl.v >> 24) }

// lookup finds the slot of a registered locate through the locate index
// and the directory (two loads); false if the locate is not registered.
func (w *Writer) lookup(locate uint16) (Slot, bool) {
	v := atomic.LoadUint32(w.m.indexEntry(&w.l, locate))
	if v == 0 {
		return Slot{}, false
	}
	return slotOf(v-1, w.m.dirSymLen(&w.l, uint64(v-1))), true
}

// Slot returns the slot of a registered locate, for Begin. It takes w.mu
// (it reads the mapping, and may run while Close does): look a slot up
// once, not per publish.
func (w *Writer) Slot(locate uint16) (Slot, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed.Load() {
		return Slot{}, fmt.Errorf("slot of locate %d: %w", locate, ErrClosed)
	}
	sl, ok := w.lookup(locate)
	if !ok {
		return Slot{}, fmt.Errorf("slot of locate %d: %w", locate, ErrUnknownLocate)
	}
	return sl, nil
}

// Begin starts a publish of s.Locate, whose slot is sl (from Slot; the zero
// Slot has Begin look the slot up by s.Locate, at the cost of two
// loads), with nb bid and na ask levels: it writes every field of s but its Bids and Asks (ignored),
// and hands the slot's level vectors to the caller in p. Commit(p) ends
// the publish. Between the two the caller writes the levels, and nothing
// else: no other Begin or Publish of the same locate, and, with
// Config.SingleWriter, none at all. Begin and Commit allocate nothing (on a
// big-endian machine, the first Begin with a p allocates its level
// storage).
//
// Publish(s) is Begin, a copy of s's levels, Commit. A caller that reads
// its levels from elsewhere (an order book) writes them straight into the
// slot instead.
//
// On an error nothing was written and Commit must not be called.
func (w *Writer) Begin(sl Slot, s *Snapshot, nb, na int, p *Pending) error {
	// The common case (a little-endian machine, a Slot of this writer
	// for s.Locate, a publish time given) is BeginDirect's, with s's
	// fields; anything else goes the general way, which reports it.
	if t, bids, asks, n, _ := w.BeginDirect(sl, s.Locate, nb, na, s.PublishTime); t != nil {
		t.set(s)
		p.Bids, p.Asks = bids, asks
		p.seq, p.n = t.seqWord(), n
		return nil
	}
	data, seq, bids, publish, err := w.begin(sl, s, nb, na)
	if err != nil {
		return err
	}
	p.data, p.seq = data, seq
	bidAt, askAt, n := writeTable(data, s, bids, nb, na, publish)
	p.n = uint32(n)
	if levelsInPlace {
		p.Bids, p.Asks = levelView(p.data[bidAt:], nb), levelView(p.data[askAt:], na)
		return nil
	}
	if cap(p.buf) < 2*w.l.depth {
		p.buf = make([]Level, 2*w.l.depth)
	}
	p.bidAt, p.askAt = bidAt, askAt
	p.Bids, p.Asks = p.buf[:nb:nb], p.buf[w.l.depth:w.l.depth+na:w.l.depth+na]
	return nil
}

// Commit ends the publish that Begin started: the snapshot becomes
// readable, and (locate, version) goes to the change journal.
func (w *Writer) Commit(p *Pending) {
	if !levelsInPlace {
		putLevels(p.data[p.bidAt:], p.Bids)
		putLevels(p.data[p.askAt:], p.Asks)
	}
	p.Bids, p.Asks = nil, nil
	w.end(p.seq, p.n)
}

// begin checks a publish of nb bid and na ask levels of s.Locate into sl
// (the zero Slot: look it up), and makes the slot's count odd (readers
// retry): the start of Publish and Begin. It returns the slot's
// FlatBuffer, its seqlock word, where its bid vector goes (bidsAt) and
// the publish time.
func (w *Writer) begin(sl Slot, s *Snapshot, nb, na int) (data []byte, seq *uint64, bidAt int, publish int64, err error) {
	if w.closed.Load() {
		return nil, nil, 0, 0, fmt.Errorf("publish locate %d: %w", s.Locate, ErrClosed)
	}
	// The clock is read before the slot's offset is computed: off then
	// never lives across a call (a stack spill on every publish).
	publish = s.PublishTime
	if publish == 0 {
		publish = now()
	}
	var off slotOffset
	if sl.v == 0 {
		var ok bool
		if sl, ok = w.lookup(s.Locate); !ok {
			return nil, nil, 0, 0, fmt.Errorf("publish locate %d: %w", s.Locate, ErrUnknownLocate)
		}
		off = w.l.slotOff(sl.index())
	} else if slot := sl.index(); slot >= w.l.capacity {
		// Not a slot of this writer (or not made by slotOf: the zero
		// index wraps).
		return nil, nil, 0, 0, fmt.Errorf("publish locate %d: slot out of this writer's %d slots: %w", s.Locate, w.l.capacity, ErrUnknownLocate)
	} else if off = w.l.slotOff(slot); atomic.LoadUint32(w.m.slotLocate(off)) != uint32(s.Locate) {
		// The slot's header names its locate (Register wrote it before
		// the slot became known), on the line Begin writes anyway. A
		// retired slot's has slotRetired set.
		if atomic.LoadUint32(w.m.slotLocate(off)) == uint32(s.Locate)|slotRetired {
			return nil, nil, 0, 0, fmt.Errorf("publish locate %d: slot %d retired (the locate or its symbol was bound again): %w", s.Locate, slot, ErrUnknownLocate)
		}
		return nil, nil, 0, 0, fmt.Errorf("publish locate %d: not the locate of slot %d: %w", s.Locate, slot, ErrUnknownLocate)
	}
	if nb > w.l.depth || na > w.l.depth || nb < 0 || na < 0 {
		return nil, nil, 0, 0, fmt.Errorf("publish locate %d: %d bids, %d asks: %w %d", s.Locate, nb, na, ErrTooDeep, w.l.depth)
	}
	seq = w.m.slotSeq(off)
	// The seqlock needs store order only, never an atomic read-modify-write
	// (one writer per slot): the odd count before the data, the data and
	// len before the even count (order.go, docs/SHM.md "Memory ordering").
	s0 := atomic.LoadUint64(seq)
	if s0&1 != 0 {
		// Best effort: catches a second publisher only if it is inside
		// its write window now.
		panic(fmt.Sprintf("shm: locate %d published concurrently by two goroutines", s.Locate))
	}
	storeBegin64(seq, s0+1)
	return w.m.slotData(&w.l, off), seq, sl.bidAt(), publish, nil
}

// end makes the slot whose seqlock word is seq readable (its FlatBuffer's
// length n, then the even count, release) and appends the slot's new
// version to the journal: the end of Publish, Commit and CommitDirect. The
// count and the locate are read back from the slot's header: the count is
// this goroutine's odd one (storeBegin64), and the locate the publish's
// (begin and BeginDirect checked it; a retired slot's keeps it in its low
// 16 bits).
//
// A single writer's journal has no other writer: the record's previous lap
// is complete and no claim is needed. Its record (busy stamp, data, stamp
// position+1) and then the head are written in the same ordered-store call
// as the slot's end; readers never see a head beyond a complete record.
func (w *Writer) end(seq *uint64, n uint32) {
	v := *seq + 1
	locate := uint16(atomic.LoadUint32((*uint32)(unsafe.Add(unsafe.Pointer(seq), slotLocateAt-slotSeqAt))))
	if w.single {
		pos := w.head
		// The writer's own copy of the head moves first: nothing is live
		// across the call then (w and pos were spilled and reloaded
		// around it), and no reader sees the copy.
		w.head = pos + 1
		// The record's data: the locate, and the version (v/2)&versionMask
		// in two shifts.
		data := uint64(locate)<<48 | v<<15>>16
		// The journal and the head lie inside the mapping (the layout was
		// checked at Create; recordOff wraps pos into the journal): no
		// slice bounds to check.
		mem := unsafe.Pointer(unsafe.SliceData(w.m.mem))
		commitSingle(seq, n, v, (*uint64)(unsafe.Add(mem, w.l.recordOff(pos))), data, pos+1, (*uint64)(unsafe.Add(mem, offHead)))
		return
	}
	seqEnd(seq, n, v)
	w.appendJournal(locate, v/2)
}

// appendJournal appends (locate, version) to the change journal. Several
// publishers share the journal: each claims a position with an atomic
// fetch-add on the head, waits until the record's previous lap is complete,
// then writes the record under its own stamp (busy, data, position+1).
func (w *Writer) appendJournal(locate uint16, version uint64) {
	pos := atomic.AddUint64(w.m.u64(offHead), 1) - 1
	stamp := w.m.u64(w.l.recordOff(pos))
	var prev uint64
	if pos >= w.l.journalLen {
		prev = pos - w.l.journalLen + 1
	}
	for spins := 0; atomic.LoadUint64(stamp) != prev; spins++ {
		// Another publisher claimed this record one lap earlier and has
		// not finished writing it: practically never, and only for the
		// few nanoseconds of its three stores.
		if spins > 100 {
			runtime.Gosched()
		}
	}
	putRecord(stamp, uint64(locate)<<48|version&versionMask, pos+1)
}
