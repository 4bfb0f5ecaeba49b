package book

import (
	"encoding/binary"
	"unsafe"

	"github.com/marketfeed/feedhandler/feed/itch"
)

// refAt marks the message types that name a resting order, at offset 11:
// E, C, X, D and U (its original order). Adds (A, F) and the new order of a
// replace are left out: their references come from the day's increasing
// sequence, and every add prefetches the home slot of the reference
// addPrefetch ahead of its own, so those slots are loaded already.
var refAt = [256]bool{
	itch.TypeOrderExecuted: true, itch.TypeOrderExecutedWithPrice: true, itch.TypeOrderCancel: true,
	itch.TypeOrderDelete: true, itch.TypeOrderReplace: true,
}

// Prefetch starts loading the order slot that Apply(m) will read for a
// message naming a resting order (E, C, X, D, U): the home slot of its
// reference. It is a hint to the CPU: it changes nothing, never faults, and
// costs a few nanoseconds; any other message, or one too short, is ignored.
//
// Call it on a message some way ahead of the one being applied, so that the
// slot is in cache when Apply gets to it: in a replay the lookahead is the
// file, in a live feed the messages of the packets in hand. Messages of
// most types are applied in tens of nanoseconds and a load from memory takes
// about a hundred, so 8 to 32 messages ahead is enough (PrefetchAhead).
// Apply's result does not depend on whether, or how far ahead, Prefetch ran.
func (bs *Books) Prefetch(m itch.Msg) {
	if len(m) < itch.HeaderLen+8 || !refAt[m[0]] {
		return
	}
	prefetch(uintptr(unsafe.Pointer(&bs.orders[binary.BigEndian.Uint64(m[itch.HeaderLen:])&bs.homeMask])))
}

// PrefetchAhead is how many messages ahead of Apply a caller with a
// lookahead should call Prefetch.
const PrefetchAhead = 16

// PrefetchBatchMax is how many order slots a Prefetcher holds between
// flushes.
const PrefetchBatchMax = 32

// A Prefetcher gathers the order slots that a run of messages will read
// (Add, one message at a time, without a call) and starts loading them all
// with one call (Flush). Calling Prefetch once per message costs a call per
// message, and every register the caller holds is saved and reloaded around
// it; a Prefetcher pays that once per run of messages. Like Prefetch, it is
// a hint: it changes no result of Apply, never faults, and ignores any
// message that names no resting order or is too short.
//
// A Prefetcher is a plain value: keep it on the stack of the loop that
// uses it, set it up with Books.Prefetcher.
type Prefetcher struct {
	orders unsafe.Pointer // &Books.orders[0]; the Books keeps it alive
	mask   uint64
	n      int
	addr   [PrefetchBatchMax]uintptr
}

// Prefetcher returns a Prefetcher for the order slots of bs.
func (bs *Books) Prefetcher() Prefetcher {
	return Prefetcher{orders: unsafe.Pointer(unsafe.SliceData(bs.orders)), mask: bs.homeMask}
}

// Add notes the order slot that Apply(m) will read for a message naming a
// resting order (E, C, X, D, U). Beyond PrefetchBatchMax slots since the
// last Flush it notes nothing.
func (p *Prefetcher) Add(m itch.Msg) {
	if len(m) >= itch.HeaderLen+8 && refAt[m[0]] && p.n < len(p.addr) {
		p.addr[p.n] = uintptr(p.orders) + uintptr(binary.BigEndian.Uint64(m[itch.HeaderLen:])&p.mask)*unsafe.Sizeof(order{})
		p.n++
	}
}

// Flush starts loading the slots noted since the last Flush, with one call.
func (p *Prefetcher) Flush() {
	if p.n > 0 {
		prefetchN(&p.addr[0], p.n)
		p.n = 0
	}
}
