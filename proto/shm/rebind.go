package shm

import (
	"fmt"
	"strings"
	"sync/atomic"
)

// dirRetired, in a directory entry's flags byte (offset 3), marks a slot
// retired: its locate was bound to another symbol since (Rebind), or its
// symbol to another locate (Rebind, Register). The entry and the slot keep
// the old book's last snapshot; readers skip the entry when they look
// symbols up.
const (
	dirFlags   = 3
	dirRetired = 1
)

// dirIsRetired reports whether directory entry e was retired.
func dirIsRetired(e []byte) bool { return e[dirFlags]&dirRetired != 0 }

// Rebind binds locate to symbol at epoch and returns its slot. A locate
// not registered yet is registered (as with Register); one registered with
// symbol already keeps its slot. One registered with another symbol (ITCH
// reassigns locates every session, so a session change without a restart
// reuses them) is moved to a fresh slot: the old slot is retired, keeping
// the old symbol's last snapshot, so that no reader ever finds one
// symbol's book under another's name. retired reports that case. A symbol
// still bound to another locate (it moved: locate 5 was AAPL, now AAPL is
// locate 9) loses it: that locate's entry is retired too and the locate is
// unbound, so that no reader finds the symbol's stale book, and one symbol
// never has two live entries.
//
// Epochs: the caller counts its book rebuilds (session changes) and passes
// the count; callers that see the same rebuilds in the same order (book
// shards) pass the same epoch for the same session. The writer keeps each
// live binding's epoch, and Rebind at epoch E, in this order:
//  1. locate already bound to symbol: keeps the slot, the binding's epoch
//     rises to E if it was lower;
//  2. locate bound to another symbol at an epoch after E: refused with
//     ErrStaleBinding (a caller that lags a session change must not take
//     the locate back);
//  3. symbol bound to another locate at an epoch after E: refused with
//     ErrStaleBinding; in epoch E itself: refused with ErrDuplicateSymbol
//     (one symbol at two locates in one session is bad input; the first
//     binding stays);
//  4. otherwise: retires what it replaces, as above, and binds at epoch E.
//
// A refused Rebind changed nothing (the checks come before any
// retirement). Register's bindings have epoch 0.
//
// A retired slot still counts against Config.Instruments; with no slot left
// Rebind fails with ErrFull and the locate stays unregistered until a
// restart (reads of it fail with ErrUnknownLocate). SlotUsage counts them.
//
// What readers see: a retired directory entry is flagged (byte 3, bit 0)
// and its locate's index entry cleared before the new entry is stored, and
// the new entry is visible once the instrument count includes it, so a
// reader that loads the count sees both. Lookup and Instruments skip
// retired entries. A reader that kept the locate reads the new symbol's
// snapshots from then on: the snapshot's symbol changes and its version
// starts again from 1 (a locate's versions are those of its current slot).
// Epochs are the writer's own: they are not in the file.
//
// A retired slot that holds a snapshot gets a last journal record of its
// locate, one version past the slot's last (see retire): a follower
// learns of the retirement without a new publish of the locate. Where the
// slot is the caller's (the locate's own binding; every slot with
// Config.SingleWriter) that version is the last snapshot published once
// more, flagged PossiblyStale, before the retirement.
//
// Rebind may run while Close does: it holds w.mu, which Close takes to
// unmap, so it either completes first or fails with ErrClosed.
func (w *Writer) Rebind(locate uint16, symbol string, epoch uint64) (sl Slot, retired bool, err error) {
	sym := trimSymbol(symbol)
	if len(sym) == 0 || len(sym) > 8 {
		return Slot{}, false, fmt.Errorf("rebind locate %d: bad symbol %q", locate, strings.Clone(symbol))
	}
	// Checked under w.mu, which Close takes to unmap: checked before,
	// Close could unmap the file between the check and bind.
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed.Load() {
		return Slot{}, false, fmt.Errorf("rebind locate %d: %w", locate, ErrClosed)
	}
	sl, retired, err = w.bind(locate, sym, true, epoch)
	if err != nil {
		return Slot{}, retired, fmt.Errorf("rebind locate %d %q at epoch %d: %w", locate, strings.Clone(sym), epoch, err)
	}
	return sl, retired, nil
}

// Unbind retires locate's binding when it names a symbol other than
// symbol, at an epoch not after epoch (a later one is another caller's,
// ahead of this one: kept). It reports whether it retired one. A caller
// whose locate was re-assigned to another symbol within an epoch (a
// session change met unseen) unbinds first, so that the old symbol is free
// for the locate that takes it next: when two locates swap symbols, each
// Rebind would otherwise find its symbol still bound to the other locate
// in the same epoch (ErrDuplicateSymbol).
//
// A retired binding whose slot holds a snapshot is published once more,
// flagged PossiblyStale, with its journal record, before the retirement
// (see Rebind): a follower of the journal learns that the book is gone.
func (w *Writer) Unbind(locate uint16, symbol string, epoch uint64) (bool, error) {
	sym := trimSymbol(symbol)
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed.Load() {
		return false, fmt.Errorf("unbind locate %d: %w", locate, ErrClosed)
	}
	v := atomic.LoadUint32(w.m.indexEntry(&w.l, locate))
	if v == 0 {
		return false, nil
	}
	bound := uint64(v - 1)
	boundSym := dirSymbol(w.m.dirEntry(&w.l, bound))
	if string(boundSym) == sym || w.epochs[bound] > epoch {
		return false, nil
	}
	w.retire(bound, keyOf(boundSym), true)
	return true, nil
}

// SymbolBound reports whether symbol is bound to a live slot, at any
// locate. It allocates nothing: a publisher asks it before binding again a
// locate refused as a duplicate, so that a duplicate still standing is not
// asked (and refused, with an error built) at every retirement.
func (w *Writer) SymbolBound(symbol string) bool {
	sym := trimSymbol(symbol)
	if len(sym) == 0 || len(sym) > 8 {
		return false
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	_, ok := w.live[keyOf(sym)]
	return ok
}
