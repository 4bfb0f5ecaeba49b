package shm

import (
	"encoding/binary"
	"fmt"
	"strings"
	"sync/atomic"

	"github.com/marketfeed/feedhandler/proto/bookfb"
)

// This file holds the binding of locates to slots (Register; Rebind and
// Unbind are rebind.go's), the retirement of a slot whose binding ends,
// and the count of the slots used.

// Register assigns a slot to an instrument. Registering a locate again with
// the same symbol is a no-op; with another symbol it is an error. symbol is
// ASCII, trailing spaces are dropped, at most 8 bytes.
//
// A symbol registered under another locate before (ITCH reassigns locates
// every session) moves: its old directory entry is retired and its old
// locate unbound, as Rebind does (see there).
//
// Register knows no epochs: it binds as above whatever the epochs of the
// bindings it replaces, and its binding has epoch 0, so a Rebind at epoch
// 0 treats it as a binding of its own epoch and one at a later epoch as
// an older one (see Rebind).
//
// After Close (also one running concurrently) it fails with ErrClosed.
func (w *Writer) Register(locate uint16, symbol string) error {
	sym := trimSymbol(symbol)
	if len(sym) == 0 || len(sym) > 8 {
		return fmt.Errorf("register locate %d: bad symbol %q", locate, strings.Clone(symbol))
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed.Load() {
		return fmt.Errorf("register locate %d: %w", locate, ErrClosed)
	}
	_, _, err := w.bind(locate, sym, false, 0)
	if err != nil {
		return fmt.Errorf("register locate %d %q: %w", locate, strings.Clone(sym), err)
	}
	return nil
}

// bind binds locate to sym (trimmed, 1..8 bytes) under w.mu, for Register
// and Rebind, and returns the locate's slot. A locate bound to sym already
// keeps its slot. One bound to another symbol is an error, unless rebind:
// then its entry is retired (retired is true) and it gets a fresh slot.
// Another locate bound to sym loses it: its entry is retired and it is
// unbound, so that one symbol never has two live entries.
//
// With rebind, epoch orders the bindings (Rebind's rules): a binding never
// replaces one of a later epoch (ErrStaleBinding), and a symbol bound to
// another locate in the same epoch stays there (ErrDuplicateSymbol). Every
// check comes before any retirement: a refused bind changes nothing.
// Without rebind (Register) epochs are not checked and the binding's is 0.
//
// Store order, for readers (which load the count, then the entries, or the
// index, then an entry): every retirement (the flag, then the index entry
// cleared) comes before the new entry's index and count stores, so a
// reader that sees the new entry sees the old ones retired. A reader may
// find sym nowhere for the few stores in between, never at two locates.
func (w *Writer) bind(locate uint16, sym string, rebind bool, epoch uint64) (sl Slot, retired bool, err error) {
	key := keyOf(sym)
	idx := w.m.indexEntry(&w.l, locate)
	bound, boundSym := uint64(0), []byte(nil)
	if v := atomic.LoadUint32(idx); v != 0 {
		bound = uint64(v - 1)
		boundSym = dirSymbol(w.m.dirEntry(&w.l, bound))
		if string(boundSym) == sym {
			if rebind {
				w.epochs[bound] = max(w.epochs[bound], epoch)
			}
			return slotOf(uint32(bound), byte(len(sym))), false, nil
		}
		if !rebind {
			return Slot{}, false, fmt.Errorf("already registered as %q", string(boundSym))
		}
		if e := w.epochs[bound]; e > epoch {
			return Slot{}, false, fmt.Errorf("locate bound to %q at epoch %d, after epoch %d: %w", string(boundSym), e, epoch, ErrStaleBinding)
		}
	}
	other, moved := w.live[key]
	if moved && rebind {
		otherLocate := dirLocate(w.m.dirEntry(&w.l, other))
		switch e := w.epochs[other]; {
		case e > epoch:
			return Slot{}, false, fmt.Errorf("symbol bound to locate %d at epoch %d, after epoch %d: %w", otherLocate, e, epoch, ErrStaleBinding)
		case e == epoch:
			return Slot{}, false, fmt.Errorf("symbol bound to locate %d in the same epoch %d: %w", otherLocate, epoch, ErrDuplicateSymbol)
		}
	}
	// Decided: retire what the new binding replaces.
	if len(boundSym) != 0 {
		// The locate's own binding: its slot is the caller's to write.
		w.retire(bound, keyOf(boundSym), true)
		retired = true
	}
	if moved {
		// The symbol moved to this locate (a new session): its old
		// locate's entry names a stale book. That locate's slot is
		// another publisher's (book shards publish by locate), unless
		// one goroutine publishes everything.
		w.retire(other, key, w.single)
	}
	slot := w.count.Load()
	if slot == w.l.capacity {
		w.warnSlots(true)
		return Slot{}, retired, fmt.Errorf("%w (%d)", ErrFull, w.l.capacity)
	}
	e := w.m.dirEntry(&w.l, slot)
	e[0], e[1] = byte(locate), byte(locate>>8)
	e[2] = byte(len(sym))
	copy(e[8:16], "        ")
	copy(e[8:], sym)
	off := w.l.slotOff(slot)
	atomic.StoreUint32(w.m.slotLocate(off), uint32(locate))
	writePrefix(w.m.slotData(&w.l, off), locate, key[:len(sym)])
	// Readers find the directory entry through the index or the count, both
	// stored after the entry.
	atomic.StoreUint32(idx, uint32(slot+1))
	w.count.Store(slot + 1)
	atomic.StoreUint32(w.m.u32(offCount), uint32(slot+1))
	w.live[key] = slot
	w.epochs[slot] = epoch
	w.warnSlots(false)
	return slotOf(uint32(slot), byte(len(sym))), retired, nil
}

// symKey is a trimmed symbol (1 to 8 bytes) padded with zero bytes: the
// writer's map key, so that binding a symbol allocates nothing (a string
// key would keep the caller's string, which then has to be on the heap,
// made on the publishing thread). A
// trimmed symbol never ends in a zero byte, so two symbols never share a
// key.
type symKey [8]byte

// keyOf returns sym's key; sym is trimmed and at most 8 bytes (a string
// given to bind, or a directory entry's symbol bytes).
func keyOf[S string | []byte](sym S) (k symKey) {
	copy(k[:], sym)
	return k
}

// retire flags the live directory entry of slot (symbol sym) retired and
// unbinds its locate, under w.mu. The flag is stored before the index entry
// is cleared, and both before any later index or count store, which
// publish them.
//
// A slot that holds a snapshot (version v) gets a journal record of its
// locate at version v+1 first, so that a follower learns that its book is
// gone (docs/SHM.md, "Retired slots"): the record of v+1 is a final publish
// of the slot when own says the caller may write it (Config.SingleWriter,
// or the locate the caller binds or unbinds: no other goroutine publishes
// it), the last snapshot again flagged PossiblyStale, appended before the
// retirement, so that a read returns it (or, once the index entry is
// cleared, ErrUnknownLocate). A slot of another publisher (shared journal,
// a symbol that moved from its locate) is not written: a publish of it may
// be under way, and the writer must not be a second writer of the slot.
// Its record then follows the clearing of the index entry, at one version
// past the slot's (past the one under way, if any): no read of the locate
// reaches the slot any more. Nothing of this is on the publish path.
func (w *Writer) retire(slot uint64, sym symKey, own bool) {
	e := w.m.dirEntry(&w.l, slot)
	locate := dirLocate(e)
	off := w.l.slotOff(slot)
	seq := w.m.slotSeq(off)
	s0 := atomic.LoadUint64(seq)
	final := own && s0 != 0 && s0&1 == 0 // odd: a Begin of its own not committed; 0: nothing to retract
	if final {
		w.publishRetired(off, seq, s0)
	}
	e[dirFlags] |= dirRetired
	// A publisher that kept the slot's Slot fails from now on, instead of
	// writing where no reader looks (a publish already inside the slot
	// completes).
	atomic.StoreUint32(w.m.slotLocate(off), uint32(locate)|slotRetired)
	if idx := w.m.indexEntry(&w.l, locate); atomic.LoadUint32(idx) == uint32(slot+1) {
		atomic.StoreUint32(idx, 0)
	}
	// Loaded again after the stores above (sequentially consistent): a
	// publish that began before them shows here, odd or done.
	if s := atomic.LoadUint64(seq); !final && !w.single && s != 0 {
		w.appendJournal(locate, (s+1)/2+1)
	}
	delete(w.live, sym)
	w.retired.Add(1)
}

// publishRetired publishes the slot at off (locate's, version s0/2) once
// more, before retire retires it: the same snapshot, flagged
// PossiblyStale, at a new publish time, and its journal record (end). The
// caller is the slot's only writer (retire's own).
func (w *Writer) publishRetired(off slotOffset, seq *uint64, s0 uint64) {
	storeBegin64(seq, s0+1)
	t := w.m.slotData(&w.l, off)[tableAt:]
	le := binary.LittleEndian // Create refuses big-endian hosts
	le.PutUint16(t[fFlags:], le.Uint16(t[fFlags:])|uint16(bookfb.FlagsPossiblyStale))
	le.PutUint64(t[fPublishTime:], uint64(now()))
	w.end(seq, atomic.LoadUint32(w.m.slotLen(off)))
}

// warnSlots logs, once per file, that the slots in use (live and retired)
// passed 3/4 of the capacity, and once that they ran out (full): retired
// slots are not reused, so sessions changing without a restart use up to
// twice the day's symbols (docs/OPERATIONS.md). Under w.mu.
func (w *Writer) warnSlots(full bool) {
	if full {
		if !w.warnedFull {
			w.warnedFull = true
			w.log.Error().Str("shm", w.path).Uint64("slots", w.l.capacity).Uint64("retired", w.retired.Load()).
				Msg("shm slots exhausted: instruments not registered until a restart (retired slots are not reused; raise the slot count)")
		}
		return
	}
	if used := w.count.Load(); !w.warned && used*4 >= w.l.capacity*3 {
		w.warned = true
		w.log.Warn().Str("shm", w.path).Uint64("used", used).Uint64("slots", w.l.capacity).Uint64("retired", w.retired.Load()).
			Msg("shm slots over 3/4 used (retired slots are not reused until a restart; size slots at twice the day's symbols if sessions change without a restart)")
	}
}

// SlotUsage counts a writer's instrument slots.
type SlotUsage struct {
	Capacity int // Config.Instruments
	Used     int // registered, live and retired: Capacity - Used are left
	Retired  int // retired (Rebind, or a symbol moved to another locate): not reused until a restart
}

// Retirements counts the directory entries retired since Create, by any
// caller: a publisher whose binding was refused because its symbol was
// bound elsewhere asks again when it moves (the other binding may be the
// one retired). One atomic load.
func (w *Writer) Retirements() uint64 { return w.retired.Load() }

// SlotUsage returns the writer's slot counts. It allocates nothing, takes
// no lock and never reads the mapping (for metrics, which may run during
// or after Close: the counts stay those of the last registration).
func (w *Writer) SlotUsage() SlotUsage {
	return SlotUsage{Capacity: int(w.l.capacity), Used: int(w.count.Load()), Retired: int(w.retired.Load())}
}

func trimSymbol(s string) string {
	for len(s) > 0 && (s[len(s)-1] == ' ' || s[len(s)-1] == 0) {
		s = s[:len(s)-1]
	}
	return s
}
